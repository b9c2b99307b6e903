"""The durable notification outbox (table ``notification_outbox``, docs/notifications.md).

Why: a message decided by the scheduler must reach every recipient even when a robot or the
mail server is down for hours, or the dispatcher restarts. So a decision is first *written*
— one row per (message, destination), in the same transaction as the scheduler state that
made it, before the alert-topic offsets are committed — and only then *sent*, by
:class:`OutboxWorker`, which retries each destination with exponential back-off until the row
is ``delivered``, refused for good (``failed``: a 4xx/5xx that no retry can fix) or older
than the maximum age (``expired``, logged and counted).

Guarantees (docs/notifications.md "Delivery guarantees"):

* **nothing lost**: a row is only ever left as ``pending`` or moved to a final status;
* **no duplicate decisions**: ``message_id`` is the natural key of a decision (a hash of the
  notification: route, group, kind, level, decision time and every ``(alert_id, seq)``), and
  rows are inserted ``ON CONFLICT DO NOTHING``; heartbeats are keyed by their interval;
* **at-least-once sending, marked once**: a row is marked delivered right after the receiver
  accepted it. A crash in between (after the receiver's 2xx / SMTP 250, before the UPDATE
  commits — milliseconds) sends that one message again after the restart; nothing else can;
* **order per destination**: only the oldest pending row of a destination is attempted, so a
  "resolved" never overtakes its "firing" and back-off applies per destination.

Run one dispatcher (one worker) per deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sinks.db import LazyPool
from sinks.notifiers import DeliveryError, Notifier, NotifierMetrics, channel_id
from stackwatch.backoff import BackoffPolicy
from stackwatch.notify.config import Channel, NotifyConfig
from stackwatch.notify.model import Heartbeat, Notification
from stackwatch.notify.routing import deliveries

__all__ = [
    "Backoff",
    "HeartbeatPlan",
    "OutboxEntry",
    "OutboxRow",
    "OutboxWorker",
    "PassResult",
    "PgOutbox",
    "entries_for",
    "heartbeat_entries",
    "heartbeat_slot",
    "message_id",
]

log = logging.getLogger(__name__)

OutboxStatus = Literal["pending", "delivered", "expired", "failed"]
OutboxKind = Literal["firing", "repeat", "escalation", "resolved", "heartbeat"]


@dataclass(frozen=True)
class Backoff:
    """The outbox's retry settings (STACKWATCH_NOTIFY__RETRY_*) on the one back-off schedule,
    :class:`~stackwatch.backoff.BackoffPolicy` (which validates them), without jitter: the
    wait is stored as the row's next attempt time, not slept, and one worker runs per
    deployment, so there are no reconnects to spread."""

    initial_s: float = 5.0
    factor: float = 2.0
    max_s: float = 300.0

    def __post_init__(self) -> None:
        self.policy()  # refuses invalid settings at construction

    def policy(self) -> BackoffPolicy:
        """The shared schedule with these settings."""
        return BackoffPolicy(self.initial_s, self.factor, self.max_s, jitter=0.0)

    def delay(self, attempts: int) -> timedelta:
        """Wait after ``attempts`` (≥ 1) failed attempts."""
        return timedelta(seconds=self.policy().delay(attempts))


class OutboxEntry(BaseModel):
    """One message to one destination, as written by the dispatcher."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    destination: str = Field(description="'recipient <target>' without secrets.")
    recipient: str
    channel: str = Field(description="webhook | email")
    channel_id: str
    kind: OutboxKind
    alert_ids: list[str] = Field(default_factory=list)
    event_seqs: list[int] = Field(default_factory=list)
    message: dict[str, Any]
    created_at: AwareDatetime
    expires_at: AwareDatetime


class OutboxRow(OutboxEntry):
    """A stored row with its delivery state."""

    id: int
    status: OutboxStatus
    attempts: int
    next_attempt_at: AwareDatetime
    last_error: str | None = None
    finished_at: AwareDatetime | None = None

    def decoded(self) -> Notification | Heartbeat:
        """The message document as its model."""
        if self.kind == "heartbeat":
            return Heartbeat.model_validate(self.message)
        return Notification.model_validate(self.message)


