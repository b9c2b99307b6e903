"""The alert dispatcher: consumes the alerts topic, decides what to send now, hands it to
the durable outbox.

The decisions (grouping, group wait, repeat interval, acknowledged alerts that stop
repeating, escalation timers) are the pure :class:`~stackwatch.notify.NotifyScheduler` with an
injected clock; this module is the thin async shell: parse events, feed the scheduler, call
its ``tick`` on a timer.

Nothing is sent from here: due notifications become outbox rows (``sinks/outbox.py``),
committed in one PostgreSQL transaction with the scheduler state, and the outbox worker
delivers them with durable retries; the alert-topic offsets are committed only after that
transaction, so a slow robot never delays the timer or the consumer.

Acknowledgements arrive as the lifecycle's ``ack`` events on the alerts topic (the ack
command itself goes to the lifecycle, which owns alert state), so there is one source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from stackwatch.models import AlertEvent
from stackwatch.notify.config import NotifyConfig
from stackwatch.notify.model import Notification, stack_meta
from stackwatch.notify.scheduler import NotifyScheduler
from stackwatch.registry import StackRegistry
from streams.kafka_transport import FETCH_MAX_WAIT_MS

if TYPE_CHECKING:
    from sinks.outbox import HeartbeatPlan, OutboxEntry, OutboxWorker, PgOutbox

__all__ = [
    "AlertDispatcher",
    "DecisionStore",
    "FileStateStore",
    "StateStore",
    "load_scheduler",
    "load_scheduler_from_outbox",
    "run_dispatcher",
]

log = logging.getLogger(__name__)


class DecisionStore(Protocol):
    """Where decisions become durable (``sinks.outbox.PgOutbox``)."""

    async def commit(self, entries: Sequence[OutboxEntry], state: dict[str, Any]) -> None:
        """Store ``entries`` and the scheduler ``state`` in one transaction (raises when
        storage is unreachable)."""


class StateStore(Protocol):
    """Where an earlier dispatcher left the scheduler state."""

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none."""


