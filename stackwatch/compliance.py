"""Compliance judgement of hourly means against stack limits, conformity rates, provisional means.

Pure functions and small state, no I/O. The rules (DOMAIN.md §3.2, LIMITS.md N3/N4):

* Limits are **hourly-average** limits. Each *valid* hourly mean — converted to the reference O2
  where the limit row defines one, measured concentration where it does not (LIMITS.md N3) — is
  compared with the limit. Invalid hours (HJ 212-2017 App. D: fewer than 45 valid minutes, or
  flags F/M/D/C/T/B) are never exceedances; they are reported as data quality.
* Two checks (LIMITS.md N4): the ultra-low (超低排放) value is a policy/performance target, the
  enforceable standard or permit value is the legal "超标" test. Above ultra-low → ``alarm``;
  above the standard/permit value as well → ``critical``; above the warning level (a fraction of
  the strictest limit, default 80 %, a platform convention per DOMAIN.md §3.3 — configuration,
  not a standard) → ``warning``.
* Ultra-low status: ≥ 95 % of valid production hours in each month within the ultra-low limit
  (环大气〔2019〕35号 steel; 2024 cement and coking opinions: "每月生产时间至少95%以上时段").
* Comparisons use decimal semantics (``Fraction(repr(x))``) so that "80 % of 35" is exactly 28
  and a mean of 28.0 is not above it — the way an inspector reads the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from fractions import Fraction
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: China Standard Time. Calendar months/days of the 95 % rule are the plant's local calendar.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

#: Default warning fraction of the limit (DOMAIN.md §3.3: "my proposal, not a standard").
DEFAULT_WARNING_FRACTION = 0.8

#: Required monthly share of compliant hours for ultra-low status (LIMITS.md N4).
ULTRA_LOW_REQUIRED_RATE = 0.95

#: Minimum valid minutes for a valid hourly mean (HJ 212-2017 App. D, citing HJ/T 75-2007).
MIN_VALID_MINUTES_PER_HOUR = 45

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
    """What a limit row is (LIMITS.md N2/N4)."""

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
    """Which mean a limit is compared with (LIMITS.md N3)."""

    CONVERTED = "converted"
    MEASURED = "measured"


def exact(x: float) -> Fraction:
    """The decimal value a float was written as (``28.1`` → 281/10), for exact comparisons."""
    return Fraction(repr(float(x)))


class Limit(BaseModel):
    """One applicable limit, adapted from the limit catalogue's row.

    ``ref_o2`` None means the row is judged on the measured concentration (no O2 correction,
    no dilution allowed; LIMITS.md N3). ``unconfirmed`` carries the catalogue's status so
    reports can say the verdict rests on an unconfirmed value.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    limit_mg_m3: float = Field(gt=0)
    warning_fraction: float = Field(default=DEFAULT_WARNING_FRACTION, gt=0, le=1)
    kind: LimitKind
    program: str | None = None
    ref_o2: float | None = Field(default=None, ge=0, lt=21)
    row_id: str | None = None
    unconfirmed: bool = False

    @property
    def warning_level(self) -> Fraction:
        """Exact warning threshold: ``limit × warning_fraction``."""
        return exact(self.limit_mg_m3) * exact(self.warning_fraction)


