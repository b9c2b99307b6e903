"""The acknowledgement API on a REAL aiohttp server on loopback (issue #15 item 7).

Who acknowledges comes from the personal token, never the body; requests are rate-limited per
person (per IP before authentication) on an injected clock; every malformed request is a 4xx,
never a 500 (raw sockets where httpx would refuse to send the bytes); and the PostgreSQL
repository reuses pooled connections (PostgreSQL 18 of the session).

Rate arithmetic: 3 per minute with a burst of 3 → a bucket of 3 requests, refilled one per
20 s. Requests 1–3 at t = 0 pass, the 4th is refused with Retry-After 20; at t = 20 s exactly
one more passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from aiohttp import web
from pydantic import SecretStr

from embedded.ports import free_port
from sinks.ack_api import ActiveAlert, PgAlertRepository, create_app, hash_token
from sinks.db import connect
from sinks.rate_limit import RateLimiter
from sinks.schema import migrate
from stackwatch.notify.ack import AckCommand

pytestmark = pytest.mark.integration

ALERT_ID = "7f1c2d3e-0000-5000-8000-0000000000aa"
T = datetime(2026, 11, 22, 3, 15, tzinfo=UTC)
SHARED = "shared-token-for-listing-0123456789"
WANG = "wang-personal-token-0123456789abcdef"
LI = "li-personal-token-0123456789abcdef00"
OPEN = ActiveAlert(
    alert_id=ALERT_ID, stack_id="hd-steel-01", factor="a21026", rule="hour_exceedance",
    severity="alarm", state="active", first_seen=T, last_seen=T,
)


class _Repo:
    async def get_open(self, alert_id: str) -> ActiveAlert | None:
        return OPEN if alert_id == ALERT_ID else None

    async def list_active(self, limit: int = 500) -> list[ActiveAlert]:
        return [OPEN]


class _Publisher:
    def __init__(self) -> None:
        self.commands: list[AckCommand] = []

    async def publish(self, command: AckCommand) -> None:
        self.commands.append(command)


class Api:
    """A served app, its publisher and the limiter's clock (seconds)."""

    def __init__(self, base: str, port: int, publisher: _Publisher, clock: list[float]) -> None:
        self.base, self.port, self.publisher, self.clock = base, port, publisher, clock


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    publisher, clock = _Publisher(), [1000.0]
    app = create_app(
        token=SecretStr(SHARED), publisher=publisher, repository=_Repo(),
        users={hash_token(WANG): "王工", hash_token(LI).upper(): "李工"}, clock=lambda: T,
        limiter=RateLimiter(per_minute=3, burst=3, clock=lambda: clock[0]),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Api(f"http://127.0.0.1:{port}", port, publisher, clock)
    finally:
        await runner.cleanup()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_by_comes_from_the_personal_token(api: Api) -> None:
    url = f"/alerts/{ALERT_ID}/ack"
    async with httpx.AsyncClient(base_url=api.base, timeout=5) as client:
        wang = await client.post(url, json={"reason": "pump restarted"}, headers=bearer(WANG))
        li = await client.post(url, json={"reason": "checked on site"}, headers=bearer(LI))
        assert (wang.status_code, li.status_code) == (202, 202)
        # a body naming someone else is refused, not silently re-attributed
        forged = await client.post(url, json={"by": "张局长", "reason": "x"}, headers=bearer(WANG))
        assert forged.status_code == 422 and "by" in forged.json()["error"]
        # the shared token identifies nobody: it may list, not acknowledge
        shared = await client.post(url, json={"reason": "x"}, headers=bearer(SHARED))
        assert shared.status_code == 403
        listing = await client.get("/alerts", headers=bearer(SHARED))
        assert [a["alert_id"] for a in listing.json()["alerts"]] == [ALERT_ID]
    assert [(c.by, c.reason) for c in api.publisher.commands] == [
        ("王工", "pump restarted"), ("李工", "checked on site")]


async def test_rate_limit_per_person_and_per_ip(api: Api) -> None:
    url = f"/alerts/{ALERT_ID}/ack"
    body = {"reason": "r"}
    async with httpx.AsyncClient(base_url=api.base, timeout=5) as client:
        codes = [(await client.post(url, json=body, headers=bearer(WANG))).status_code
                 for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        refused = await client.post(url, json=body, headers=bearer(WANG))
        assert refused.headers["Retry-After"] == "20"
        # 李工 has a bucket of his own
        assert (await client.post(url, json=body, headers=bearer(LI))).status_code == 202
        # 20 s later exactly one more of 王工's passes
        api.clock[0] += 20
        codes = [(await client.post(url, json=body, headers=bearer(WANG))).status_code
                 for _ in range(2)]
        assert codes == [202, 429]
        # guessing tokens: the client IP's bucket (3) is spent by three wrong tokens
        guesses = [(await client.post(url, json=body, headers=bearer(f"guess-{i}"))).status_code
                   for i in range(4)]
        assert guesses == [401, 401, 401, 429]
    assert len(api.publisher.commands) == 5  # 3 + 1 (李工) + 1


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked transfer encoding)."""
    for _ in range(count):
        yield b"x" * size


async def raw_request(port: int, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are; the status code of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def test_malformed_requests_are_4xx_never_500(api: Api) -> None:
    url = f"/alerts/{ALERT_ID}/ack"
    good = bearer(WANG)
    checks: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], int]] = [
        ("two Authorization headers",
         lambda c: c.post(url, json={"reason": "r"}, headers=[
             ("Authorization", f"Bearer {WANG}"), ("Authorization", f"Bearer {LI}")]), 400),
        ("Basic scheme", lambda c: c.post(url, json={"reason": "r"},
                                          headers={"Authorization": "Basic d2FuZzpwdw=="}), 401),
        ("Bearer without token", lambda c: c.post(url, json={"reason": "r"},
                                                  headers={"Authorization": "Bearer"}), 401),
        ("text/plain body", lambda c: c.post(url, content=b'{"reason": "r"}',
                                             headers=good | {"Content-Type": "text/plain"}), 415),
        ("no Content-Type", lambda c: c.post(url, content=b'{"reason": "r"}', headers=good), 415),
        ("latin-1 JSON", lambda c: c.post(
            url, content=b'{"reason": "r"}',
            headers=good | {"Content-Type": "application/json; charset=latin-1"}), 415),
        ("unknown charset", lambda c: c.post(
            url, content=b'{"reason": "r"}',
            headers=good | {"Content-Type": "application/json; charset=bogus"}), 415),
        ("not JSON", lambda c: c.post(
            url, content=b"reason=r", headers=good | {"Content-Type": "application/json"}), 400),
        ("invalid UTF-8", lambda c: c.post(
            url, content=b'{"reason": "\xff"}',
            headers=good | {"Content-Type": "application/json"}), 400),
        ("nested 40 000 deep", lambda c: c.post(
            url, content=b"[" * 40_000, headers=good | {"Content-Type": "application/json"}),
         400),
        ("JSON array", lambda c: c.post(url, json=["r"], headers=good), 422),
        ("reason not a string", lambda c: c.post(url, json={"reason": 5}, headers=good), 422),
        ("huge body", lambda c: c.post(url, json={"reason": "x" * 100_000}, headers=good), 413),
        ("huge chunked body", lambda c: c.post(
            url, content=chunks(10, 10_000),
            headers=good | {"Content-Type": "application/json"}), 413),
        ("bad limit", lambda c: c.get("/alerts?limit=abc", headers=bearer(SHARED)), 400),
    ]
    async with httpx.AsyncClient(base_url=api.base, timeout=5) as client:
        for name, send, expected in checks:
            api.clock[0] += 60  # a full bucket for every check: only the request is judged
            response = await send(client)
            assert response.status_code == expected, (name, response.text)
    # bytes httpx would not send: a non-UTF-8 token, and a header over aiohttp's 8 KiB limit
    api.clock[0] += 60
    head = (f"POST {url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 15\r\nConnection: close\r\n").encode()
    status = await raw_request(api.port, head + b"Authorization: Bearer \xff\xfe\x80\r\n",
                               b'{"reason": "r"}')
    assert status == 401  # not a known token (and not a crash on the undecodable bytes)
    status = await raw_request(
        api.port, head + b"Authorization: Bearer " + b"a" * 20_000 + b"\r\n", b'{"reason": "r"}')
    assert status == 400  # aiohttp's parser: a header field over 8190 bytes
    assert api.publisher.commands == []


async def test_repository_reuses_pooled_connections(pg_database: str) -> None:
    """40 reads, 10 at a time, through a pool of at most 2: the server sees ≤ 2 sessions of
    the API (application_name stackwatch-ack-api), not one per request."""
    with connect(pg_database) as conn:
        migrate(conn)
    repo = PgAlertRepository(pg_database, max_size=2)
    database = pg_database.rsplit("/", 1)[1]

    def sessions() -> int:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'stackwatch-ack-api'", (database,)).fetchone()
        assert row is not None
        return int(row[0])

    try:
        for _ in range(4):
            results = await asyncio.gather(*(repo.list_active() for _ in range(10)))
            assert all(r == [] for r in results)
            during = await asyncio.to_thread(sessions)
            assert 1 <= during <= 2
        assert await repo.get_open("nope") is None
    finally:
        await repo.close()
    assert await asyncio.to_thread(sessions) == 0
