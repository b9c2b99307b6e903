"""Delivery and acknowledgement against REAL servers on loopback.

* an aiosmtpd SMTP server receives the alert mail (subject, plain + HTML parts, UTF-8);
* an aiohttp server plays the webhook endpoints (generic JSON, DingTalk with signing, WeCom)
  and fails on demand (500 twice, then 200) to prove retries and the delivery log;
* every notification goes the one way `stackwatch alerts dispatch` sends it: written to the
  durable outbox (``PgOutbox``), delivered by its worker (``OutboxWorker``) on a stepped clock;
* the ack API runs as a real aiohttp server and is called over HTTP with and without token;
* the delivery log, the alert repository and the Kafka ack publisher run against the session's
  PostgreSQL 18 and Tansu broker.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from embedded.ports import free_port
from sinks.ack_api import (
    ActiveAlert,
    InsecureConfigError,
    KafkaAckPublisher,
    PgAlertRepository,
    create_app,
    hash_token,
)
from sinks.db import connect
from sinks.notifiers import (
    DeliveryRow,
    EmailSender,
    Notifier,
    NotifierMetrics,
    PgDeliveryLog,
    WebhookSender,
)
from sinks.outbox import Backoff, OutboxWorker, PgOutbox, entries_for
from sinks.schema import migrate
from stackwatch.alerts import Severity
from stackwatch.models import AlertEvent, AlertState, EventKind, Rule
from stackwatch.notify import (
    AlertItem,
    Notification,
    NotificationKind,
    NotifyConfig,
    NotifyScheduler,
    StackMeta,
)
from stackwatch.notify.ack import AckCommand
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.settings import SmtpSettings
from streams.alert_dispatcher import AlertDispatcher, run_dispatcher
from tests.migrated import migrated

pytestmark = pytest.mark.integration

GRAFANA = "http://grafana.test:3000"
END = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # Beijing 11:00
ALERT_ID = "7f1c2d3e-0000-5000-8000-0000000000aa"
TOKEN = "t0ken-for-tests-0123456789"
WANG_TOKEN = "wang-personal-token-0123456789abcdef"
DD_SECRET = "SEC-test-secret"
STACK = StackMeta(
    stack_id="hd-steel-01", name="1#烧结机头", plant="某钢铁有限公司", city="邯郸", sector="steel"
)


def so2_event(seq: int = 1, kind: EventKind = EventKind.RAISE) -> AlertEvent:
    return AlertEvent(
        alert_id=ALERT_ID,
        seq=seq,
        kind=kind,
        at=END,
        stack_id="hd-steel-01",
        factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE,
        severity=Severity.ALARM,
        state=AlertState.ACTIVE,
        title_zh="小时均值超标",
        title_en="hourly mean exceedance",
        first_seen=END,
        last_seen=END,
        count=1,
        value=62.3,
        peak_value=62.3,
        limit=35.0,
        ref_o2=16.0,
        period_start=END - timedelta(hours=1),
        period_end=END,
        evidence={"valid_minutes": 58},
    )


def notification(kind: NotificationKind = NotificationKind.FIRING) -> Notification:
    return Notification(
        kind=kind,
        route="handan",
        group_key="stack_id=hd-steel-01",
        groups=["duty"],
        level=0,
        at=END,
        alerts=[AlertItem(event=so2_event(), stack=STACK)],
    )


# ------------------------------------------------------------------------------ servers


class _MailSink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _MailSink]]:
    sink = _MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


@dataclass
class Hooks:
    """What the webhook server received, and how it should fail."""

    url: str
    received: dict[str, list[Any]] = field(default_factory=dict)
    queries: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fail_first: int = 0
    failures: int = 0


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    state = Hooks(url="")

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.received.setdefault(name, []).append(await request.json())
        state.queries.setdefault(name, []).append(dict(request.query))
        if name == "flaky" and state.failures < state.fail_first:
            state.failures += 1
            return web.json_response({"error": "boom"}, status=500)
        if name == "dingtalk-keyword":
            return web.json_response({"errcode": 310000, "errmsg": "keywords not in content"})
        if name in ("dingtalk", "wecom"):
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


def config_for(hooks: Hooks, email: str = "duty@example.cn") -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "recipients": [
                {
                    "name": "duty",
                    "channels": [
                        {"type": "email", "address": email},
                        {"type": "webhook", "format": "json", "url": f"{hooks.url}/json"},
                        {
                            "type": "webhook",
                            "format": "dingtalk",
                            "url": f"{hooks.url}/dingtalk?access_token=abc",
                            "sign_secret": DD_SECRET,
                        },
                        {"type": "webhook", "format": "wecom", "url": f"{hooks.url}/wecom?key=k"},
                    ],
                },
                {
                    "name": "flaky",
                    "channels": [{"type": "webhook", "url": f"{hooks.url}/flaky"}],
                },
                {
                    "name": "robot",
                    "channels": [
                        {
                            "type": "webhook",
                            "format": "dingtalk",
                            "url": f"{hooks.url}/dingtalk-keyword?access_token=SECRET123",
                        }
                    ],
                },
            ],
            "groups": [
                {"name": "duty", "members": ["duty"]},
                {"name": "flaky", "members": ["flaky"]},
                {"name": "robot", "members": ["robot"]},
            ],
            "routes": [{"name": "handan", "group": "duty", "group_wait": "0s"}],
        }
    )


class MemoryDeliveryLog:
    """The delivery log in memory: the latest row per natural key."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, str, str], DeliveryRow] = {}

    async def write(self, rows: Sequence[DeliveryRow]) -> None:
        for row in rows:
            self.rows[(row.alert_id, row.event_seq, row.channel, row.recipient)] = row

    async def escalated(self, alert_ids: Sequence[str], level: int) -> None:
        return None