class FileStateStore:
    """The JSON state file of dispatchers before the outbox; read once, at the first start on
    the outbox (the state then lives with the outbox)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved state; None when the file is missing."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: not a JSON object")
        return data


def load_scheduler(config: NotifyConfig, store: StateStore | None) -> NotifyScheduler:
    """The scheduler from the saved state, or a fresh one. An unreadable state is logged and
    set aside (renamed ``*.corrupt`` for file stores) rather than blocking the dispatcher."""
    if store is None:
        return NotifyScheduler(config)
    try:
        state = store.load()
        if state is not None:
            return NotifyScheduler.from_state(config, state)
    except (ValueError, OSError) as exc:  # pydantic ValidationError is a ValueError
        log.error("notification state unreadable; starting empty", extra={"error": str(exc)})
        if isinstance(store, FileStateStore):
            with contextlib.suppress(OSError):
                os.replace(store.path, store.path.with_suffix(store.path.suffix + ".corrupt"))
    return NotifyScheduler(config)


async def load_scheduler_from_outbox(config: NotifyConfig, outbox: PgOutbox) -> NotifyScheduler:
    """The scheduler from the state saved with the outbox, or a fresh one (an unreadable
    state is logged and replaced at the next commit)."""
    try:
        state = await outbox.load_state()
        if state is not None:
            return NotifyScheduler.from_state(config, state)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        log.error("notification state unreadable; starting empty", extra={"error": str(exc)})
    return NotifyScheduler(config)


class AlertDispatcher:
    """Feeds alert events to the scheduler and hands what its timer says is due to the
    outbox."""

    def __init__(
        self,
        scheduler: NotifyScheduler,
        outbox: DecisionStore,
        *,
        registry: StackRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_age: timedelta = timedelta(hours=24),
        heartbeat: HeartbeatPlan | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.registry = registry
        self.clock = clock
        self.outbox = outbox
        self.max_age = max_age
        self.heartbeat = heartbeat
        if heartbeat is not None:
            scheduler.config.group(heartbeat.group)  # StopIteration → caller validates
        self._unsaved: list[OutboxEntry] = []
        self._dirty = False
        self._heartbeat_slot: datetime | None = None
        self.rejected = 0

    def on_event(self, event: AlertEvent) -> bool:
        """Take one lifecycle event; False when it was a duplicate (already seen)."""
        taken = self.scheduler.handle(
            event, stack_meta(self.registry, event.stack_id), self.clock()
        )
        self._dirty = self._dirty or taken
        return taken

    def on_payload(self, payload: bytes | str | None) -> bool:
        """Parse one alerts-topic record; a malformed record is logged with its reason."""
        if payload is None:
            self.rejected += 1
            log.warning("alert event rejected", extra={"reason": "empty record"})
            return False
        try:
            event = AlertEvent.model_validate_json(payload)
        except ValidationError as exc:
            self.rejected += 1
            log.warning(
                "alert event rejected",
                extra={"reason": str(exc.errors()[0]["msg"]), "payload": str(payload)[:500]},
            )
            return False
        return self.on_event(event)

    async def checkpoint(self) -> None:
        """Make everything taken so far durable (call before committing offsets): the
        decisions not yet stored and the scheduler state, in one transaction (raises when the
        database is unreachable — then nothing may be committed)."""
        entries = list(self._unsaved)
        await self.outbox.commit(entries, self.scheduler.to_state())
        del self._unsaved[: len(entries)]
        self._dirty = False

    def _heartbeat_due(self, now: datetime) -> list[OutboxEntry]:
        from sinks.outbox import heartbeat_entries, heartbeat_slot

        if self.heartbeat is None:
            return []
        slot = heartbeat_slot(now, self.heartbeat.interval)
        if self._heartbeat_slot is not None and slot <= self._heartbeat_slot:
            return []
        self._heartbeat_slot = slot
        log.info("heartbeat due", extra={"slot": slot.isoformat(), "group": self.heartbeat.group})
        return heartbeat_entries(self.scheduler.config, self.heartbeat, slot, now)

    async def on_tick(self) -> list[Notification]:
        """Hand every notification due now to the outbox; returns them. A failed commit keeps
        the decisions for the next tick."""
        from sinks.outbox import entries_for

        now = self.clock()
        due = self.scheduler.tick(now)
        for notification in due:
            self._unsaved.extend(
                entries_for(self.scheduler.config, notification, now, self.max_age)
            )
        self._unsaved.extend(self._heartbeat_due(now))
        if self._unsaved or self._dirty or due:
            await self.checkpoint()
        return due


async def run_dispatcher(
    dispatcher: AlertDispatcher,
    *,
    bootstrap: str,
    topic: str,
    group_id: str = "stackwatch-notify",
    tick_interval_s: float = 5.0,
    stop: asyncio.Event | None = None,
    start_from: Literal["latest", "earliest"] = "latest",
    worker: OutboxWorker | None = None,
    worker_interval_s: float = 2.0,
) -> None:
    """Consume ``topic`` and tick the scheduler until ``stop`` is set; with ``worker``, also
    run the outbox delivery worker.

    Offsets are committed only after :meth:`AlertDispatcher.checkpoint` made the events
    durable (when it fails, nothing is committed and it is tried again with the next batch or
    tick). A new consumer group starts at the end of the topic by default (``start_from``):
    a fresh dispatcher does not page people about history.
    """
    stop = stop or asyncio.Event()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=start_from,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    log.info("alert dispatcher started", extra={"topic": topic, "group_id": group_id})

    async def timer() -> None:
        while not stop.is_set():
            try:
                await dispatcher.on_tick()
            except Exception:
                log.exception("dispatcher tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_interval_s)

    ticker = asyncio.create_task(timer())
    delivering = (
        asyncio.create_task(worker.run(stop, worker_interval_s)) if worker is not None else None
    )
    uncommitted = False
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batches.values():
                for record in records:
                    dispatcher.on_payload(record.value)
            uncommitted = uncommitted or bool(batches)
            if uncommitted:
                try:
                    await dispatcher.checkpoint()
                except Exception as exc:
                    log.error("checkpoint failed; offsets not committed",
                              extra={"error": f"{type(exc).__name__}: {exc}"})
                    continue
                await consumer.commit()
                uncommitted = False
    finally:
        stop.set()
        await ticker
        if delivering is not None:
            await delivering
        await consumer.stop()
        log.info("alert dispatcher stopped")
