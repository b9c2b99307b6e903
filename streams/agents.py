"""The worker's agents: raw frames → readings, aggregates and alert events in one hop.

Agents stay thin (CONTRIBUTING.md): parse the record, call the pure domain code
(`stackwatch.normalise.reading_from_raw`, `stackwatch.processor.StackProcessor`), emit. The
logic sits in `Pipeline` methods taking plain bytes so it is testable with
`agent.test_context()` and independent of Faust's stream plumbing; `create_app` wires them.

Delivery: at-least-once, by checkpoints (`streams.checkpoint`). Each record's outputs are
queued in input order without waiting for the broker; at the checkpoint each changed stack's
state is written once, every delivery is awaited, and only then are the records acknowledged
so Faust commits their offsets. A crash in between re-processes the checkpoint's records: the
windows and the alert book treat a repeat as a duplicate (no new events), or the same outputs
are sent again with the same natural keys — aggregates (stack_id, factor, period,
period_start, revision), alerts (alert_id, seq) — which consumers upsert. Nothing is lost; a
repeated record is identical.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Literal

from faust.types import TopicT
from pydantic import ValidationError

from stackwatch.alerts import AlertNotFoundError
from stackwatch.limits.catalogue import LimitCatalogue
from stackwatch.models import AckCommand, DeadLetter, RawFrame, Reading, ReadingKind, Verdict
from stackwatch.normalise import NormaliseConfig, Refusal, reading_from_raw, security_event
from stackwatch.platform_clock import RECEIPT_TIME, ClockReference, PlatformClock
from stackwatch.processor import Outputs, StackProcessor, day_of
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.stack_limits import LimitResolver, StackLimits
from streams.metrics import WorkerMetrics
from streams.state import StackStates, wall_clock
from streams.topics import Topics

log = logging.getLogger(__name__)

Send = Callable[[TopicT, bytes, bytes], Awaitable[Awaitable[Any]]]
"""How a record is produced: returns the delivery future (Faust's `topic.send` contract)."""

INPUT_GAP_S = 60.0
"""Input silence shorter than this is ordinary (a quiet minute), not the platform's input
stopping; longer silence does not make loggers offline (`StackProcessor.tick`)."""

AUTO_SECTOR = "industrial_furnace"
AUTO_PROCESS = "other"


async def faust_send(topic: TopicT, key: bytes, value: bytes) -> Awaitable[Any]:
    """Produce through Faust; the returned future resolves when the broker has the record."""
    return await topic.send(key=key, value=value)


def _text(value: bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="backslashreplace")


class Pipeline:
    """Per-record logic of the frames and command agents and the tick timer."""

    def __init__(
        self,
        *,
        topics: Topics,
        states: StackStates,
        registry: StackRegistry,
        catalogue: LimitCatalogue,
        normalise_cfg: NormaliseConfig,
        metrics: WorkerMetrics,
        auto_register: bool = False,
        send: Send = faust_send,
        clock: Callable[[], datetime] = wall_clock,
        idle_flush_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock_reference: Literal["peers", "receipt"] = "peers",
        clock_min_peers: int = 5,
    ) -> None:
        self.topics = topics
        self.states = states
        self.registry = registry
        self.resolver = LimitResolver(catalogue)
        self.normalise_cfg = normalise_cfg
        self.metrics = metrics
        self.auto_register = auto_register
        self.send = send
        self.clock = clock
        self._auto: dict[str, StackInfo] = {}
        self.platform_clock = PlatformClock(min_stacks=clock_min_peers)
        self.clock_reference = clock_reference
        self.idle_flush_s = idle_flush_s
        self.monotonic = monotonic
        self._last_input: float | None = None
        self._flushed = True
        # One record or tick at a time per stack, from domain call to queued outputs:
        # otherwise the timer could persist a state whose record's outputs are not queued.
        self._locks: dict[str, asyncio.Lock] = {}
        # Readings applied to a live processor since its state was last saved, in order: a
        # processing error mid-checkpoint rebuilds the stack from its saved state with them.
        self._unsaved: dict[str, list[tuple[Reading, StackInfo]]] = {}

    # ------------------------------------------------------------------ lookups

    def lookup_stack(self, mn: str) -> StackInfo | None:
        """Registry entry of an MN; with auto-registration an unknown MN becomes a stack.

        Auto-registered stacks (replays of foreign captures) have no known sector: they get
        placeholder `industrial_furnace/other` marked `auto` (stack_id = MN), and data flow
        and quality rules apply, but no limit is judged against a sector nobody stated.
        """
        stack = self.registry.by_mn(mn)
        if stack is not None or not self.auto_register:
            return stack
        auto = self._auto.get(mn)
        if auto is None:
            try:
                auto = StackInfo(
                    stack_id=mn, mn=mn, sector=AUTO_SECTOR, process=AUTO_PROCESS, auto=True
                )
            except ValidationError:
                return None  # an MN the registry itself would refuse (e.g. > 24 chars)
            self._auto[mn] = auto
            log.info("auto-registered unknown MN", extra={"mn": mn})
        return auto

    def limits_for(self, stack: StackInfo, day: date) -> StackLimits:
        """Limits in force for the stack on that (+08:00) day (cached per stack and day).

        The processor gets `partial(limits_for, stack)`, so each window is judged by the
        limits of its own day, also when it closes after midnight.
        """
        return self.resolver.for_stack(stack, day)

    def ref_o2_for(self, stack: StackInfo, ts: datetime) -> float | None:
        """Reference O2 of the stack's limits on the day of `ts` (normaliser callback)."""
        return self.limits_for(stack, day_of(ts)).ref_o2

    def _stack_for_reading(self, reading: Reading) -> StackInfo:
        stack = self.registry.by_id(reading.stack_id) or self.registry.by_mn(reading.mn)
        if stack is not None:
            return stack
        return StackInfo(
            stack_id=reading.stack_id,
            mn=reading.mn,
            sector=reading.sector,
            process=reading.process,
        )

    # ------------------------------------------------------------------ decode

    def decode(self, key: bytes | None, value: bytes | None) -> Reading | DeadLetter | None:
        """One raw-topic record → a `Reading`, the dead letter saying why not, or None for a
        frame the gateway refused. Never raises."""
        text = _text(value)
        try:
            raw = RawFrame.model_validate_json(value or b"")
        except ValidationError as exc:
            return self._dead("decode", "malformed_raw", text, key, {"error": _first(exc)})
        if raw.verdict is not Verdict.ACCEPTED:
            # The raw topic is the audit log of every frame; the gateway has already written
            # this one's dead letter (stage "gateway", same reasons). A second one here would
            # count every bad frame twice.
            reason = raw.reasons[0].partition(":")[0] if raw.reasons else "rejected"
            self.metrics.gateway_rejected.labels(reason=reason).inc()
            # A refusal on encryption grounds still reaches the stack: it raises the alert.
            return security_event(raw, self.lookup_stack, self.normalise_cfg)
        try:
            result = reading_from_raw(raw, self.lookup_stack, self.ref_o2_for, self.normalise_cfg)
        except Exception as exc:  # the domain must not stop the worker on one bad frame
            log.exception("decode failed", extra={"mn": raw.mn})
            return self._dead("decode", "decode_error", text, key, {"error": repr(exc)})
        if isinstance(result, Refusal):
            details = {"detail": result.detail}
            if result.mn:
                details["mn"] = result.mn
            return self._dead("decode", result.reason, raw.text, key, details)
        return result

    async def process_frame(
        self, key: bytes | None, value: bytes | None, partition: int
    ) -> list[Awaitable[Any]]:
        """Frames agent body, one consume hop per frame: decode, validate and normalise, queue
        the reading (key = stack_id) for the sinks, and apply it to its stack; or queue the
        dead letter saying why not. The delivery futures are awaited at the checkpoint."""
        result = self.decode(key, value)
        if result is None:
            return []
        if isinstance(result, DeadLetter):
            return await _queued([self._dead_send(result)])
        self.metrics.readings.labels(kind=result.kind.value).inc()
        payload = result.model_dump_json()
        futures = await _queued([self._send(self.topics.readings, result.stack_id, payload)])
        return futures + await self.apply_reading(result, payload, partition)

    # ------------------------------------------------------------------ process

    async def apply_reading(
        self, reading: Reading, payload: str, partition: int
    ) -> list[Awaitable[Any]]:
        """Apply a reading to its stack and queue the outputs; the state is saved and the
        deliveries awaited at the checkpoint (`save_unsaved`). `payload` is the reading's JSON,
        kept in the dead letter of a reading that fails."""
        started = time.perf_counter()
        self._last_input = self.monotonic()
        self._flushed = False
        if reading.flue_gas is False or (
            reading.flue_gas is None and not self.states.known(reading.stack_id)
        ):
            # Wastewater and other systems: kept as readings by the sinks, never averaged or
            # judged as flue gas; no stack state is made for them.
            self.metrics.readings_not_flue_gas.labels(st=reading.st or "").inc()
            return []
        stack = self._stack_for_reading(reading)
        key = reading.stack_id.encode("utf-8")
        async with self._lock(reading.stack_id):
            proc = self.states.get(reading.stack_id, partition, stack)
            try:
                reference = self._clock_reference(proc, reading)
                out = proc.on_reading(reading, partial(self.limits_for, stack), reference)
            except Exception as exc:  # a domain bug must cost one record, not the worker
                log.exception("processing failed", extra={"stack_id": reading.stack_id})
                self._rebuild(reading.stack_id, partition, stack)
                dead = self._dead(
                    "aggregate", "processing_error", payload, key, {"error": repr(exc)}
                )
                return await _queued([self._dead_send(dead)])
            self._unsaved.setdefault(reading.stack_id, []).append((reading, stack))
            try:
                futures = await _queued(self._emit_sends(reading.stack_id, out, payload))
            except BaseException:
                self._forget(reading.stack_id)
                raise
        self.metrics.process_seconds.observe(time.perf_counter() - started)
        return futures

    def save_unsaved(self) -> list[Awaitable[Any]]:
        """Write every stack changed since its last save to the changelog, once each; the
        delivery futures (the checkpoint's step 2)."""
        futures = [
            self.states.save(stack_id) for stack_id in self._unsaved if self.states.live(stack_id)
        ]
        self._unsaved.clear()
        return futures

    def forget_unsaved(self) -> None:
        """Partitions were revoked: live objects are dropped, the table is the truth again."""
        self._unsaved.clear()

    def _rebuild(self, stack_id: str, partition: int, stack: StackInfo) -> None:
        """After a failed record: reload the stack's saved state and re-apply the readings
        applied since (their outputs are already queued), so only the bad record is lost."""
        self.states.discard(stack_id)
        proc = self.states.get(stack_id, partition, stack)
        for reading, seen_as in self._unsaved.get(stack_id, []):
            try:
                proc.on_reading(
                    reading, partial(self.limits_for, seen_as), self.platform_clock.reference()
                )
            except Exception:
                log.exception("re-applying a reading failed", extra={"stack_id": stack_id})

    def _forget(self, stack_id: str) -> None:
        """Outputs could not be queued: drop the live object and the checkpoint's readings of
        the stack; the unacknowledged records are processed again after the restart."""
        self.states.discard(stack_id)
        self._unsaved.pop(stack_id, None)

    def _clock_reference(self, proc: StackProcessor, reading: Reading) -> ClockReference | None:
        """The platform's clock as this worker's stacks show it (see `platform_clock`)."""
        if self.clock_reference == "receipt":
            return RECEIPT_TIME
        if reading.kind in (ReadingKind.REALTIME, ReadingKind.MINUTE) and not reading.resent:
            event_time = proc.event_time_of(reading)
            if event_time is not None:
                self.platform_clock.observe(reading.stack_id, reading.received_at, event_time)
        return self.platform_clock.reference()

    async def _commit(self, stack_id: str, out: Outputs, payload: str) -> None:
        """Deliver the outputs, then save the state; if interrupted, drop the live object.

        A cancellation (shutdown) or send failure between the domain call and the state write
        leaves a processor that already "saw" the record while its outputs may be lost; keeping
        it would let the timer persist that state, and the re-delivered record would then be a
        duplicate that emits nothing.
        """
        try:
            futures = await _queued(self._emit_sends(stack_id, out, payload))
            futures.append(self.states.save(stack_id))
            self._unsaved.pop(stack_id, None)
            await _all_delivered(futures)
        except BaseException:
            self._forget(stack_id)
            raise

    async def handle_command(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        """Command agent body: acknowledge an open alert on the stack's book."""
        try:
            cmd = AckCommand.model_validate_json(value or b"")
        except ValidationError as exc:
            self.metrics.commands.labels(outcome="rejected").inc()
            error = {"error": _first(exc)}
            dead = self._dead("command", "malformed_command", _text(value), key, error)
            await _all_delivered(await _queued([self._dead_send(dead)]))
            return
        async with self._lock(cmd.stack_id):
            proc = self.states.get(cmd.stack_id, partition)
            try:
                events = proc.on_ack(cmd.alert_id, cmd.by, cmd.reason, cmd.at)
            except AlertNotFoundError as exc:
                self.metrics.commands.labels(outcome="rejected").inc()
                error = {"error": str(exc)}
                dead = self._dead("command", "alert_not_open", _text(value), key, error)
                await _all_delivered(await _queued([self._dead_send(dead)]))
                return
            self.metrics.commands.labels(outcome="applied" if events else "duplicate").inc()
            await self._commit(cmd.stack_id, Outputs(alerts=events), _text(value))

    async def tick(self, active_partitions: Iterable[int]) -> int:
        """Timer body: tick every stack this worker owns; returns how many were ticked.

        Once the input has been idle for `idle_flush_s` (a replay has ended), every open hour
        and day is emitted once (`StackProcessor.flush`) instead of waiting for the midnight
        that only more data would bring.
        """
        flush = self._idle_flush_due()
        ticked = 0
        for stack_id in self.states.owned(active_partitions):
            async with self._lock(stack_id):
                ticked += await self._tick_one(stack_id, flush=flush)
        return ticked

    def _input_silence(self) -> timedelta:
        """How long no reading at all has arrived (beyond one tick's normal gap)."""
        if self._last_input is None:
            return timedelta(0)
        return timedelta(seconds=max(self.monotonic() - self._last_input - INPUT_GAP_S, 0.0))

    def _idle_flush_due(self) -> bool:
        if self.idle_flush_s is None or self._flushed or self._last_input is None:
            return False
        if self.monotonic() - self._last_input < self.idle_flush_s:
            return False
        self._flushed = True
        log.info("input idle: flushing open hours and days", extra={"idle_s": self.idle_flush_s})
        return True

    def _lock(self, stack_id: str) -> asyncio.Lock:
        lock = self._locks.get(stack_id)
        if lock is None:
            lock = self._locks[stack_id] = asyncio.Lock()
        return lock

    async def _tick_one(self, stack_id: str, *, flush: bool = False) -> int:
        """Tick one stack (caller holds its lock); 1 if it was ticked."""
        proc = self.states.get(stack_id)
        now = self.states.tick_time(stack_id)
        stack = self.states.stack_info(stack_id) or self.registry.by_id(stack_id)
        if now is None or stack is None:
            return 0
        try:
            out = proc.tick(now, partial(self.limits_for, stack), self._input_silence())
            if flush:
                out.extend(proc.flush(now, partial(self.limits_for, stack)))
        except Exception:
            self.states.discard(stack_id)
            log.exception("tick failed", extra={"stack_id": stack_id})
            return 0
        if out.aggregates or out.alerts or out.late:
            await self._commit(stack_id, out, "")
        return 1

    # ------------------------------------------------------------------ emit

    def _emit_sends(
        self, stack_id: str, out: Outputs, payload: str
    ) -> list[Awaitable[Awaitable[Any]]]:
        """The sends of a record's outputs, in order (nothing is queued until awaited)."""
        sends: list[Awaitable[Awaitable[Any]]] = []
        for agg in out.aggregates:
            topic = self.topics.for_period(agg.period)
            if topic is None:
                log.error("aggregate of unknown period", extra={"period": agg.period})
                continue
            self.metrics.aggregates.labels(period=agg.period).inc()
            sends.append(self._send(topic, stack_id, agg.model_dump_json()))
        for event in out.alerts:
            self.metrics.alerts.labels(rule=event.rule.value, kind=event.kind.value).inc()
            sends.append(self._send(self.topics.alerts, stack_id, event.model_dump_json()))
        for late in out.late:
            dead = self._dead("aggregate", "late", payload, stack_id.encode(), {"detail": late})
            sends.append(self._dead_send(dead))
        return sends

    def _send(self, topic: TopicT, key: str, value: str) -> Awaitable[Awaitable[Any]]:
        return self.send(topic, key.encode("utf-8"), value.encode("utf-8"))

    def _dead_send(self, dead: DeadLetter) -> Awaitable[Awaitable[Any]]:
        self.metrics.dead_letters.labels(stage=dead.stage, reason=dead.reason).inc()
        log.warning(
            "dead letter",
            extra={"stage": dead.stage, "reason": dead.reason, "key": dead.key, **dead.details},
        )
        return self._send(self.topics.deadletter, dead.key or "", dead.model_dump_json())

    def _dead(
        self,
        stage: str,
        reason: str,
        payload: str,
        key: bytes | None,
        details: dict[str, str],
    ) -> DeadLetter:
        return DeadLetter(
            stage=stage,
            reason=reason,
            payload=payload,
            key=_text(key) if key is not None else None,
            occurred_at=self.clock().astimezone(UTC),
            details=details,
        )


async def _queued(sends: list[Awaitable[Awaitable[Any]]]) -> list[Awaitable[Any]]:
    """Queue every send in order; their delivery futures (not awaited)."""
    return [await send for send in sends]


async def _all_delivered(futures: list[Awaitable[Any]]) -> None:
    """Wait until the broker has acknowledged every delivery."""
    if futures:
        await asyncio.gather(*futures)


def _first(exc: ValidationError) -> str:
    """The first validation error, short enough for a dead letter's details."""
    err = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))


__all__ = ["Pipeline", "Send", "faust_send"]
