"""Four real hours of a provincial platform through the pure pipeline (normaliser + processor).

The capture (../shared/data, 2016-08-24 04:00–08:00, 284 loggers) is replayed in file order
with the registry `stackwatch replay --write-registry` infers from it, each frame received at
its place on the capture's timeline. The verdicts come from `tests/real_capture.py`, which
reads the files on its own: the loggers' own hour records (CN 2061) are the oracle for the
hourly means, and the raw DataTimes for silences and clocks. The same figures are checked
through the real services in tests/e2e/test_real_hours.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial

import pytest

from simulators.replay import load_replays, registry_for
from stackwatch.limits import default_catalogue
from stackwatch.models import (
    AggregateRecord,
    AlertEvent,
    EventKind,
    RawFrame,
    Reading,
    Rule,
    Verdict,
)
from stackwatch.normalise import reading_from_raw
from stackwatch.platform_clock import PlatformClock
from stackwatch.processor import Outputs, StackProcessor, day_of
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.stack_limits import LimitResolver, StackLimits
from tests import real_capture as oracle

Y2K_LOGGER = "LD130131000211"  # sends DataTime 2000-02-02 (the data README)


@dataclass
class PureRun:
    registry: StackRegistry
    aggregates: list[AggregateRecord] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    late: list[str] = field(default_factory=list)

    def add(self, out: Outputs) -> None:
        self.aggregates += out.aggregates
        self.alerts += out.alerts
        self.late += out.late

    def raised(self, rule: Rule) -> list[str]:
        return [
            self.registry.by_id(a.stack_id).mn  # type: ignore[union-attr]
            for a in self.alerts
            if a.rule is rule and a.kind is EventKind.RAISE
        ]


@pytest.fixture(scope="module")
def run() -> PureRun:
    log = load_replays(oracle.HOURS)
    registry = registry_for(log)
    resolver = LimitResolver(default_catalogue())
    peers = PlatformClock()
    procs: dict[str, StackProcessor] = {}
    result = PureRun(registry)

    def limits(stack: StackInfo) -> Callable[[date], StackLimits]:
        return partial(resolver.for_stack, stack)

    last_rx = None
    for frame in log.frames:
        if not frame.ok or frame.at is None:
            continue
        rx = frame.at + timedelta(seconds=20)
        last_rx = rx
        raw = RawFrame(text=frame.wire.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                       received_at=rx, peer="replay", mn=frame.mn, verdict=Verdict.ACCEPTED)
        reading = reading_from_raw(
            raw, registry.by_mn, lambda s, t: resolver.for_stack(s, day_of(t)).ref_o2
        )
        if not isinstance(reading, Reading) or reading.flue_gas is False:
            continue
        if reading.flue_gas is None and reading.stack_id not in procs:
            continue
        stack = registry.by_id(reading.stack_id)
        assert stack is not None
        proc = procs.setdefault(reading.stack_id, StackProcessor(reading.stack_id))
        event_time = proc.event_time_of(reading)
        if event_time is not None and reading.kind.value in ("realtime", "minute"):
            peers.observe(reading.stack_id, reading.received_at, event_time)
        result.add(proc.on_reading(reading, limits(stack), peers.reference()))
    assert last_rx is not None
    for stack_id, proc in sorted(procs.items()):
        stack = registry.by_id(stack_id)
        assert stack is not None
        # The input has ended: ticks as the worker's timer gives them (the platform is
        # silent), then the idle flush.
        for minute in range(0, 10):
            silent = timedelta(minutes=minute)
            result.add(proc.tick(last_rx + silent, limits(stack), silent))
        result.add(proc.flush(last_rx + timedelta(minutes=10), limits(stack)))
    return result


def platform_hours(run: PureRun) -> dict[tuple[str, str, datetime], tuple[bool, float | None]]:
    out: dict[tuple[str, str, datetime], tuple[bool, float | None]] = {}
    for a in run.aggregates:  # in emission order: the last revision of an hour wins
        if a.period == "hour":
            out[(a.stack_id, a.factor, a.period_start)] = (a.valid, a.mean)
    return out


def test_platform_hours_agree_with_the_loggers_own_hours(run: PureRun) -> None:
    labels = {s.mn: s.interval_label or "end" for s in run.registry.stacks}
    stack_of = {s.mn: s.stack_id for s in run.registry.stacks}
    result = oracle.agreement(platform_hours(run), labels, stack_of)
    print(f"agreement: {result.agreeing}/{result.loggers} = {result.share:.1%}")
    assert result.loggers >= 100  # the flue-gas loggers with minute and hour data, running
    assert result.share >= 0.90, sorted(
        (mn, c) for mn, c in result.per_logger.items() if c[0] < 0.9 * c[1]
    )


def test_offline_only_for_loggers_that_fell_silent(run: PureRun) -> None:
    # A logger is offline after 3 of its real-time intervals (5 min here) without a frame,
    # or 10 minutes, whichever is longer.
    def timeout(mn: str) -> timedelta:
        stack = run.registry.by_mn(mn)
        rtd = stack.rtd_interval_s if stack and stack.rtd_interval_s else 30
        return max(timedelta(minutes=10), 3 * timedelta(seconds=rtd))

    offline = set(run.raised(Rule.OFFLINE))
    silent = {mn for mn in oracle.realtime_span() if oracle.longest_silence(mn) >= timeout(mn)}
    print(f"offline: {sorted(offline)}")
    assert offline == silent
    assert len(offline) < 20


def test_clock_skew_only_for_clocks_that_were_wrong(run: PureRun) -> None:
    # Judged against the peers' consensus: the year-2000 logger is flagged, once; any other
    # flagged logger's clock is more than 30 minutes off the capture's timeline.
    skewed = run.raised(Rule.CLOCK_SKEW)
    print(f"clock skew: {sorted(skewed)}")
    assert skewed.count(Y2K_LOGGER) == 1
    offsets = oracle.clock_offsets()
    assert all(abs(offsets.get(mn, 1e9)) > 30 for mn in skewed if mn != Y2K_LOGGER)


def test_wastewater_loggers_are_kept_out_of_flue_gas_rules(run: PureRun) -> None:
    water = oracle.wastewater_loggers()
    assert len(water) > 100
    water_stacks = {f"auto-{mn}" for mn in water}
    assert not [a for a in run.aggregates if a.stack_id in water_stacks]
    assert not [a for a in run.alerts if a.stack_id in water_stacks]


def test_stopped_stacks_are_marked_stopped_without_zero_or_flatline_alarms(run: PureRun) -> None:
    stopped = oracle.stopped_loggers()
    assert len(stopped) >= 10
    stacks = {f"auto-{mn}" for mn in stopped}
    hours = [a for a in run.aggregates if a.period == "hour" and a.stack_id in stacks]
    complete = [h for h in hours if (h.coverage_minutes or 0) == 0]
    assert complete and all(h.stopped for h in hours if h.total_count >= 4)
    quiet = {Rule.ZERO, Rule.FLATLINE, Rule.NEGATIVE, Rule.HOUR_INCOMPLETE}
    assert not [a for a in run.alerts if a.stack_id in stacks and a.rule in quiet]


def test_no_hour_is_lost_and_nothing_is_too_late(run: PureRun) -> None:
    assert run.late == []
    assert sum(1 for a in run.aggregates if a.period == "hour") > 1000
