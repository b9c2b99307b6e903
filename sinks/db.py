"""psycopg 3 connection helpers shared by the schema runner, the writers and the CLI.

One place knows the quirks of the two servers stackwatch talks to:

* PostgreSQL / TimescaleDB: ordinary libpq behaviour, server-side prepared statements on.
* PGlite-TimescaleDB (WASM, served by `embedded/pglite_server/server.mjs`): ONE connection at a
  time, no SSL negotiation (`sslmode=disable`), no server-side prepared statements
  (`prepare_threshold=None`), COPY FROM STDIN breaks the connection (callers use INSERT),
  background jobs never run by themselves (`CALL run_job(id)`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

DEFAULT_CONNECT_TIMEOUT_S = 10
PGLITE_CONNECT_ATTEMPTS = 20
PGLITE_RETRY_DELAY_S = 0.25


class DsnError(ValueError):
    """The DSN cannot be parsed (the message never contains the password)."""


def _is_loopback(host: str) -> bool:
    if host in ("", "localhost") or host.startswith("/"):
        return True  # empty/"/path" = Unix socket: never leaves the machine
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_conninfo(dsn: str, *, pglite: bool = False) -> str:
    """Normalise a DSN: a connect timeout, and `sslmode=disable` where SSL is pointless.

    `sslmode=disable` is forced for PGlite (its socket server does not answer SSLRequest) and
    added for loopback hosts when the DSN says nothing, so a local server never waits on an SSL
    handshake; an explicit `sslmode` for a non-PGlite server is always kept.
    """
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise DsnError(f"invalid database DSN: {exc}") from None
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
    hosts = str(params.get("host", "")).split(",")
    if pglite or ("sslmode" not in params and all(_is_loopback(h) for h in hosts)):
        params["sslmode"] = "disable"
    return make_conninfo("", **params)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***`, for logs and CLI output."""
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


@dataclass(frozen=True)
class ServerInfo:
    """What the connected server is: decides COPY vs INSERT and the schema mode."""

    server_version: int
    is_pglite: bool
    timescaledb_version: str | None

    @property
    def supports_copy(self) -> bool:
        """COPY FROM STDIN breaks a PGlite connection; everything else supports it."""
        return not self.is_pglite


_SERVER_INFO_SQL = (
    "SELECT current_setting('server_version_num')::int, version(),"
    " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
)


def _server_info(row: tuple[Any, ...] | None) -> ServerInfo:
    assert row is not None
    version_num, version_text, ts_version = row
    return ServerInfo(
        server_version=int(version_num),
        is_pglite="emscripten" in str(version_text).lower(),
        timescaledb_version=ts_version,
    )


def server_info(conn: psycopg.Connection[Any]) -> ServerInfo:
    """Inspect the server behind `conn` (no side effects)."""
    return _server_info(conn.execute(_SERVER_INFO_SQL).fetchone())


async def server_info_async(conn: psycopg.AsyncConnection[Any]) -> ServerInfo:
    """`server_info` for an async connection."""
    cur = await conn.execute(_SERVER_INFO_SQL)
    return _server_info(await cur.fetchone())


def connect(
    dsn: str, *, autocommit: bool = False, pglite: bool | None = None
) -> psycopg.Connection[Any]:
    """Open one connection with the quirks of the server applied.

    `pglite=None` detects PGlite after connecting (its `version()` names Emscripten) and then
    turns server-side prepared statements off for the rest of the session; pass `True` when the
    DSN is known to be PGlite so SSL negotiation is skipped from the first byte.
    """
    conninfo = build_conninfo(dsn, pglite=bool(pglite))
    attempts = PGLITE_CONNECT_ATTEMPTS if pglite else 1
    for attempt in range(1, attempts + 1):
        try:
            conn = psycopg.connect(
                conninfo, autocommit=autocommit, prepare_threshold=None if pglite else 5
            )
            break
        except psycopg.OperationalError:
            # PGlite serves one connection at a time and closes a second one at once; the
            # previous client's (or a port probe's) close may still be in flight.
            if attempt == attempts:
                raise
            time.sleep(PGLITE_RETRY_DELAY_S)
    if pglite is None:
        try:
            if server_info(conn).is_pglite:
                conn.prepare_threshold = None
            if not autocommit:
                conn.rollback()  # close the inspection transaction
        except BaseException:
            conn.close()
            raise
    return conn


async def connect_async(
    dsn: str, *, autocommit: bool = False, pglite: bool | None = None
) -> psycopg.AsyncConnection[Any]:
    """`connect` for asyncio code (the sink writers): same quirks, same PGlite retry."""
    conninfo = build_conninfo(dsn, pglite=bool(pglite))
    attempts = PGLITE_CONNECT_ATTEMPTS if pglite else 1
    for attempt in range(1, attempts + 1):
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=autocommit, prepare_threshold=None if pglite else 5
            )
            break
        except psycopg.OperationalError:
            if attempt == attempts:
                raise
            await asyncio.sleep(PGLITE_RETRY_DELAY_S)
    if pglite is None:
        try:
            if (await server_info_async(conn)).is_pglite:
                conn.prepare_threshold = None
            if not autocommit:
                await conn.rollback()
        except BaseException:
            await conn.close()
            raise
    return conn


class LazyPool:
    """An async connection pool opened on first use (so inside the event loop that serves)
    and closed by `close()`; shared by the ack API and the notification outbox."""

    def __init__(self, dsn: str, *, name: str, max_size: int = 4, autocommit: bool = False) -> None:
        self.dsn = dsn
        self.name = name
        self.max_size = max_size
        self._kwargs: dict[str, Any] = {"application_name": name}
        if autocommit:
            self._kwargs["autocommit"] = True
        self._pool: AsyncConnectionPool | None = None

    async def get(self) -> AsyncConnectionPool:
        """The pool, opened now if it is not yet."""
        if self._pool is None:
            pool = AsyncConnectionPool(
                build_conninfo(self.dsn), min_size=1, max_size=self.max_size, open=False,
                kwargs=self._kwargs, name=self.name,
            )
            await pool.open()
            self._pool = pool
        return self._pool

    async def close(self) -> None:
        """Close the pool's connections (it opens again on the next use)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
