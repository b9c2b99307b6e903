"""Delivery of batches to the database: commit before anything is acknowledged.

:class:`ResilientWriter` owns one connection per agent and writes each batch with
:func:`sinks.batching.write_batch`; a transient failure (:mod:`sinks.db_errors`) discards the
connection, backs off (:mod:`sinks.retry`) and writes the same batch again, so `write()`
returns only once the batch is committed. It also keeps the sink's metrics and logs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sinks.batching import AnyConn, write_batch
from sinks.db import connect_async, server_info_async
from sinks.db_errors import is_transient
from sinks.metrics import SinkMetrics
from sinks.records import BatchResult, SinkKind, SourceRecord
from sinks.retry import retry_transient
from stackwatch.backoff import BackoffPolicy

__all__ = ["ResilientWriter"]

log = logging.getLogger(__name__)


def _always(_exc: BaseException) -> bool:
    return True


@dataclass
class ResilientWriter:
    """One database connection and the retry loop around :func:`~sinks.batching.write_batch`.

    `write()` returns only after the batch is committed, however long the database is away;
    the agent awaiting it consumes nothing meanwhile (memory stays at one batch per agent),
    and acknowledges the records to Kafka only afterwards. An unexpected (non-database)
    error is retried the same way and logged with its traceback: the records stay unacked
    rather than lost, and `stackwatch_sink_db_up` = 0 makes the stall visible.
    """

    dsn: str
    metrics: SinkMetrics
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    _conn: AnyConn | None = field(default=None, init=False, repr=False)
    _copy: bool = field(default=True, init=False, repr=False)
    _down_since: float | None = field(default=None, init=False, repr=False)

    async def _connection(self) -> AnyConn:
        if self._conn is None or self._conn.closed:
            conn = await connect_async(self.dsn)
            self._copy = (await server_info_async(conn)).supports_copy
            await conn.rollback()
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:  # the connection is already broken; nothing to save
                log.debug("closing a broken connection failed", extra={"error": str(exc)})

    async def write(self, kind: SinkKind, records: Sequence[SourceRecord]) -> BatchResult:
        """Write and commit one batch, retrying transient failures with backoff."""
        table = kind.table

        async def attempt() -> BatchResult:
            conn = await self._connection()
            started = self.clock()
            try:
                result = await write_batch(conn, kind, records, copy=self._copy)
            except BaseException:
                await self._discard_connection()
                raise
            self.metrics.write_seconds.labels(table).observe(self.clock() - started)
            return result

        def failed(n: int, exc: BaseException, delay: float) -> None:
            if self._down_since is None:
                self._down_since = self.clock()
            self.metrics.db_up.set(0)
            transient = is_transient(exc)
            self.metrics.db_errors.labels(table, "connection" if transient else "unexpected").inc()
            if not transient:
                log.error("unexpected error writing a batch", exc_info=exc)
            log.warning(
                "database write failed; retrying",
                extra={
                    "table": table,
                    "attempt": n,
                    "retry_in_s": round(delay, 2),
                    "records": len(records),
                    "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                },
            )

        result = await retry_transient(
            attempt,
            policy=self.policy,
            sleep=self.sleep,
            rand=self.rand,
            on_failure=failed,
            # Data errors never get here (write_batch isolates them), so whatever escapes is
            # "cannot write now": retry rather than ack records that are not stored.
            retryable=_always,
        )
        if self._down_since is not None:
            log.info(
                "database write recovered",
                extra={"table": table, "down_s": round(self.clock() - self._down_since, 1)},
            )
            self._down_since = None
        self.metrics.db_up.set(1)
        self.metrics.batch_size.labels(table).observe(len(records))
        for name, n in result.rows_written.items():
            self.metrics.rows_written.labels(name).inc(n)
        for rejection in result.rejected:
            self.metrics.rows_rejected.labels(rejection.table).inc()
            if "sqlstate" in rejection.details:
                self.metrics.db_errors.labels(rejection.table, "data").inc()
        if result.rejected:
            log.warning(
                "records dead-lettered by the sink",
                extra={
                    "table": table,
                    "count": len(result.rejected),
                    "first_reason": result.rejected[0].reason,
                },
            )
        return result