def outbox_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT destination, channel, status, attempts, last_error FROM notification_outbox"
            " ORDER BY id"
        ).fetchall()


async def through_outbox(
    notifier: Notifier, dsn: str, *notes: Notification, passes: int = 1,
    max_age: timedelta = timedelta(hours=24),
) -> list[tuple[Any, ...]]:
    """Deliver ``notes`` as `stackwatch alerts dispatch` does: written to the outbox at END,
    then ``passes`` passes of its worker one minute apart (longer than any back-off wait of
    Backoff(1 s, ×2, max 30 s), so every pass retries what failed). Returns the outbox rows."""
    outbox = PgOutbox(migrated(dsn))
    now = [END]
    worker = OutboxWorker(outbox, notifier, backoff=Backoff(1, 2, 30), clock=lambda: now[0])
    try:
        await outbox.commit(
            [e for n in notes for e in entries_for(notifier.config, n, END, max_age)], {}
        )
        for _ in range(passes):
            await worker.run_once()
            now[0] += timedelta(minutes=1)
    finally:
        await outbox.close()
    return outbox_rows(dsn)


def make_notifier(
    config: NotifyConfig, client: httpx.AsyncClient, smtp_port: int, log: Any,
    metrics: NotifierMetrics | None = None,
) -> Notifier:
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_port, starttls=False, sender="cems@example.cn")
    return Notifier(
        config,
        base_url=GRAFANA,
        webhook=WebhookSender(client),
        email=EmailSender(smtp),
        delivery_log=log,
        metrics=metrics,
    )


# --------------------------------------------------------------------------------- tests