class HourValue(BaseModel):
    """One closed hour of one factor at one stack, as the averaging stage produced it.

    ``mean_converted`` is at ``ref_o2`` (HJ 212-2017 App. D eq. 28); ``start`` is the start of
    the hour (HJ 212 DataTime convention for 2061). ``production`` False marks hours outside
    production time (the stack stopped, 停运), which are not judged and which the 95 % rule
    does not count.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    stack_id: str = Field(min_length=1)
    factor: str = Field(min_length=1)
    start: AwareDatetime
    mean_converted: float | None = None
    mean_measured: float | None = None
    valid: bool
    valid_minutes: int = Field(ge=0, le=60)
    flag: str = "N"
    ref_o2: float | None = Field(default=None, ge=0, lt=21)
    o2_mean: float | None = None
    production: bool = True

    @property
    def end(self) -> datetime:
        """End of the hour (exclusive)."""
        return self.start + timedelta(hours=1)


class HourVerdict(BaseModel):
    """The judgement of one hour, with everything an inspector needs to check it."""

    model_config = ConfigDict(frozen=True)

    stack_id: str
    factor: str
    start: AwareDatetime
    end: AwareDatetime
    status: HourStatus
    severity: Severity | None = None
    value: float | None = Field(default=None, description="The mean compared with `limit`.")
    basis: Basis | None = None
    limit: float | None = Field(default=None, description="The limit crossed (or the strictest).")
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


def compared_value(hour: HourValue, limit: Limit) -> tuple[float | None, Basis, str | None]:
    """The mean to compare with ``limit``, its basis, and an error reason if it cannot be had.

    A limit with a reference O2 needs the converted mean *at that same reference*; a limit
    without one is judged on the measured concentration (LIMITS.md N3).
    """
    if limit.ref_o2 is None:
        if hour.mean_measured is None:
            return None, Basis.MEASURED, "no measured mean for a measured-basis limit"
        return hour.mean_measured, Basis.MEASURED, None
    if hour.mean_converted is None:
        return None, Basis.CONVERTED, f"no mean converted to {limit.ref_o2:g} % O2"
    if hour.ref_o2 is None or exact(hour.ref_o2) != exact(limit.ref_o2):
        at = "unknown" if hour.ref_o2 is None else f"{hour.ref_o2:g} %"
        return (
            None,
            Basis.CONVERTED,
            f"converted mean is at {at} O2 but limit {limit.row_id or ''} is at {limit.ref_o2:g} %",
        )
    return hour.mean_converted, Basis.CONVERTED, None


def _strictest(limits: Sequence[Limit], kind: LimitKind) -> Limit | None:
    rows = [lim for lim in limits if lim.kind is kind]
    return min(rows, key=lambda lim: exact(lim.limit_mg_m3)) if rows else None


def _hour_evidence(hour: HourValue) -> dict[str, Evidence]:
    return {
        "mean_converted": hour.mean_converted,
        "mean_measured": hour.mean_measured,
        "valid_minutes": hour.valid_minutes,
        "flag": hour.flag,
        "ref_o2": hour.ref_o2,
        "o2_mean": hour.o2_mean,
    }


def judge_hour(hour: HourValue, limits: Sequence[Limit]) -> HourVerdict:
    """Judge one hourly mean against the limits that apply to its stack and factor.

    Several rows of one kind (e.g. two programs) → the strictest of that kind applies. Fugitive
    / workshop rows are never compared with stack CEMS values (LIMITS.md N2).
    """
    base: dict[str, Any] = {
        "stack_id": hour.stack_id,
        "factor": hour.factor,
        "start": hour.start,
        "end": hour.end,
        "evidence": _hour_evidence(hour),
    }
    if not hour.production:
        return HourVerdict(
            status=HourStatus.STOPPED,
            reason="the stack was stopped (停运) for this hour: not judged, and not counted "
            "as missing data (HJ 75)",
            **base,
        )
    stack_limits = [lim for lim in limits if lim.kind is not LimitKind.FUGITIVE]
    if not stack_limits:
        reason = "no stack limit applies" + (
            " (fugitive/workshop limits are not compared with stack CEMS values)" if limits else ""
        )
        return HourVerdict(status=HourStatus.UNJUDGED, reason=reason, **base)
    ultra = _strictest(stack_limits, LimitKind.ULTRA_LOW)
    standard = _strictest(stack_limits, LimitKind.STANDARD)
    base["ultra_low_limit"] = ultra.limit_mg_m3 if ultra else None
    base["standard_limit"] = standard.limit_mg_m3 if standard else None
    if not hour.valid:
        return HourVerdict(
            status=HourStatus.INVALID,
            reason=(
                f"invalid hour (flag {hour.flag}, {hour.valid_minutes} valid minutes; "
                f"HJ 212-2017 App. D needs {MIN_VALID_MINUTES_PER_HOUR}): "
                "not judged, reported as data quality"
            ),
            **base,
        )
    primary = ultra or standard
    assert primary is not None  # stack_limits is non-empty and holds only these two kinds
    values: dict[LimitKind, float] = {}
    for lim in (ultra, standard):
        if lim is None:
            continue
        value, basis, error = compared_value(hour, lim)
        if error is not None or value is None:
            return HourVerdict(
                status=HourStatus.UNJUDGED, reason=error or "no value", basis=basis, **base
            )
        values[lim.kind] = value

    def verdict(status: HourStatus, sev: Severity | None, lim: Limit, reason: str) -> HourVerdict:
        return HourVerdict(
            status=status,
            severity=sev,
            value=values[lim.kind],
            basis=Basis.MEASURED if lim.ref_o2 is None else Basis.CONVERTED,
            limit=lim.limit_mg_m3,
            limit_kind=lim.kind,
            limit_row=lim.row_id,
            program=lim.program,
            ref_o2=lim.ref_o2,
            warning_level=float(lim.warning_level),
            unconfirmed_limit=lim.unconfirmed,
            reason=reason,
            **base,
        )

    if standard is not None and exact(values[LimitKind.STANDARD]) > exact(standard.limit_mg_m3):
        return verdict(
            HourStatus.EXCEEDANCE,
            Severity.CRITICAL,
            standard,
            f"{values[LimitKind.STANDARD]:g} > standard/permit limit {standard.limit_mg_m3:g}",
        )
    if ultra is not None and exact(values[LimitKind.ULTRA_LOW]) > exact(ultra.limit_mg_m3):
        return verdict(
            HourStatus.EXCEEDANCE,
            Severity.ALARM,
            ultra,
            f"{values[LimitKind.ULTRA_LOW]:g} > ultra-low limit {ultra.limit_mg_m3:g}",
        )
    v = values[primary.kind]
    if exact(v) > primary.warning_level:
        return verdict(
            HourStatus.WARNING,
            Severity.WARNING,
            primary,
            f"{v:g} > warning level {float(primary.warning_level):g} "
            f"({primary.warning_fraction:.0%} of {primary.limit_mg_m3:g})",
        )
    return verdict(HourStatus.COMPLIANT, None, primary, f"{v:g} within {primary.limit_mg_m3:g}")


# ----------------------------------------------------------------------------- conformity


class Conformity(BaseModel):
    """Share of valid production hours within a limit over a period (LIMITS.md N4)."""

    model_config = ConfigDict(frozen=True)

    period: str
    valid_hours: int
    compliant_hours: int
    rate: float | None = Field(description="compliant / valid; None when no valid hour.")
    meets_95: bool = Field(description="rate ≥ required_rate (exact decimal comparison).")
    required_rate: float
    excluded_hours: int = Field(description="Invalid or non-production hours (not counted).")
    unjudged_hours: int = Field(description="Valid hours without a comparable mean.")


def conformity(
    hours: Iterable[HourValue],
    limit: Limit,
    *,
    required_rate: float = ULTRA_LOW_REQUIRED_RATE,
    period: str = "",
) -> Conformity:
    """Conformity of ``hours`` with ``limit``: compliant (≤ limit) / valid production hours.

    Duplicate hours (same stack, factor, start) count once, the last one winning, so replaying
    an hour cannot inflate the rate.
    """
    unique: dict[tuple[str, str, datetime], HourValue] = {}
    for hour in hours:
        unique[(hour.stack_id, hour.factor, hour.start)] = hour
    valid = compliant = excluded = unjudged = 0
    for hour in unique.values():
        if not hour.valid or not hour.production:
            excluded += 1
            continue
        value, _, error = compared_value(hour, limit)
        if error is not None or value is None:
            unjudged += 1
            continue
        valid += 1
        if exact(value) <= exact(limit.limit_mg_m3):
            compliant += 1
    rate = compliant / valid if valid else None
    meets = valid > 0 and Fraction(compliant, valid) >= exact(required_rate)
    return Conformity(
        period=period,
        valid_hours=valid,
        compliant_hours=compliant,
        rate=rate,
        meets_95=meets,
        required_rate=required_rate,
        excluded_hours=excluded,
        unjudged_hours=unjudged,
    )


def _grouped(
    hours: Iterable[HourValue], limit: Limit, fmt: str, tz: timezone, required_rate: float
) -> dict[str, Conformity]:
    groups: dict[str, list[HourValue]] = {}
    for hour in hours:
        groups.setdefault(hour.start.astimezone(tz).strftime(fmt), []).append(hour)
    return {
        key: conformity(group, limit, required_rate=required_rate, period=key)
        for key, group in sorted(groups.items())
    }


def monthly_conformity(
    hours: Iterable[HourValue],
    limit: Limit,
    *,
    tz: timezone = CHINA_TZ,
    required_rate: float = ULTRA_LOW_REQUIRED_RATE,
) -> dict[str, Conformity]:
    """Ultra-low conformity per local calendar month (``"YYYY-MM"``), ≥ 95 % required."""
    return _grouped(hours, limit, "%Y-%m", tz, required_rate)


def daily_conformity(
    hours: Iterable[HourValue],
    limit: Limit,
    *,
    tz: timezone = CHINA_TZ,
    required_rate: float = ULTRA_LOW_REQUIRED_RATE,
) -> dict[str, Conformity]:
    """The same statistic per local calendar day (``"YYYY-MM-DD"``), for trend reports."""
    return _grouped(hours, limit, "%Y-%m-%d", tz, required_rate)


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

    An early warning before the hour closes (DOMAIN.md §3.3 proposal): the window is
    ``(newest − window, newest]`` over explicit minute timestamps, only valid minutes count, and
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
