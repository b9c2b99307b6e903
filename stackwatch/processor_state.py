"""The per-stack processor's state: its windows, event-time clock, cadences, alert book, and
their JSON snapshot for the Faust table (`to_state` / `from_state`).

The base of `stackwatch.processor.StackProcessor` (see that module for the rules): the layers
above it add window routing (`stackwatch.processor_windows`), period closing
(`stackwatch.period_closing`) and the inputs (`stackwatch.processor`); all share the state
declared here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Self

from stackwatch.alerts import AlertBook, Condition
from stackwatch.beijing_time import CST
from stackwatch.compliance import RollingMean
from stackwatch.emission_totals import EmissionTotals
from stackwatch.intervals import Cadence, record_span, snap_stamp
from stackwatch.models import Reading, ReadingKind
from stackwatch.processor_config import Outputs, ProcessorConfig
from stackwatch.quality import QualityConfig, StackQuality
from stackwatch.stack_limits import StackLimits
from stackwatch.window_archive import MemoryArchive, WindowArchive
from stackwatch.windows import EventTimeWindows

LimitsSource = StackLimits | Callable[[date], StackLimits]
"""The limits of the stack, or a function giving them for a (+08:00) day: an hour is judged
by the limits in force on the day the hour starts, even when it closes after midnight."""

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RTD_RESOLUTION_S = 10
"""Real-time DataTimes jitter by seconds: their gaps are compared to the nearest 10 s."""


def iso(ts: datetime) -> str:
    """A timestamp as ISO 8601 in +08:00 (window keys, archive keys, state)."""
    return ts.astimezone(CST).isoformat()


def from_iso(text: str) -> datetime:
    """Read back `iso()` (or any ISO 8601) output."""
    return datetime.fromisoformat(text)


def limits_on(source: LimitsSource, ts: datetime) -> StackLimits:
    """The stack's limits on the (+08:00) day of `ts`."""
    return source if isinstance(source, StackLimits) else source(day_of(ts))


def day_of(ts: datetime) -> date:
    """Local (+08:00) calendar day of a timestamp (limits are effective-dated by day)."""
    return ts.astimezone(CST).date()