async def test_email_and_webhooks_are_received(
    smtp_server: tuple[int, _MailSink], hooks: Hooks, pg_database: str
) -> None:
    port, sink = smtp_server
    log = MemoryDeliveryLog()
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config_for(hooks), client, port, log)
        await through_outbox(notifier, pg_database, notification())
    outcomes = log.rows.values()
    assert sorted(r.status for r in outcomes) == ["sent"] * 4

    # --- the mail
    [(mail_from, rcpts, raw)] = sink.messages
    assert (mail_from, rcpts) == ("cems@example.cn", ["duty@example.cn"])
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == (
        "[新告警 NEW · 告警 ALARM] 小时均值超标 hourly mean exceedance"
        " — 某钢铁有限公司 1#烧结机头 a21026"
    )
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text, page = plain.get_content(), html.get_content()
    for body in (text, page):
        assert "二氧化硫" in body and "sulphur dioxide (SO2)" in body
        assert "某钢铁有限公司" in body
        assert "2026-11-22 10:00 – 11:00 (UTC+8)" in body  # 02:00–03:00 UTC
        assert "stack-detail?var-stack=hd-steel-01" in body
    assert "62.3 mg/m³（限值 limit 35 mg/m³，178 %）" in text  # 62.3/35 = 178 %
    assert plain.get_content_charset() == "utf-8"

    # --- generic JSON
    [doc] = hooks.received["json"]
    assert doc["kind"] == "firing"
    assert doc["alerts"][0]["alert_id"] == ALERT_ID
    assert (doc["alerts"][0]["value"], doc["alerts"][0]["limit"]) == (62.3, 35.0)

    # --- DingTalk: markdown shape and a valid '加签' signature
    [dd] = hooks.received["dingtalk"]
    assert dd["msgtype"] == "markdown" and set(dd["markdown"]) == {"title", "text"}
    [query] = hooks.queries["dingtalk"]
    assert query["access_token"] == "abc"
    expected = base64.b64encode(
        hmac.new(
            DD_SECRET.encode(), f"{query['timestamp']}\n{DD_SECRET}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    assert query["sign"] == expected  # aiohttp has already URL-decoded the query

    # --- WeCom
    [wc] = hooks.received["wecom"]
    assert wc["msgtype"] == "markdown" and set(wc["markdown"]) == {"content"}
    assert "二氧化硫" in wc["markdown"]["content"]

    # --- delivery log: one row per channel, all sent at the first attempt
    assert sorted((r.channel, r.status, r.attempts) for r in log.rows.values()) == [
        ("email", "sent", 1),
        ("webhook", "sent", 1),
        ("webhook", "sent", 1),
        ("webhook", "sent", 1),
    ]


async def test_every_recipient_gets_a_link_of_their_own(
    smtp_server: tuple[int, _MailSink], hooks: Hooks, pg_database: str
) -> None:
    """Two people and a JSON robot in one group: each delivery carries a link signed for its
    own recipient (a fresh link id each), so an acknowledgement is recorded as that person."""
    from stackwatch.notify.ack_link import AckLinks, AckLinkSigner

    port, sink = smtp_server
    config = NotifyConfig.model_validate({
        "recipients": [
            {"name": "王工", "channels": [{"type": "email", "address": "wang@example.cn"}]},
            {"name": "李工", "channels": [{"type": "email", "address": "li@example.cn"}]},
            {"name": "robot", "channels": [{"type": "webhook", "url": f"{hooks.url}/json"}]},
        ],
        "groups": [{"name": "duty", "members": ["王工", "李工", "robot"]}],
        "routes": [{"name": "handan", "group": "duty", "group_wait": "0s"}],
    })
    signer = AckLinkSigner("s" * 32, lifetime=timedelta(hours=72))
    async with httpx.AsyncClient(timeout=5) as client:
        log = MemoryDeliveryLog()
        notifier = make_notifier(config, client, port, log)
        notifier.ack_links = AckLinks(signer, "https://ack.example")
        notifier.clock = lambda: END
        await through_outbox(notifier, pg_database, notification())
    outcomes = log.rows.values()
    assert sorted(r.status for r in outcomes) == ["sent"] * 3
    prefix = f"https://ack.example/ack/{ALERT_ID}/"
    seen: dict[str, str] = {}
    for _from, [rcpt], raw in sink.messages:
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
        assert plain is not None and html is not None
        [url] = re.findall(r"确认 / Acknowledge: (https?://\S+)", plain.get_content())
        assert url.startswith(prefix) and f'href="{url}"' in html.get_content()
        claims = signer.verify(url.removeprefix(prefix), END, alert_id=ALERT_ID)
        seen[rcpt] = claims.recipient
        assert claims.issued_at == END
    assert seen == {"wang@example.cn": "王工", "li@example.cn": "李工"}
    [doc] = hooks.received["json"]
    robot = signer.verify(doc["alerts"][0]["ack_url"].removeprefix(prefix), END)
    assert robot.recipient == "robot"
    assert f"确认 / Acknowledge: {doc['alerts'][0]['ack_url']}" in doc["text"]


async def test_webhook_retries_until_delivered_and_logs_to_postgres(
    hooks: Hooks, pg_database: str
) -> None:
    migrated(pg_database)
    hooks.fail_first = 2
    log = PgDeliveryLog(pg_database)
    metrics = NotifierMetrics(CollectorRegistry())
    note = notification().model_copy(update={"groups": ["flaky"]})
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config_for(hooks), client, 1, log, metrics)
        [(destination, _, status, attempts, _)] = await through_outbox(
            notifier, pg_database, note, passes=3
        )
    await log.close()
    assert (status, attempts) == ("delivered", 3)
    assert len(hooks.received["flaky"]) == 3  # 500, 500, 200
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute(
            "SELECT alert_id, event_seq, channel, recipient, status, attempts, sent_at IS NOT NULL"
            " FROM notifications"
        ).fetchall()
    assert rows == [
        (ALERT_ID, 1, "webhook", destination, "sent", 3, True),
    ]
    sample = metrics.registry.get_sample_value
    labels = {"channel": "webhook", "kind": "firing", "outcome": "sent"}
    assert sample("stackwatch_notifications_total", labels) == 1.0
    assert sample("stackwatch_notification_retries_total", {"channel": "webhook"}) == 2.0


async def test_permanent_failures_are_not_retried(
    hooks: Hooks, caplog: pytest.LogCaptureFixture, pg_database: str
) -> None:
    caplog.set_level(logging.DEBUG)
    log = MemoryDeliveryLog()
    note = notification().model_copy(update={"groups": ["robot"]})
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config_for(hooks), client, 1, log)
        [(_, _, status, attempts, error)] = await through_outbox(
            notifier, pg_database, note, passes=3
        )
    # DingTalk errcode 310000 (keyword check) is a configuration error: one attempt only.
    assert (status, attempts) == ("failed", 1)
    assert error is not None and "310000" in error
    assert len(hooks.received["dingtalk-keyword"]) == 1
    [row] = log.rows.values()
    assert (row.status, row.attempts) == ("failed", 1)
    # the robot's access token appears in no error and no log line
    assert "SECRET123" not in (row.error or "") + row.recipient
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp")]  # not the robot's
    assert ours and all("SECRET123" not in r.getMessage() for r in ours)


