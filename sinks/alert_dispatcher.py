"""The alert dispatcher: consumes the alerts topic, decides what to send now, sends it.

The decisions (grouping, group wait, repeat interval, acknowledged alerts that stop
repeating, escalation timers) are the pure :class:`~stackwatch.notify.NotifyScheduler` with an
injected clock; this module is the thin async shell: parse events, feed the scheduler, call
its ``tick`` on a timer and hand due notifications to the :class:`~sinks.notifiers.Notifier`
in background tasks (bounded), so a slow robot never delays the timer or the consumer.

Acknowledgements arrive as the lifecycle's ``ack`` events on the alerts topic (the ack
command itself goes to the lifecycle, which owns alert state), so there is one source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from stackwatch.alerts import AlertEvent
from stackwatch.notify.config import NotifyConfig
from stackwatch.notify.model import Notification, stack_meta
from stackwatch.notify.scheduler import NotifyScheduler
from stackwatch.registry import StackRegistry

__all__ = [
    "AlertDispatcher",
    "FileStateStore",
    "NotificationSender",
    "StateStore",
    "load_scheduler",
    "run_dispatcher",
]

log = logging.getLogger(__name__)


class NotificationSender(Protocol):
    """What the dispatcher hands notifications to (``sinks.notifiers.Notifier``)."""

    async def send(self, notification: Notification) -> Any:
        """Deliver to every recipient (must not raise on delivery failures)."""


class StateStore(Protocol):
    """Where the scheduler state survives restarts."""

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none."""

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state."""


class FileStateStore:
    """A JSON file, replaced atomically (write to a temporary file, then rename)."""

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

    def save(self, state: dict[str, Any]) -> None:
        """Write atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


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


class AlertDispatcher:
    """Feeds alert events to the scheduler and sends what its timer says is due."""

    def __init__(
        self,
        scheduler: NotifyScheduler,
        sender: NotificationSender,
        *,
        registry: StackRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_concurrent_sends: int = 16,
        state_store: StateStore | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.state_store = state_store
        self.sender = sender
        self.registry = registry
        self.clock = clock
        self._slots = asyncio.Semaphore(max_concurrent_sends)
        self._tasks: set[asyncio.Task[None]] = set()
        self.rejected = 0

    def on_event(self, event: AlertEvent) -> bool:
        """Take one lifecycle event; False when it was a duplicate (already seen)."""
        return self.scheduler.handle(event, stack_meta(self.registry, event.stack_id), self.clock())

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

    def persist(self) -> None:
        """Save the scheduler state (before offsets are committed)."""
        if self.state_store is not None:
            self.state_store.save(self.scheduler.to_state())

    async def on_tick(self) -> list[Notification]:
        """Start sending every notification that is due now; returns them."""
        due = self.scheduler.tick(self.clock())
        if due:
            self.persist()
        for notification in due:
            task = asyncio.create_task(self._send(notification))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return due

    async def _send(self, notification: Notification) -> None:
        async with self._slots:
            try:
                await self.sender.send(notification)
            except Exception:
                log.exception(
                    "notification send crashed",
                    extra={"route": notification.route, "kind": notification.kind.value},
                )

    async def drain(self) -> None:
        """Wait for every send in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def run_dispatcher(
    dispatcher: AlertDispatcher,
    *,
    bootstrap: str,
    topic: str,
    group_id: str = "stackwatch-notify",
    tick_interval_s: float = 5.0,
    stop: asyncio.Event | None = None,
    start_from: Literal["latest", "earliest"] = "latest",
) -> None:
    """Consume ``topic`` and tick the scheduler until ``stop`` is set.

    Offsets are committed after the events are in the scheduler. A new consumer group starts
    at the end of the topic by default (``start_from``): a fresh dispatcher does not page
    people about history.
    """
    stop = stop or asyncio.Event()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=start_from,
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
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batches.values():
                for record in records:
                    dispatcher.on_payload(record.value)
            if batches:
                dispatcher.persist()
                await consumer.commit()
    finally:
        stop.set()
        await ticker
        await dispatcher.drain()
        await consumer.stop()
        log.info("alert dispatcher stopped")