class ProcessorState:
    """All per-stack state of a `StackProcessor`, its clock, and its JSON snapshot."""

    def __init__(
        self,
        stack_id: str,
        cfg: ProcessorConfig | None = None,
        archive: WindowArchive | None = None,
    ) -> None:
        self.stack_id = stack_id
        self.cfg = cfg or ProcessorConfig()
        self.archive: WindowArchive = archive if archive is not None else MemoryArchive()
        c = self.cfg
        self.rt = self._windows(timedelta(minutes=1), c.minute_grace, timedelta(0))
        self.hours = self._windows(HOUR, c.hour_grace, c.hour_lateness)
        self.days = self._windows(DAY, c.day_grace, c.day_lateness)
        self.quality = StackQuality.create(stack_id)
        self.book = AlertBook(c.alerts)
        self.rolling: dict[str, RollingMean] = {}
        self.last_logger_minute: datetime | None = None
        self.clock_event: datetime | None = None
        self.clock_arrival: datetime | None = None
        self.pending_jump: datetime | None = None
        self.pending_from_start = False
        self.cadence_min = Cadence()
        self.cadence_rt = Cadence(resolution_s=RTD_RESOLUTION_S)
        self.declared_min_s: int | None = None
        self.declared_rt_s: int | None = None
        self.flue_gas = False
        self.registry_conflict = False
        self.encryption_problem = False
        self.mismatch: dict[str, bool] = {}
        self.archived: dict[str, str] = {}
        self.totals = EmissionTotals()
        self._quality_cfgs: dict[int, QualityConfig] = {}

    def _windows(
        self, period: timedelta, grace: timedelta, lateness: timedelta
    ) -> EventTimeWindows:
        return EventTimeWindows(
            period,
            grace,
            lateness,
            max_clock_skew=self.cfg.max_clock_skew,
            watermark_from_items=False,
        )

    # ------------------------------------------------------------------ clock

    def event_clock(self, now: datetime) -> datetime | None:
        """The stack's event-time clock at wall time `now` (None before the first frame)."""
        if self.clock_event is None or self.clock_arrival is None:
            return None
        return self.clock_event + max(now - self.clock_arrival, timedelta(0))

    def _note_frame(self, event_time: datetime, arrival: datetime) -> None:
        if self.clock_event is None or event_time >= self.clock_event:
            self.clock_event = event_time
            self.clock_arrival = arrival

    def min_interval(self) -> timedelta:
        """The stack's minute-data interval: registered, else inferred, else the default."""
        seconds = self.declared_min_s or self.cadence_min.interval_s()
        return timedelta(seconds=seconds) if seconds else self.cfg.default_min_interval

    def rtd_interval(self) -> timedelta:
        """The stack's real-time interval: registered, else inferred, else the default."""
        seconds = self.declared_rt_s or self.cadence_rt.interval_s()
        return timedelta(seconds=seconds) if seconds else self.cfg.default_rtd_interval

    def offline_timeout(self) -> timedelta:
        """No frame for this long → offline: the floor, or missed uploads of its cadence.

        The cadence the logger is *seen* to keep wins over the registered one: a registry that
        says 1 minute for a logger uploading every 10 is reported (registry_mismatch), and must
        not also make the logger "offline" between its uploads.
        """
        q = self.cfg.quality
        known = [
            timedelta(seconds=s)
            for s in (
                self.cadence_rt.interval_s() or self.declared_rt_s,
                self.cadence_min.interval_s() or self.declared_min_s,
            )
            if s
        ]
        if not known:
            return q.offline_timeout
        return max(q.offline_timeout, min(known) * q.offline_missed_uploads)

    def _bounded(self, event_time: datetime, received_at: datetime, now: datetime | None
                 ) -> tuple[datetime, bool]:
        """Where a frame may move the stack's clock.

        At most `clock_lead_tolerance` beyond where the clock stands (the receipt time, or the
        stack's own clock when a replay runs ahead of receipt): one future-dated frame cannot
        close hours early. A jump further ahead is held back until the next frame confirms
        the new timeline (a logger back from an outage in an accelerated replay); a frame
        back on the old timeline shows it was a glitch. Returns the clock time and whether it
        confirms a jump held back since the stack's first frame (a clock running ahead of
        receipt, not a silence).
        """
        base = received_at if now is None else max(received_at, now)
        limit = base + self.cfg.clock_lead_tolerance
        if event_time <= limit:
            self.pending_jump = None
            return event_time, False
        if self.pending_jump is not None and event_time >= self.pending_jump:
            self.pending_jump = None
            return event_time, self.pending_from_start
        self.pending_jump = event_time
        self.pending_from_start = now is None
        return limit, False

    def event_time_of(self, reading: Reading) -> datetime | None:
        """When the reading's data ends (the instant it proves the logger had reached)."""
        stamp = self._stamp(reading)
        if stamp is None:
            return None
        label = reading.interval_label or "start"
        length = self._record_length(reading)
        return stamp if length is None else record_span(stamp, length, label)[1]

    def _record_length(self, reading: Reading) -> timedelta | None:
        """The interval an aggregate record covers (None for real-time data and events)."""
        if reading.kind is ReadingKind.MINUTE:
            return self._length(reading)
        if reading.kind is ReadingKind.HOUR:
            return HOUR
        if reading.kind is ReadingKind.DAY:
            return DAY
        return None

    def _stamp(self, reading: Reading) -> datetime | None:
        """The reading's DataTime, snapped onto its interval grid (`snap_stamp`)."""
        length = self._record_length(reading)
        if reading.data_time is None or length is None:
            return reading.data_time
        return snap_stamp(reading.data_time, length)

    def _length(self, reading: Reading) -> timedelta:
        if reading.interval_s:
            return timedelta(seconds=reading.interval_s)
        return self.min_interval()

    def _note_cadence(self, reading: Reading) -> None:
        """Registered and observed intervals, before anything is judged on them."""
        if reading.data_time is None:
            return
        if reading.kind is ReadingKind.MINUTE:
            self.declared_min_s = reading.interval_s
            if not reading.resent:
                self.cadence_min.observe(reading.data_time)
        elif reading.kind is ReadingKind.REALTIME:
            self.declared_rt_s = reading.interval_s
            if not reading.resent:
                self.cadence_rt.observe(reading.data_time)

    # ------------------------------------------------------------------ alerts

    def _offline_gap(self, clock: datetime) -> Outputs:
        """Raise `offline` at exactly last frame + timeout if the clock has passed it."""
        out = Outputs()
        last = self.quality.offline.last_frame_at
        if last is None:
            return out
        timeout = self.offline_timeout()
        due = last + timeout
        if clock >= due:
            self._observe_all(self.quality.check(due, self.cfg.quality, timeout), out)
        return out

    def _observe(self, cond: Condition, out: Outputs) -> None:
        out.alerts.extend(self.book.observe(cond))

    def _observe_all(self, conds: list[Condition], out: Outputs) -> None:
        for cond in conds:
            self._observe(cond, out)

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """JSON-safe snapshot for the Faust table (the archive is stored on its own)."""
        return {
            "v": 2,
            "stack_id": self.stack_id,
            "rt": self.rt.to_state(),
            "hours": self.hours.to_state(),
            "days": self.days.to_state(),
            "quality": self.quality.to_state(),
            "book": self.book.to_state(),
            "rolling": {k: r.to_state() for k, r in self.rolling.items()},
            "last_logger_minute": iso(self.last_logger_minute)
            if self.last_logger_minute
            else None,
            "clock_event": iso(self.clock_event) if self.clock_event else None,
            "clock_arrival": self.clock_arrival.isoformat() if self.clock_arrival else None,
            "pending_jump": iso(self.pending_jump) if self.pending_jump else None,
            "pending_from_start": self.pending_from_start,
            "cadence_min": self.cadence_min.to_state(),
            "cadence_rt": self.cadence_rt.to_state(),
            "declared_min_s": self.declared_min_s,
            "declared_rt_s": self.declared_rt_s,
            "flue_gas": self.flue_gas,
            "registry_conflict": self.registry_conflict,
            "encryption_problem": self.encryption_problem,
            # Copies: the snapshot is stored as is and must not change with later processing.
            "mismatch": dict(self.mismatch),
            "archived": dict(self.archived),
            "totals": self.totals.to_state(),
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        cfg: ProcessorConfig | None = None,
        archive: WindowArchive | None = None,
    ) -> Self:
        """Rebuild from `to_state()` output."""
        proc = cls(str(state["stack_id"]), cfg, archive)
        proc.rt = EventTimeWindows.from_state(state["rt"])
        proc.hours = EventTimeWindows.from_state(state["hours"])
        proc.days = EventTimeWindows.from_state(state["days"])
        proc.quality = StackQuality.from_state(state["quality"])
        proc.book = AlertBook.from_state(state["book"], proc.cfg.alerts)
        proc.rolling = {k: RollingMean.from_state(v) for k, v in state["rolling"].items()}
        for attr in ("last_logger_minute", "clock_event", "clock_arrival", "pending_jump"):
            value = state.get(attr)
            setattr(proc, attr, from_iso(value) if value else None)
        proc.cadence_min = Cadence.from_state(state.get("cadence_min", {}))
        proc.cadence_rt = Cadence.from_state(state.get("cadence_rt", {}), RTD_RESOLUTION_S)
        proc.declared_min_s = state.get("declared_min_s")
        proc.declared_rt_s = state.get("declared_rt_s")
        proc.flue_gas = bool(state.get("flue_gas", True))
        proc.registry_conflict = bool(state.get("registry_conflict", False))
        proc.encryption_problem = bool(state.get("encryption_problem", False))
        proc.pending_from_start = bool(state.get("pending_from_start", False))
        proc.mismatch = dict(state.get("mismatch", {}))
        proc.archived = dict(state.get("archived", {}))
        proc.totals = EmissionTotals.from_state(state.get("totals"))
        return proc