def message_id(notification: Notification) -> str:
    """Natural key of one scheduler decision (the same decision always gives the same id)."""
    events = ",".join(f"{i.event.alert_id}:{i.event.seq}" for i in notification.alerts)
    return hashlib.sha256(f"{notification.dedup_key}|{events}".encode()).hexdigest()[:32]


def entries_for(
    config: NotifyConfig, notification: Notification, now: datetime, max_age: timedelta
) -> list[OutboxEntry]:
    """The outbox rows of one notification: one per distinct recipient channel."""
    mid = message_id(notification)
    doc = notification.model_dump(mode="json")
    return [
        OutboxEntry(
            message_id=mid,
            destination=d.recipient_label,
            recipient=d.recipient,
            channel=d.channel_type,
            channel_id=channel_id(d.channel),
            kind=notification.kind.value,
            alert_ids=[i.event.alert_id for i in notification.alerts],
            event_seqs=[i.event.seq for i in notification.alerts],
            message=doc,
            created_at=now,
            expires_at=now + max_age,
        )
        for d in deliveries(config, notification)
    ]


@dataclass(frozen=True)
class HeartbeatPlan:
    """Send "stackwatch is alive" to recipient group ``group`` once per ``interval``."""

    group: str
    interval: timedelta
    source: str = "stackwatch"