async def test_smtp_down_is_a_logged_failure(hooks: Hooks, pg_database: str) -> None:
    """The mail server never answers: attempts at 0, 1, 2 and 3 min, then the message is past
    its maximum age (4 min) and given up as expired, logged as failed with the SMTP error."""
    log = MemoryDeliveryLog()
    closed = free_port()  # nothing listens there
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config_for(hooks), client, closed, log)
        await through_outbox(
            notifier, pg_database, notification(), passes=5, max_age=timedelta(minutes=4)
        )
    by_channel = {r.channel + r.recipient: r for r in log.rows.values()}
    mail = by_channel["emailduty <duty@example.cn>"]
    assert (mail.status, mail.attempts) == ("failed", 4)
    assert mail.error is not None and "SMTP" in mail.error


async def test_dispatcher_sends_what_the_scheduler_decides(
    smtp_server: tuple[int, _MailSink], hooks: Hooks, pg_database: str
) -> None:
    port, sink = smtp_server
    now = [END]
    registry = StackRegistry(
        stacks=[
            StackInfo(
                stack_id="hd-steel-01", mn="MN01", name="1#烧结机头", plant="某钢铁有限公司",
                city="邯郸", sector="steel", process="sinter",
            )
        ]
    )
    log = MemoryDeliveryLog()
    outbox = PgOutbox(migrated(pg_database))
    async with httpx.AsyncClient(timeout=5) as client:
        config = config_for(hooks)
        notifier = make_notifier(config, client, port, log)
        dispatcher = AlertDispatcher(
            NotifyScheduler(config), outbox, registry=registry, clock=lambda: now[0]
        )
        try:
            assert dispatcher.on_payload(b"{not json") is False
            assert dispatcher.on_payload(so2_event().model_dump_json().encode()) is True
            assert dispatcher.on_payload(so2_event().model_dump_json().encode()) is False  # dup
            sent = await dispatcher.on_tick()  # group_wait 0 s → due at once
            await OutboxWorker(outbox, notifier, clock=lambda: now[0]).run_once()
        finally:
            await outbox.close()
    assert dispatcher.rejected == 1
    assert [n.kind for n in sent] == [NotificationKind.FIRING]
    assert len(sink.messages) == 1
    [doc] = hooks.received["json"]
    assert doc["alerts"][0]["plant"] == "某钢铁有限公司"  # resolved from the registry


