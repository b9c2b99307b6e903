"""Compliance judgement of hourly and daily means against stack limits, provisional means.

Pure functions and small state, no I/O. The rules (docs/limits.md#ultra-low-and-legal-checks,
docs/limits.md#reference-o2-by-source):

* Limits are **hourly-average** limits. Each *valid* hourly mean — converted to the reference O2
  where the limit row defines one, measured concentration where it does not (HJ 212-2017
  App. D eq. 28; docs/limits.md#reference-o2-by-source) — is
  compared with the limit. Invalid hours (HJ 212-2017 App. D: fewer than 45 valid minutes, or
  flags F/M/D/C/T/B) are never exceedances; they are reported as data quality.
* Two checks (docs/limits.md#ultra-low-and-legal-checks): the ultra-low (超低排放) value is a
  policy/performance target, the enforceable standard or permit value is the legal "超标"
  test. Above ultra-low → ``alarm``; above the standard/permit value as well → ``critical``;
  above the warning level (a fraction of the strictest limit, default 80 %, a platform
  convention (docs/alarms.md#default-thresholds) — configuration, not a standard) →
  ``warning``.
* Ultra-low status: ≥ 95 % of valid production hours in each month within the ultra-low limit
  (环大气〔2019〕35号 steel; 2024 cement and coking opinions: "每月生产时间至少95%以上时段").
  Computed where the verdicts are stored: the database view ``conformity_monthly`` (migration
  0006) over ``limit_verdicts``, shown on the Compliance dashboard; reports use
  ``stackwatch.report_stats``.
* Comparisons use decimal semantics (``Fraction(repr(x))``) so that "80 % of 35" is exactly 28
  and a mean of 28.0 is not above it — the way an inspector reads the numbers.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: Default warning fraction of the limit: a proposal, not a standard
#: (docs/alarms.md#default-thresholds).
DEFAULT_WARNING_FRACTION = 0.8

#: Required monthly share of compliant hours for ultra-low status
#: (docs/limits.md#ultra-low-and-legal-checks).
ULTRA_LOW_REQUIRED_RATE = 0.95

#: Minimum valid minutes for a valid hourly mean (HJ 212-2017 App. D, citing HJ/T 75-2007).
MIN_VALID_MINUTES_PER_HOUR = 45

#: Minimum valid hours for a valid daily mean (HJ 212-2017 App. D, citing HJ/T 75-2007).
MIN_VALID_HOURS_PER_DAY = 20

Evidence = str | int | float | bool | None


class Severity(StrEnum):
    """Alert severities, ordered warning < alarm < critical."""

    WARNING = "warning"
    ALARM = "alarm"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for escalation (a higher rank is more severe)."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.WARNING: 1, Severity.ALARM: 2, Severity.CRITICAL: 3}


class LimitKind(StrEnum):
    """What a limit row is (docs/limits.md#kinds-of-limit)."""

    ULTRA_LOW = "ultra_low"
    STANDARD = "standard"
    FUGITIVE = "fugitive"


class HourStatus(StrEnum):
    """Outcome of judging one hourly mean."""

    COMPLIANT = "compliant"
    WARNING = "warning"
    EXCEEDANCE = "exceedance"
    INVALID = "invalid"
    UNJUDGED = "unjudged"
    STOPPED = "stopped"


class Basis(StrEnum):
    """Which mean a limit is compared with (docs/limits.md#reference-o2-by-source)."""

    CONVERTED = "converted"
    MEASURED = "measured"


def exact(x: float) -> Fraction:
    """The decimal value a float was written as (``28.1`` → 281/10), for exact comparisons."""
    return Fraction(repr(float(x)))


class Limit(BaseModel):
    """One applicable limit, adapted from the limit catalogue's row.

    ``ref_o2`` None means the row is judged on the measured concentration (no O2 correction,
    no dilution allowed; docs/limits.md#reference-o2-by-source). ``unconfirmed`` carries the
    catalogue's status so reports can say the verdict rests on an unconfirmed value.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    limit_mg_m3: float = Field(gt=0)
    warning_fraction: float = Field(default=DEFAULT_WARNING_FRACTION, gt=0, le=1)
    kind: LimitKind
    program: str | None = None
    ref_o2: float | None = Field(default=None, ge=0, lt=21)
    row_id: str | None = None
    unconfirmed: bool = False
    averaging: Literal["hour", "day"] = "hour"
    o2_from_row: str | None = Field(
        default=None, description="Row the O2 basis was taken from (the row itself states none)."
    )

    @property
    def warning_level(self) -> Fraction:
        """Exact warning threshold: ``limit × warning_fraction``."""
        return exact(self.limit_mg_m3) * exact(self.warning_fraction)


class PeriodValue(BaseModel):
    """One closed period (hour or day) of one factor at one stack, as averaging produced it.

    ``mean_converted`` is at ``ref_o2`` (HJ 212-2017 App. D eq. 28); a limit at another
    reference O2 is judged on it rescaled (``compared_value``). ``production`` False marks a
    stopped stack (停运): not judged, and not counted by the 95 % rule or the capture rate.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    stack_id: str = Field(min_length=1)
    factor: str = Field(min_length=1)
    start: AwareDatetime
    mean_converted: float | None = None
    mean_measured: float | None = None
    valid: bool
    flag: str = "N"
    ref_o2: float | None = Field(default=None, ge=0, lt=21)
    o2_mean: float | None = None
    production: bool = True

    @property
    @abstractmethod
    def end(self) -> datetime:
        """End of the period (exclusive)."""

    @abstractmethod
    def invalid_reason(self) -> str:
        """Why the period is invalid, in the standard's terms."""


class HourValue(PeriodValue):
    """One closed hour (``start`` = start of the hour, the HJ 212 DataTime of a 2061)."""

    valid_minutes: int = Field(ge=0, le=60)

    @property
    def end(self) -> datetime:
        """End of the hour (exclusive)."""
        return self.start + timedelta(hours=1)

    def invalid_reason(self) -> str:
        """Why the hour is invalid (HJ 212-2017 App. D: 45 valid minutes)."""
        return (
            f"invalid hour (flag {self.flag}, {self.valid_minutes} valid minutes; "
            f"HJ 212-2017 App. D needs {MIN_VALID_MINUTES_PER_HOUR}): "
            "not judged, reported as data quality"
        )


class DayValue(PeriodValue):
    """One closed local day (00:00–24:00 Beijing time) from its hourly means."""

    valid_hours: int = Field(ge=0, le=24)

    @property
    def end(self) -> datetime:
        """End of the day (exclusive)."""
        return self.start + timedelta(days=1)

    def invalid_reason(self) -> str:
        """Why the day is invalid (HJ 212-2017 App. D: 20 valid hours)."""
        return (
            f"invalid day ({self.valid_hours} valid hours; HJ 212-2017 App. D needs "
            f"{MIN_VALID_HOURS_PER_DAY}): not judged, its emission total not valid"
        )


class Level(StrEnum):
    """Where a value stands against one limit, in the terms inspectors use."""

    WITHIN = "within"
    WARNING = "warning"
    ABOVE_ULTRA_LOW = "above_ultra_low"
    ABOVE_STANDARD = "above_standard"
    ABOVE_FUGITIVE = "above_fugitive"


#: (中文, English) of each level. 超标 is reserved for the enforceable standard or permit
#: value; above an ultra-low target is 超过超低排放限值 (docs/limits.md#kinds-of-limit); 预警 is
#: below the limit.
LEVEL_TERMS: dict[Level, tuple[str, str]] = {
    Level.WITHIN: ("达标", "within the limit"),
    Level.WARNING: ("预警", "warning: near the limit"),
    Level.ABOVE_ULTRA_LOW: ("超过超低排放限值", "above the ultra-low emission limit"),
    Level.ABOVE_STANDARD: ("超标", "above the emission standard (legal limit)"),
    Level.ABOVE_FUGITIVE: ("超过车间扬尘控制值", "above the workshop dust value"),
}

_EXCEEDED: dict[LimitKind, tuple[Level, Severity]] = {
    LimitKind.STANDARD: (Level.ABOVE_STANDARD, Severity.CRITICAL),
    LimitKind.ULTRA_LOW: (Level.ABOVE_ULTRA_LOW, Severity.ALARM),
    LimitKind.FUGITIVE: (Level.ABOVE_FUGITIVE, Severity.ALARM),
}


class LimitVerdict(BaseModel):
    """The judgement of one period against one limit (one program, kind and O2 basis)."""

    model_config = ConfigDict(frozen=True)

    program: str | None
    kind: LimitKind
    row_id: str | None
    averaging: Literal["hour", "day"]
    status: HourStatus
    level: Level | None = None
    severity: Severity | None = None
    value: float | None = None
    basis: Basis | None = None
    ref_o2: float | None = None
    o2_from_row: str | None = None
    limit: float
    warning_level: float
    unconfirmed: bool = False
    reason: str

    @property
    def term_zh(self) -> str | None:
        """The Chinese term of the level (超标, 超过超低排放限值, 预警, …)."""
        return LEVEL_TERMS[self.level][0] if self.level else None


class PeriodVerdict(BaseModel):
    """The judgement of one hour or day: every limit's verdict and the one that decides.

    ``verdicts`` holds one entry per applicable limit (legal standard, each ultra-low program,
    the fugitive value), each on its own O2 basis. The top-level fields repeat the deciding
    verdict: the most severe, else the governing target (ultra-low or fugitive before the
    standard). That is the one an alert carries.
    """

    model_config = ConfigDict(frozen=True)

    stack_id: str
    factor: str
    period: Literal["hour", "day"] = "hour"
    start: AwareDatetime
    end: AwareDatetime
    status: HourStatus
    severity: Severity | None = None
    level: Level | None = None
    value: float | None = Field(default=None, description="The mean compared with `limit`.")
    basis: Basis | None = None
    limit: float | None = Field(default=None, description="The deciding limit.")
    limit_kind: LimitKind | None = None
    limit_row: str | None = None
    program: str | None = None
    ref_o2: float | None = None
    warning_level: float | None = None
    ultra_low_limit: float | None = None
    standard_limit: float | None = None
    unconfirmed_limit: bool = False
    reason: str
    evidence: dict[str, Evidence] = Field(default_factory=dict)
    verdicts: tuple[LimitVerdict, ...] = ()


def compared_value(value: PeriodValue, limit: Limit) -> tuple[float | None, Basis, str | None]:
    """The mean to compare with ``limit``, its basis, and an error reason if it cannot be had.

    A limit without a reference O2 is judged on the measured concentration
    (docs/limits.md#reference-o2-by-source).
    A limit with one is judged on the mean converted to *its* reference: eq. 28 is linear in
    (21 − O2_ref), so a mean at reference r1 is at r2 after × (21 − r2)/(21 − r1), minute by
    minute and so for the mean (exact decimal arithmetic).
    """
    if limit.ref_o2 is None:
        if value.mean_measured is None:
            return None, Basis.MEASURED, "no measured mean for a measured-basis limit"
        return value.mean_measured, Basis.MEASURED, None
    if value.mean_converted is None or value.ref_o2 is None:
        return None, Basis.CONVERTED, f"no mean converted to a reference O2 for {limit.ref_o2:g} %"
    if exact(value.ref_o2) == exact(limit.ref_o2):
        return value.mean_converted, Basis.CONVERTED, None
    scaled = (
        exact(value.mean_converted)
        * (21 - exact(limit.ref_o2))
        / (21 - exact(value.ref_o2))
    )
    return float(scaled), Basis.CONVERTED, None


def _strictest(limits: Sequence[Limit], kind: LimitKind) -> Limit | None:
    rows = [lim for lim in limits if lim.kind is kind]
    return min(rows, key=lambda lim: exact(lim.limit_mg_m3)) if rows else None


def _evidence(value: PeriodValue) -> dict[str, Evidence]:
    out: dict[str, Evidence] = {
        "mean_converted": value.mean_converted,
        "mean_measured": value.mean_measured,
        "flag": value.flag,
        "ref_o2": value.ref_o2,
        "o2_mean": value.o2_mean,
    }
    if isinstance(value, HourValue):
        out["valid_minutes"] = value.valid_minutes
    elif isinstance(value, DayValue):
        out["valid_hours"] = value.valid_hours
    return out


def judge_limit(value: PeriodValue, limit: Limit) -> LimitVerdict:
    """One valid period against one limit, on the limit's own O2 basis.

    Above the limit: 超标 (standard, critical), 超过超低排放限值 (ultra-low, alarm), above the
    workshop value (fugitive, alarm). Above the warning level but not the limit: 预警.
    """
    compared, basis, error = compared_value(value, limit)
    common: dict[str, Any] = {
        "program": limit.program,
        "kind": limit.kind,
        "row_id": limit.row_id,
        "averaging": limit.averaging,
        "basis": basis,
        "ref_o2": limit.ref_o2,
        "o2_from_row": limit.o2_from_row,
        "limit": limit.limit_mg_m3,
        "warning_level": float(limit.warning_level),
        "unconfirmed": limit.unconfirmed,
    }
    if error is not None or compared is None:
        return LimitVerdict(status=HourStatus.UNJUDGED, reason=error or "no value", **common)
    on = "measured" if limit.ref_o2 is None else f"at {limit.ref_o2:g} % O2"
    if exact(compared) > exact(limit.limit_mg_m3):
        level, severity = _EXCEEDED[limit.kind]
        return LimitVerdict(
            status=HourStatus.EXCEEDANCE,
            level=level,
            severity=severity,
            value=compared,
            reason=f"{compared:g} ({on}) > {limit.kind.value} limit {limit.limit_mg_m3:g}: "
            f"{LEVEL_TERMS[level][0]}",
            **common,
        )
    if exact(compared) > limit.warning_level:
        return LimitVerdict(
            status=HourStatus.WARNING,
            level=Level.WARNING,
            severity=Severity.WARNING,
            value=compared,
            reason=f"{compared:g} ({on}) > warning level {float(limit.warning_level):g} "
            f"({limit.warning_fraction:.0%} of {limit.limit_mg_m3:g}): 预警",
            **common,
        )
    return LimitVerdict(
        status=HourStatus.COMPLIANT,
        level=Level.WITHIN,
        value=compared,
        reason=f"{compared:g} ({on}) within {limit.limit_mg_m3:g}",
        **common,
    )


_GOVERNING = {LimitKind.ULTRA_LOW: 2, LimitKind.FUGITIVE: 2, LimitKind.STANDARD: 1}
_STATUS_RANK = {HourStatus.EXCEEDANCE: 3, HourStatus.WARNING: 2, HourStatus.COMPLIANT: 1}


def _deciding(verdicts: Sequence[LimitVerdict]) -> LimitVerdict:
    """The most severe verdict; among equals the governing target, then the largest ratio."""

    def rank(v: LimitVerdict) -> tuple[int, int, int, Fraction]:
        ratio = exact(v.value) / exact(v.limit) if v.value is not None else Fraction(0)
        severity = v.severity.rank if v.severity else 0
        return severity, _STATUS_RANK.get(v.status, 0), _GOVERNING[v.kind], ratio

    return max(verdicts, key=rank)


def _period_limits(limits: Sequence[Limit], averaging: str) -> list[Limit]:
    """The limits judged on this period; at a point with stack limits the fugitive (area)
    rows are left out, so a workshop value is never compared with stack CEMS data (N2)."""
    rows = [lim for lim in limits if lim.averaging == averaging]
    stack = [lim for lim in rows if lim.kind is not LimitKind.FUGITIVE]
    return stack or rows


def _judge_period(value: PeriodValue, limits: Sequence[Limit], period: str) -> PeriodVerdict:
    base: dict[str, Any] = {
        "stack_id": value.stack_id,
        "factor": value.factor,
        "period": period,
        "start": value.start,
        "end": value.end,
        "evidence": _evidence(value),
    }
    rows = _period_limits(limits, period)
    if not rows:
        return PeriodVerdict(
            status=HourStatus.UNJUDGED, reason=f"no {period}ly limit applies", **base
        )
    ultra = _strictest(rows, LimitKind.ULTRA_LOW)
    standard = _strictest(rows, LimitKind.STANDARD)
    base["ultra_low_limit"] = ultra.limit_mg_m3 if ultra else None
    base["standard_limit"] = standard.limit_mg_m3 if standard else None

    def not_judged(status: HourStatus, reason: str) -> PeriodVerdict:
        verdicts = tuple(
            LimitVerdict(
                program=lim.program,
                kind=lim.kind,
                row_id=lim.row_id,
                averaging=lim.averaging,
                status=status,
                ref_o2=lim.ref_o2,
                o2_from_row=lim.o2_from_row,
                limit=lim.limit_mg_m3,
                warning_level=float(lim.warning_level),
                unconfirmed=lim.unconfirmed,
                reason=reason,
            )
            for lim in rows
        )
        return PeriodVerdict(status=status, reason=reason, verdicts=verdicts, **base)

    if not value.production:
        return not_judged(
            HourStatus.STOPPED,
            f"the stack was stopped (停运) for this {period}: not judged, and not counted "
            "as missing data (HJ 75)",
        )
    if not value.valid:
        return not_judged(HourStatus.INVALID, value.invalid_reason())
    verdicts = tuple(judge_limit(value, lim) for lim in rows)
    judged = [v for v in verdicts if v.status is not HourStatus.UNJUDGED]
    if not judged:
        first = verdicts[0]
        return PeriodVerdict(
            status=HourStatus.UNJUDGED,
            reason=first.reason,
            basis=first.basis,
            verdicts=verdicts,
            **base,
        )
    top = _deciding(judged)
    return PeriodVerdict(
        status=top.status,
        severity=top.severity,
        level=top.level,
        value=top.value,
        basis=top.basis,
        limit=top.limit,
        limit_kind=top.kind,
        limit_row=top.row_id,
        program=top.program,
        ref_o2=top.ref_o2,
        warning_level=top.warning_level,
        unconfirmed_limit=top.unconfirmed,
        reason=top.reason,
        verdicts=verdicts,
        **base,
    )


def judge_hour(hour: HourValue, limits: Sequence[Limit]) -> PeriodVerdict:
    """Judge one hourly mean against every hourly limit of its stack and factor.

    Each limit is judged on its own O2 basis and gives its own verdict (two programs at 6 %
    and 9 % O2 give two verdicts); the deciding one is the most severe. Invalid hours (fewer
    than 45 valid minutes) are never exceedances; stopped hours are not judged.
    """
    return _judge_period(hour, limits, "hour")


def judge_day(day: DayValue, limits: Sequence[Limit]) -> PeriodVerdict:
    """Judge one daily mean against the daily limits, where any exist (a day is valid with
    ≥ 20 valid hours)."""
    return _judge_period(day, limits, "day")


# ----------------------------------------------------------------------------- rolling mean


class RollingSnapshot(BaseModel):
    """The rolling mean after one minute was added."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime = Field(description="Newest minute in the window (window end, inclusive).")
    mean: float | None
    count: int = Field(description="Valid minutes covered by the window's valid records.")
    ready: bool = Field(description="count ≥ min_count: the mean may raise a provisional alarm.")


class RollingMean:
    """Mean of the valid minute values of the last ``window`` (default 60 min), by event time.

    An early warning before the hour closes (a proposal: docs/alarms.md#default-thresholds):
    the window is ``(newest − window, newest]`` over explicit minute timestamps, only valid minutes
    count, and
    the mean may alarm only once ``min_count`` valid minutes are in it (default 45, the hourly
    validity rule of HJ 212-2017 App. D). A record of a logger with a longer MinInterval covers
    `minutes` minutes (ten for 10-minute data); the mean is the plain mean of the records, as
    the hour's is. Re-adding a minute replaces it (idempotent); a minute older than the window
    is ignored.
    """

    def __init__(self, window: timedelta = timedelta(minutes=60), min_count: int = 45) -> None:
        if window <= timedelta(0):
            raise ValueError("rolling window must be positive")
        if min_count < 1:
            raise ValueError("min_count must be at least 1")
        self.window = window
        self.min_count = min_count
        self._values: dict[datetime, tuple[float, float]] = {}
        self._newest: datetime | None = None

    def add(
        self, ts: datetime, value: float | None, valid: bool, minutes: float = 1.0
    ) -> RollingSnapshot:
        """Record the minute at ``ts`` and return the mean over the window ending at the newest."""
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"minute timestamp {ts.isoformat()} has no timezone")
        if value is not None and not exact_finite(value):
            raise ValueError(f"minute value {value!r} is not a finite number")
        newest = ts if self._newest is None or ts > self._newest else self._newest
        if ts > newest - self.window:
            if valid and value is not None:
                self._values[ts] = (value, minutes)
            else:
                self._values.pop(ts, None)
        self._newest = newest
        return self._prune_and_snapshot()

    def snapshot(self) -> RollingSnapshot | None:
        """The current mean without adding a minute (None before the first minute)."""
        return None if self._newest is None else self._prune_and_snapshot()

    def _prune_and_snapshot(self) -> RollingSnapshot:
        assert self._newest is not None
        horizon = self._newest - self.window
        for old in [t for t in self._values if t <= horizon]:
            del self._values[old]
        n = len(self._values)
        mean = float(sum(exact(v) for v, _ in self._values.values()) / n) if n else None
        covered = min(sum(m for _, m in self._values.values()), self.window.total_seconds() / 60)
        count = int(covered)
        return RollingSnapshot(
            at=self._newest, mean=mean, count=count, ready=count >= self.min_count
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state (for a Faust table)."""
        return {
            "window_s": self.window.total_seconds(),
            "min_count": self.min_count,
            "newest": None if self._newest is None else self._newest.isoformat(),
            "values": [[t.isoformat(), v, m] for t, (v, m) in sorted(self._values.items())],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RollingMean:
        """Rebuild from :meth:`to_state` output; raises ValueError on a malformed state."""
        try:
            rm = cls(timedelta(seconds=float(state["window_s"])), int(state["min_count"]))
            newest = state["newest"]
            rm._newest = None if newest is None else datetime.fromisoformat(str(newest))
            rm._values = {
                datetime.fromisoformat(str(row[0])): (
                    float(row[1]),
                    float(row[2]) if len(row) > 2 else 1.0,
                )
                for row in state["values"]
            }
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed rolling-mean state: {exc}") from exc
        return rm


def exact_finite(x: float) -> bool:
    """True for a finite float (NaN/inf never enter a mean)."""
    return x == x and x not in (float("inf"), float("-inf"))