def heartbeat_slot(now: datetime, interval: timedelta) -> datetime:
    """Start of the interval holding ``now``, aligned to the Unix epoch (so 1 h heartbeats
    fall on whole UTC hours and a restart inside an interval lands on the same slot)."""
    step = interval.total_seconds()
    return datetime.fromtimestamp((now.timestamp() // step) * step, UTC)


def heartbeat_entries(
    config: NotifyConfig, plan: HeartbeatPlan, slot: datetime, now: datetime
) -> list[OutboxEntry]:
    """Rows of the heartbeat of ``slot``; it expires when the next one is due (a late
    heartbeat would claim liveness for a time it does not know about)."""
    hb = Heartbeat(at=slot, interval_s=plan.interval.total_seconds(), source=plan.source)
    mid = hashlib.sha256(f"heartbeat|{plan.source}|{slot.isoformat()}".encode()).hexdigest()[:32]
    out: list[OutboxEntry] = []
    seen: set[str] = set()
    for member in config.group(plan.group).members:
        recipient = config.recipient(member)
        for channel in recipient.channels:
            cid = channel_id(channel)
            if cid in seen:
                continue
            seen.add(cid)
            out.append(
                OutboxEntry(
                    message_id=mid,
                    destination=f"{recipient.name} <{channel.target}>",
                    recipient=recipient.name,
                    channel=channel.type,
                    channel_id=cid,
                    kind="heartbeat",
                    message=hb.model_dump(mode="json"),
                    created_at=now,
                    expires_at=slot + plan.interval,
                )
            )
    return out


def resolve_channel(config: NotifyConfig, row: OutboxRow) -> Channel | None:
    """The row's channel in the current routing file (None: recipient or channel removed)."""
    recipient = next((r for r in config.recipients if r.name == row.recipient), None)
    if recipient is None:
        return None
    return next((c for c in recipient.channels if channel_id(c) == row.channel_id), None)


# ------------------------------------------------------------------------------- storage

_COLUMNS = (
    "id, message_id, destination, recipient, channel, channel_id, kind, alert_ids, event_seqs,"
    " message, status, attempts, created_at, next_attempt_at, expires_at, last_error,"
    " finished_at"
)

_INSERT = """
INSERT INTO notification_outbox (message_id, destination, recipient, channel, channel_id, kind,
    alert_ids, event_seqs, message, created_at, next_attempt_at, expires_at)
VALUES (%(message_id)s, %(destination)s, %(recipient)s, %(channel)s, %(channel_id)s, %(kind)s,
    %(alert_ids)s, %(event_seqs)s, %(message)s, %(created_at)s, %(created_at)s, %(expires_at)s)
ON CONFLICT (message_id, destination) DO NOTHING
"""

_SAVE_STATE = """
INSERT INTO notify_state (name, state, saved_at) VALUES (%(name)s, %(state)s, now())
ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, saved_at = EXCLUDED.saved_at
"""

#: The oldest pending row of each destination, if it is due (per-destination order).
_DUE = f"""
SELECT {_COLUMNS} FROM (
    SELECT DISTINCT ON (destination) * FROM notification_outbox
    WHERE status = 'pending' ORDER BY destination, id
) head
WHERE head.next_attempt_at <= %(now)s
ORDER BY head.id
LIMIT %(limit)s
"""

_EXPIRE = f"""
UPDATE notification_outbox
SET status = 'expired', finished_at = %(now)s,
    last_error = coalesce(last_error, 'never attempted')
WHERE status = 'pending' AND expires_at <= %(now)s
RETURNING {_COLUMNS}
"""


class PgOutbox:
    """The outbox and the scheduler state in PostgreSQL, through a small connection pool."""

    def __init__(self, dsn: str, *, name: str = "stackwatch-notify", max_size: int = 4) -> None:
        self.dsn = dsn
        self.name = name
        self.max_size = max_size
        self._pool = LazyPool(dsn, name="stackwatch-outbox", max_size=max_size)

    async def _open(self) -> AsyncConnectionPool:
        return await self._pool.get()

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    async def load_state(self) -> dict[str, Any] | None:
        """The saved scheduler state of this dispatcher, or None."""
        pool = await self._open()
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT state FROM notify_state WHERE name = %s", (self.name,))
            row = await cur.fetchone()
        return dict(row[0]) if row is not None else None

    async def commit(self, entries: Sequence[OutboxEntry], state: dict[str, Any]) -> None:
        """Insert ``entries`` (existing natural keys are skipped) and save ``state``, in one
        transaction: either both are durable or neither is."""
        pool = await self._open()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if entries:
                await cur.executemany(
                    _INSERT,
                    [e.model_dump() | {"message": Jsonb(e.message)} for e in entries],
                )
            await cur.execute(_SAVE_STATE, {"name": self.name, "state": Jsonb(state)})

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[OutboxRow]:
        pool = await self._open()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), params)
            return [OutboxRow.model_validate(r) for r in await cur.fetchall()]

    async def due(self, now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Heads of destinations due at ``now`` (at most one row per destination)."""
        return await self._rows(_DUE, {"now": now, "limit": limit})

    async def expire(self, now: datetime) -> list[OutboxRow]:
        """Mark pending rows past their expiry as expired; returns them."""
        return await self._rows(_EXPIRE, {"now": now})

    async def finish(
        self, row_id: int, status: OutboxStatus, attempts: int, error: str | None,
        now: datetime, next_attempt_at: datetime | None = None,
    ) -> None:
        """Record an attempt: ``pending`` with the next attempt time, or a final status.
        Only a pending row changes (a row is marked final exactly once)."""
        pool = await self._open()
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE notification_outbox SET status = %(status)s, attempts = %(attempts)s,"
                " last_error = %(error)s, next_attempt_at = coalesce(%(next)s, next_attempt_at),"
                " finished_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE %(now)s END"
                " WHERE id = %(id)s AND status = 'pending'",
                {"status": status, "attempts": attempts, "error": error, "now": now,
                 "next": next_attempt_at, "id": row_id},
            )

    async def counts(self) -> dict[str, int]:
        """Rows per status."""
        pool = await self._open()
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, count(*) FROM notification_outbox GROUP BY status"
            )
            return {status: int(n) for status, n in await cur.fetchall()}


# -------------------------------------------------------------------------------- worker


class PassResult(BaseModel):
    """What one pass of the worker did (counts of rows)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0


class OutboxWorker:
    """Delivers due outbox rows: one attempt per due destination head, back-off on failure."""

    def __init__(
        self,
        outbox: PgOutbox,
        notifier: Notifier,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: NotifierMetrics | None = None,
        max_concurrent: int = 16,
    ) -> None:
        self.outbox = outbox
        self.notifier = notifier
        self.config = notifier.config
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.metrics = metrics or notifier.metrics
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run_once(self) -> PassResult:
        """Expire what is too old, then deliver until no destination head is due at the
        pass's clock time (a delivered head lets the next row of its destination go)."""
        now = self.clock()
        result = PassResult()
        for row in await self.outbox.expire(now):
            result.expired += 1
            self.metrics.expired.labels(channel=row.channel, kind=row.kind).inc()
            log.warning(
                "notification expired undelivered",
                extra={"destination": row.destination, "kind": row.kind, "attempts": row.attempts,
                       "alerts": row.alert_ids, "error": row.last_error,
                       "created_at": row.created_at.isoformat()},
            )
            await self._record(row, "failed", f"expired: {row.last_error}")
        while True:
            rows = await self.outbox.due(now)
            if not rows:
                break
            outcomes = await asyncio.gather(*(self._deliver(row, now) for row in rows))
            for outcome in outcomes:
                setattr(result, outcome, getattr(result, outcome) + 1)
        counts = await self.outbox.counts()
        self.metrics.pending.set(counts.get("pending", 0))
        return result

    async def _deliver(
        self, row: OutboxRow, now: datetime
    ) -> Literal["delivered", "retried", "failed"]:
        attempts = row.attempts + 1
        extra: dict[str, Any] = {"destination": row.destination, "kind": row.kind,
                                 "attempts": attempts, "alerts": row.alert_ids}
        channel = resolve_channel(self.config, row)
        if channel is None:
            gone = "recipient or channel no longer in the routing file"
            await self.outbox.finish(row.id, "failed", row.attempts, gone, now)
            log.error("notification undeliverable", extra=extra | {"error": gone})
            return "failed"
        error: str | None = None
        retryable = True
        async with self._slots:
            try:
                await self.notifier.attempt(row.recipient, channel, row.decoded())
            except DeliveryError as exc:
                error, retryable = str(exc), exc.retryable
        if error is None:
            await self.outbox.finish(row.id, "delivered", attempts, None, now)
            self.metrics.deliveries.labels(
                channel=row.channel, kind=row.kind, outcome="sent").inc()
            log.info("notification delivered", extra=extra)
            await self._record(row, "sent", None, channel, attempts)
            return "delivered"
        if not retryable:
            await self.outbox.finish(row.id, "failed", attempts, error, now)
            self.metrics.deliveries.labels(
                channel=row.channel, kind=row.kind, outcome="failed").inc()
            log.error("notification refused for good", extra=extra | {"error": error})
            await self._record(row, "failed", error, channel, attempts)
            return "failed"
        retry_at = now + self.backoff.delay(attempts)
        await self.outbox.finish(row.id, "pending", attempts, error, now, retry_at)
        self.metrics.retries.labels(channel=row.channel).inc()
        log.warning("notification attempt failed; will retry",
                    extra=extra | {"error": error, "retry_at": retry_at.isoformat()})
        return "retried"

    async def _record(
        self, row: OutboxRow, status: Literal["sent", "failed"], error: str | None,
        channel: Channel | None = None, attempts: int | None = None,
    ) -> None:
        """The per-alert delivery log (``notifications``) of an alert message's outcome."""
        if row.kind == "heartbeat":
            return
        channel = channel or resolve_channel(self.config, row)
        if channel is None:
            return
        message = row.decoded()
        assert isinstance(message, Notification)
        await self.notifier.record(
            row.recipient, channel, message, status,
            row.attempts if attempts is None else attempts, error,
        )

    async def run(self, stop: asyncio.Event, interval_s: float = 2.0) -> None:
        """Pass after pass until ``stop`` is set; a failing pass (database down) is logged
        and tried again at the next interval."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