# ------------------------------------------------------------------------------ ack API


class _Repo:
    def __init__(self, alerts: list[ActiveAlert]) -> None:
        self.alerts = {a.alert_id: a for a in alerts}

    async def get_open(self, alert_id: str) -> ActiveAlert | None:
        return self.alerts.get(alert_id)

    async def list_active(self, limit: int = 500) -> list[ActiveAlert]:
        return list(self.alerts.values())[:limit]


class _Publisher:
    def __init__(self) -> None:
        self.commands: list[AckCommand] = []

    async def publish(self, command: AckCommand) -> None:
        self.commands.append(command)


OPEN = ActiveAlert(
    alert_id=ALERT_ID, stack_id="hd-steel-01", factor="a21026", rule="hour_exceedance",
    severity="alarm", state="active", first_seen=END, last_seen=END,
)
ACK_AT = datetime(2026, 11, 22, 3, 15, tzinfo=UTC)


@pytest.fixture
async def ack_api() -> AsyncIterator[tuple[str, _Publisher]]:
    publisher = _Publisher()
    app = create_app(
        token=SecretStr(TOKEN), publisher=publisher, repository=_Repo([OPEN]),
        users={hash_token(WANG_TOKEN): "王工"}, clock=lambda: ACK_AT,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", publisher
    finally:
        await runner.cleanup()


async def test_ack_requires_the_token(ack_api: tuple[str, _Publisher]) -> None:
    base, publisher = ack_api
    body = {"by": "王工", "reason": "desulphuriser pump restarted"}
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        r = await client.post(f"/alerts/{ALERT_ID}/ack", json=body)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await client.post(
            f"/alerts/{ALERT_ID}/ack", json=body, headers={"Authorization": "Bearer wrong"}
        )
        assert r.status_code == 401
        r = await client.get("/alerts")
        assert r.status_code == 401
        assert (await client.get("/healthz")).status_code == 200
    assert publisher.commands == []


async def test_ack_publishes_the_command(ack_api: tuple[str, _Publisher]) -> None:
    """王工's personal token acknowledges as 王工 (the name comes from the token)."""
    base, publisher = ack_api
    auth = {"Authorization": f"Bearer {WANG_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, timeout=5, headers=auth) as client:
        r = await client.post(
            f"/alerts/{ALERT_ID}/ack", json={"reason": " desulphuriser pump restarted "},
        )
        assert r.status_code == 202, r.text
        assert r.json()["command"]["stack_id"] == "hd-steel-01"
        # unknown alert, malformed JSON, missing field
        assert (await client.post("/alerts/nope/ack", json={"reason": "b"})).status_code == 404
        json_type = {"Content-Type": "application/json"}
        assert (await client.post(f"/alerts/{ALERT_ID}/ack", content=b"{", headers=json_type)
                ).status_code == 400
        r = await client.post(f"/alerts/{ALERT_ID}/ack", json={})
        assert r.status_code == 422 and r.json()["details"][0]["field"] == "reason"
        listing = (await client.get("/alerts")).json()
    assert publisher.commands == [
        AckCommand(
            alert_id=ALERT_ID, stack_id="hd-steel-01", by="王工",
            reason="desulphuriser pump restarted", at=ACK_AT,
        )
    ]
    assert [a["alert_id"] for a in listing["alerts"]] == [ALERT_ID]


def test_no_token_no_start() -> None:
    repo, pub = _Repo([]), _Publisher()
    with pytest.raises(InsecureConfigError, match="STACKWATCH_API_TOKEN"):
        create_app(token=None, publisher=pub, repository=repo)
    with pytest.raises(InsecureConfigError, match="too short"):
        create_app(token=SecretStr("short"), publisher=pub, repository=repo)
    create_app(token=None, publisher=pub, repository=repo, insecure_dev=True)


async def test_repository_reads_open_alerts_from_postgres(pg_database: str) -> None:
    with connect(pg_database) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO stacks (stack_id, mn, name, plant, city, sector, process)"
            " VALUES ('hd-steel-01', 'MN01', '1#烧结机头', '某钢铁有限公司', '邯郸', 'steel',"
            " 'sinter')"
        )
        conn.execute(
            "INSERT INTO alerts (alert_id, stack_id, factor, rule, severity, state, first_seen,"
            " last_seen, cleared_at, limit_value) VALUES"
            " ('open-1', 'hd-steel-01', 'a21026', 'hour_exceedance', 'alarm', 'active', %(t)s,"
            "  %(t)s, NULL, 35),"
            " ('gone-1', 'hd-steel-01', 'a21026', 'hour_warning', 'warning', 'cleared', %(t)s,"
            "  %(t)s, %(t)s, 28)",
            {"t": END},
        )
        conn.commit()
    repo = PgAlertRepository(pg_database)
    got = await repo.get_open("open-1")
    assert got is not None
    assert (got.stack_id, got.plant, got.stack_name, got.limit_value) == (
        "hd-steel-01", "某钢铁有限公司", "1#烧结机头", 35.0
    )
    assert await repo.get_open("gone-1") is None  # cleared is not open
    assert [a.alert_id for a in await repo.list_active()] == ["open-1"]


async def test_kafka_publisher_delivers_keyed_command(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    topic = f"{unique_topic}.alert-commands"
    publisher = KafkaAckPublisher(kafka_bootstrap, topic)
    await publisher.start()
    command = AckCommand(
        alert_id=ALERT_ID, stack_id="hd-steel-01", by="王工", reason="fixed", at=ACK_AT
    )
    try:
        await publisher.publish(command)
    finally:
        await publisher.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert record.key == b"hd-steel-01"
    assert AckCommand.model_validate(json.loads(record.value)) == command


# --------------------------------------------------------------------------------- CLI


def _seed_alert(dsn: str) -> None:
    with connect(dsn) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO alerts (alert_id, stack_id, factor, rule, severity, state, first_seen,"
            " last_seen, peak_value, limit_value) VALUES (%(id)s, 'hd-steel-01', 'a21026',"
            " 'hour_exceedance', 'alarm', 'active', %(t)s, %(t)s, 62.3, 35)",
            {"id": ALERT_ID, "t": END},
        )
        conn.commit()


@pytest.fixture
def cli_settings(monkeypatch: pytest.MonkeyPatch, unique_topic: str) -> Iterator[str]:
    """Fresh settings with a unique alert-commands topic; returns the topic."""
    from stackwatch.settings import get_settings

    topic = f"{unique_topic}.cli-acks"
    monkeypatch.setenv("STACKWATCH_TOPICS__ALERT_COMMANDS", topic)
    get_settings.cache_clear()
    yield topic
    get_settings.cache_clear()


def test_cli_list_shows_open_alerts(
    pg_database: str, cli_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from commands import app

    _seed_alert(pg_database)
    result = CliRunner().invoke(app, ["alerts", "list", "--dsn", pg_database, "--json"])
    assert result.exit_code == 0, result.output
    [line] = result.output.strip().splitlines()
    row = json.loads(line)
    assert (row["alert_id"], row["state"], row["peak_value"]) == (ALERT_ID, "active", 62.3)
    from commands import alerts as alerts_cli

    monkeypatch.setattr(alerts_cli.console, "width", 250)  # a wide terminal: no wrapping
    table = CliRunner().invoke(app, ["alerts", "list", "--dsn", pg_database])
    assert table.exit_code == 0 and "Open alerts (1)" in table.output
    assert "62.3 / 35" in table.output


async def test_cli_ack_publishes_to_kafka(
    pg_database: str, kafka_bootstrap: str, cli_settings: str
) -> None:
    from typer.testing import CliRunner

    from commands import app

    _seed_alert(pg_database)
    args = ["alerts", "ack", ALERT_ID, "--by", "王工", "--reason", "SO2 analyser recalibrated",
            "--dsn", pg_database, "--bootstrap", kafka_bootstrap]
    # typer runs asyncio.run(): keep it off this test's running event loop
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "acknowledged" in result.output
    unknown = await asyncio.to_thread(
        CliRunner().invoke, app,
        ["alerts", "ack", "no-such-alert", "--by", "a", "--reason", "b", "--dsn", pg_database,
         "--bootstrap", kafka_bootstrap],
    )
    assert unknown.exit_code == 1 and "not open" in unknown.output
    consumer = AIOKafkaConsumer(
        cli_settings, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    command = AckCommand.model_validate_json(record.value)
    assert (command.alert_id, command.stack_id, command.by, command.reason) == (
        ALERT_ID, "hd-steel-01", "王工", "SO2 analyser recalibrated"
    )
    assert record.key == b"hd-steel-01"


async def test_dispatcher_consumes_the_alerts_topic(
    kafka_bootstrap: str, unique_topic: str, hooks: Hooks, pg_database: str
) -> None:
    topic = f"{unique_topic}.alerts"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=1, linger_ms=0)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, so2_event().model_dump_json().encode(), key=b"hd-steel-01"
        )
        await producer.send_and_wait(topic, b"garbage", key=b"hd-steel-01")
    finally:
        await producer.stop()
    config = NotifyConfig.model_validate(
        {
            "recipients": [
                {"name": "m", "channels": [{"type": "webhook", "url": f"{hooks.url}/json"}]}
            ],
            "groups": [{"name": "g", "members": ["m"]}],
            "routes": [{"name": "all", "group": "g", "group_wait": "0s"}],
        }
    )
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config, client, 1, MemoryDeliveryLog())
        outbox = PgOutbox(migrated(pg_database))
        dispatcher = AlertDispatcher(NotifyScheduler(config), outbox)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_dispatcher(
                dispatcher, bootstrap=kafka_bootstrap, topic=topic,
                group_id=f"{unique_topic}.notify", tick_interval_s=0.1, stop=stop,
                start_from="earliest", worker=OutboxWorker(outbox, notifier),
                worker_interval_s=0.1,
            )
        )
        try:
            for _ in range(600):  # wait (≤ 60 s) for the group join and the first delivery
                if (hooks.received.get("json") and dispatcher.rejected) or task.done():
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
            await outbox.close()
    [doc] = hooks.received["json"]
    assert doc["alerts"][0]["alert_id"] == ALERT_ID
    assert dispatcher.rejected == 1  # the garbage record was logged and skipped


async def test_escalation_level_is_recorded_on_the_alert(hooks: Hooks, pg_database: str) -> None:
    _seed_alert(pg_database)
    log = PgDeliveryLog(pg_database)
    async with httpx.AsyncClient(timeout=5) as client:
        notifier = make_notifier(config_for(hooks), client, 1, log)
        # a late level-1 message must not lower the recorded level
        notes = [
            notification(NotificationKind.ESCALATION).model_copy(
                update={"groups": ["flaky"], "level": level}
            )
            for level in (2, 1)
        ]
        await through_outbox(notifier, pg_database, *notes)
    await log.close()
    with psycopg.connect(pg_database) as conn:
        row = conn.execute(
            "SELECT escalation_level FROM alerts WHERE alert_id = %s", (ALERT_ID,)
        ).fetchone()
    assert row == (2,)
