"""HJ 75 / HJ 212-2017 averaging: instantaneous → minute → hour → day, with data flags.

Rules (HJ 212-2017 App. D.2, citing HJ/T 75-2007; App. C for the flags; docs/hj75-data.md):

* A constituent is *valid* if its data flag is in `FlagPolicy.valid_flags` (N, S) and it has a
  finite value; F/M/D/C/T/B (and any unknown flag) are invalid (HJ 212-2017 Table 8). A
  constituent that is itself an aggregate carries its own validity (`Sample.valid`).
* A minute mean needs ≥ 12 valid instantaneous values, an hour ≥ 45 valid *minutes*, a day
  ≥ 20 valid hours (parameters of `AveragingRules`). For an hour the caller passes the minutes
  covered by valid data (`coverage`), because a logger's minute record (CN 2051) stands for its
  whole MinInterval: six valid 10-minute records cover 60 minutes. Below the threshold the
  aggregate has no value, is invalid, and `reason` says why.
* Flue-gas flag rule (App. C): the aggregate is flagged N only if **more than** 75 % of its
  constituents were normal (N), otherwise D. The flag is recorded; it does not decide validity
  (only the 12/45/20 counts do), so calibration (C) minutes beside 45 valid ones never turn an
  exceeding hour into an invalid, unjudged one. The share is taken over the constituents
  *received* in the interval (a value never received is not a constituent).
* When constituents are invalid, `dominant_invalid_flag` names the most frequent invalid flag
  (e.g. C during a calibration hour) so downstream can suppress alerts during C/M/F.

Note on real-time data: n ≥ 12 presumes ≤ 5 s sampling. A logger uploading 2011 real-time
values every 30 s delivers only 2 per minute, so with the default rules minute means built
from real-time uploads are always invalid; use the logger's own minute data (2051) or derive
per-source thresholds with `scaled_rules` (a project choice, not the standard's).

Interval boundaries are in China Standard Time (UTC+08:00, no DST): a day runs 00:00–24:00
local, i.e. 16:00–16:00 UTC. `start` of an aggregate is its interval start.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from stackwatch.beijing_time import CST
from stackwatch.conversions import ConversionError, emission_rate_kg_h

_DAY = timedelta(days=1)


class Period(StrEnum):
    """Averaging periods of HJ 212 (2051 minute, 2061 hour, 2031 day)."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


PERIOD_LENGTH: dict[Period, timedelta] = {
    Period.MINUTE: timedelta(minutes=1),
    Period.HOUR: timedelta(hours=1),
    Period.DAY: _DAY,
}

_CONSTITUENT_NAME: dict[Period, str] = {
    Period.MINUTE: "instantaneous values",
    Period.HOUR: "minute values",
    Period.DAY: "hourly values",
}


def period_length(period: Period | timedelta) -> timedelta:
    """Length of a period; a timedelta must divide a day evenly into whole seconds."""
    length = PERIOD_LENGTH[period] if isinstance(period, Period) else period
    if length <= timedelta(0) or length.microseconds or _DAY % length:
        raise ValueError(f"period {length} must be > 0 whole seconds and divide 24 h evenly")
    return length


def interval_start(ts: datetime, period: Period | timedelta, tz: tzinfo = CST) -> datetime:
    """Start of the interval containing `ts`, aligned to local midnight in `tz` (+08:00).

    `tz` must be a fixed-offset zone (China has no DST). The result is expressed in `tz`.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts.isoformat()}: pass an aware datetime")
    length = period_length(period)
    local = ts.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((local - midnight) // length) * length


def interval_end(start: datetime, period: Period | timedelta) -> datetime:
    """Exclusive end of the interval starting at `start`."""
    return start + period_length(period)


class FlagPolicy(BaseModel):
    """Data-flag table (HJ 212-2017 Table 8 / App. C); configurable per deployment."""

    model_config = ConfigDict(frozen=True)

    valid_flags: frozenset[str] = Field(
        default=frozenset({"N", "S"}), description="Flags whose values count (Table 8: N, S)."
    )
    normal_flags: frozenset[str] = Field(
        default=frozenset({"N"}), description="Flags that count as normal for the > 75 % rule."
    )
    normal_flag: str = Field(default="N", description="Flag of an aggregate passing the rule.")
    abnormal_flag: str = Field(
        default="D", description="Flag of an aggregate failing the > 75 % normal rule (App. C)."
    )
    normal_share: float = Field(
        default=0.75, ge=0.0, lt=1.0, description="Strictly more than this share must be normal."
    )
    invalid_priority: tuple[str, ...] = Field(
        default=("F", "M", "C", "D", "T", "B"),
        description="Tie-break order when two invalid flags are equally frequent.",
    )


DEFAULT_FLAGS = FlagPolicy()


class AveragingRules(BaseModel):
    """Validity thresholds of HJ 212-2017 App. D.2 (defaults are the standard's values)."""

    model_config = ConfigDict(frozen=True)

    min_samples_per_minute: int = Field(
        default=12, ge=1, description="Valid samples for a minute mean (App. D.2: n ≥ 12)."
    )
    min_minutes_per_hour: int = Field(
        default=45, ge=1, description="Valid minutes for an hourly mean (App. D.2: ≥ 45)."
    )
    min_hours_per_day: int = Field(
        default=20, ge=1, description="Valid hours for a daily mean (App. D.2: ≥ 20)."
    )
    flags: FlagPolicy = DEFAULT_FLAGS

    def required(self, period: Period) -> int:
        """Minimum valid constituents for an aggregate of `period`."""
        return {
            Period.MINUTE: self.min_samples_per_minute,
            Period.HOUR: self.min_minutes_per_hour,
            Period.DAY: self.min_hours_per_day,
        }[period]


DEFAULT_RULES = AveragingRules()

BASE_SAMPLE_INTERVAL_S = 5
"""Instantaneous sampling interval behind n ≥ 12 per minute (App. D.2: at most every 5 s)."""


def scaled_rules(
    *,
    rtd_interval_s: int | None = None,
    min_interval_min: int | None = None,
    base: AveragingRules = DEFAULT_RULES,
) -> AveragingRules:
    """Thresholds for sources that sample less often than the standard presumes.

    Project choice, NOT from the standard: the required count is scaled to the same share of
    the expected constituents, `ceil(required × base interval / actual interval)`. Real-time
    uploads every 30 s: ceil(12 × 5/30) = 2 values per minute; 10-minute data (MinInterval=10):
    ceil(45/10) = 5 of 6 per hour. Intervals at or below the standard's keep its values.
    """
    update: dict[str, int] = {}
    if rtd_interval_s is not None:
        if rtd_interval_s < 1:
            raise ValueError(f"rtd_interval_s must be ≥ 1, got {rtd_interval_s}")
        if rtd_interval_s > BASE_SAMPLE_INTERVAL_S:
            need = -(-base.min_samples_per_minute * BASE_SAMPLE_INTERVAL_S // rtd_interval_s)
            update["min_samples_per_minute"] = max(1, need)
    if min_interval_min is not None:
        if min_interval_min < 1:
            raise ValueError(f"min_interval_min must be ≥ 1, got {min_interval_min}")
        if min_interval_min > 1:
            update["min_minutes_per_hour"] = max(
                1, -(-base.min_minutes_per_hour // min_interval_min)
            )
    return base.model_copy(update=update)


class Sample(BaseModel):
    """One timestamped value with its data flag: an instantaneous reading (2011) or a
    logger-reported minute/hour value (2051/2061, `ts` = interval start)."""

    model_config = ConfigDict(frozen=True)

    ts: AwareDatetime
    value: float | None
    flag: str = "N"
    valid: bool | None = Field(
        default=None,
        description="Validity of an aggregated constituent (an hour inside a day); None = "
        "valid when its flag is a valid flag and it has a finite value.",
    )


class Aggregate(BaseModel):
    """A minute, hour or day aggregate with its validity and the counts behind it."""

    model_config = ConfigDict(frozen=True)

    period: Period
    start: AwareDatetime = Field(description="Interval start (+08:00) = HJ 212 DataTime.")
    end: AwareDatetime
    valid: bool
    flag: str
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    count_total: int = Field(description="Constituents received in the interval.")
    count_valid: int
    count_normal: int
    required_valid: int
    dominant_invalid_flag: str | None = None
    flag_counts: dict[str, int] = Field(default_factory=dict)
    count_outside: int = Field(default=0, description="Constituents ignored: outside interval.")
    coverage_minutes: float | None = Field(
        default=None, description="Hours: minutes covered by valid minute data."
    )
    reason: str | None = None

    def as_sample(self) -> Sample:
        """This aggregate as a constituent of the next level (invalid ⇒ no value)."""
        return Sample(
            ts=self.start,
            value=self.mean if self.valid else None,
            flag=self.flag,
            valid=self.valid,
        )


def _is_number(value: float | None) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mean(values: Sequence[float]) -> float:
    """Exact-sum mean; finite values whose sum overflows (absurd, near 1.8e308) are scaled first.

    `math.fsum` raises OverflowError instead of returning inf: one stack sending such values
    would otherwise fail every record until its window ends.
    """
    try:
        return math.fsum(values) / len(values)
    except OverflowError:
        n = len(values)
        return math.fsum(v / n for v in values)


def dominant_invalid_flag(flags: Iterable[str], policy: FlagPolicy = DEFAULT_FLAGS) -> str | None:
    """Most frequent invalid flag (ties by `policy.invalid_priority`), None if all are valid."""
    counts = Counter(f for f in flags if f not in policy.valid_flags)
    if not counts:
        return None
    order = {flag: i for i, flag in enumerate(policy.invalid_priority)}
    return min(counts, key=lambda f: (-counts[f], order.get(f, len(order)), f))


def aggregate_flag(flags: Sequence[str], policy: FlagPolicy = DEFAULT_FLAGS) -> str:
    """Flue-gas aggregate flag (HJ 212-2017 App. C): N if > 75 % of `flags` are normal, else D.

    An empty sequence has no normal constituents and yields D.
    """
    if not flags:
        return policy.abnormal_flag
    normal = sum(1 for f in flags if f in policy.normal_flags)
    return policy.normal_flag if normal > policy.normal_share * len(flags) else policy.abnormal_flag


def _counts_as_valid(sample: Sample, policy: FlagPolicy) -> bool:
    if sample.value is None or not _is_number(sample.value):
        return False
    return sample.valid if sample.valid is not None else sample.flag in policy.valid_flags


def aggregate(
    constituents: Sequence[Sample | Aggregate],
    start: datetime,
    period: Period,
    rules: AveragingRules = DEFAULT_RULES,
    *,
    coverage: float | None = None,
) -> Aggregate:
    """Aggregate one interval (App. D.2 arithmetic mean of the valid constituents).

    `start` must be an interval boundary in +08:00 (see `interval_start`). Constituents
    outside [start, end) are ignored and counted in `count_outside`; the caller deduplicates.
    `coverage` (hours only): minutes of the hour covered by valid constituents; when given it
    is what the ≥ 45 rule is applied to, instead of the number of valid constituents.
    """
    aligned = interval_start(start, period)
    if aligned != start:
        raise ValueError(f"start {start.isoformat()} is not a {period} boundary in +08:00")
    start = aligned
    end = interval_end(start, period)
    policy = rules.flags
    required = rules.required(period)

    samples = [c.as_sample() if isinstance(c, Aggregate) else c for c in constituents]
    inside = [s for s in samples if start <= s.ts < end]
    flags = [s.flag for s in inside]
    values = [float(s.value) for s in inside if _counts_as_valid(s, policy)]  # type: ignore[arg-type]
    count_normal = sum(1 for s in inside if s.flag in policy.normal_flags and _is_number(s.value))
    dominant = dominant_invalid_flag(
        (s.flag if not _counts_as_valid(s, policy) else policy.normal_flag for s in inside),
        policy,
    )
    what = _CONSTITUENT_NAME[period]
    if coverage is None:
        insufficient = len(values) < required
        shortfall = f"only {len(values)} valid {what} of {required} required"
    else:
        insufficient = not values or coverage < required
        shortfall = (
            f"only {coverage:g} minutes covered by valid minute data ({len(values)} records) "
            f"of {required} required"
        )
    cause = f"; most frequent invalid flag {dominant}" if dominant else ""
    result = Aggregate(
        period=period,
        start=start,
        end=end,
        valid=False,
        flag=dominant or policy.abnormal_flag,
        count_total=len(inside),
        count_valid=len(values),
        count_normal=count_normal,
        required_valid=required,
        dominant_invalid_flag=dominant,
        flag_counts=dict(Counter(flags)),
        count_outside=len(samples) - len(inside),
        coverage_minutes=coverage,
        reason=f"{shortfall} (HJ 212-2017 App. D.2){cause}",
    )
    if insufficient:
        return result
    # A normal flag without a usable value does not count as normal.
    rule_flags = [s.flag if _is_number(s.value) else "" for s in inside]
    flag = aggregate_flag(rule_flags, policy)
    reason = None
    if flag != policy.normal_flag:
        share = 100.0 * count_normal / len(inside)
        reason = (
            f"only {count_normal} of {len(inside)} {what} normal ({share:.1f} %, needs "
            f"> {100 * policy.normal_share:g} %): flagged {flag} (HJ 212-2017 App. C); "
            "valid by the 12/45/20 rule"
        )
    return result.model_copy(
        update={
            "valid": True,
            "flag": flag,
            "mean": _mean(values),
            "min": min(values),
            "max": max(values),
            "reason": reason,
        }
    )


class EmissionMass(BaseModel):
    """Pollutant mass emitted in one hour or day (App. D eq. 33/34), kg."""

    model_config = ConfigDict(frozen=True)

    period: Period
    start: AwareDatetime
    end: AwareDatetime
    kg: float | None = Field(description="Hour: G_h × 1 h. Day: sum of the valid hours.")
    valid: bool
    count_valid: int = 0
    count_total: int = 0
    reason: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EmissionMass:
        if self.valid and self.kg is None:
            raise ValueError("a valid emission mass needs kg")
        return self


def emission_hour(concentration: Aggregate, flow_std_dry_m3_h: Aggregate) -> EmissionMass:
    """Hourly emission mass from the valid hourly mean concentration (mg/m³, standard dry) and
    the valid hourly mean standard dry flow (m³/h): `G_h = C_h × Q_snh × 10⁻⁶` (eq. 33)."""
    period = Period.HOUR
    start = concentration.start
    end = interval_end(start, period)
    reasons: list[str] = []
    if concentration.period != period or flow_std_dry_m3_h.period != period:
        reasons.append("both aggregates must be hourly")
    if flow_std_dry_m3_h.start != start:
        reasons.append(
            f"flow hour {flow_std_dry_m3_h.start.isoformat()} ≠ concentration hour "
            f"{start.isoformat()}"
        )
    if not concentration.valid or concentration.mean is None:
        reasons.append(f"concentration hour invalid ({concentration.reason or 'no value'})")
    if not flow_std_dry_m3_h.valid or flow_std_dry_m3_h.mean is None:
        reasons.append(f"flow hour invalid ({flow_std_dry_m3_h.reason or 'no value'})")
    kg: float | None = None
    if not reasons:
        assert concentration.mean is not None and flow_std_dry_m3_h.mean is not None
        try:
            kg = emission_rate_kg_h(concentration.mean, flow_std_dry_m3_h.mean)
        except ConversionError as exc:  # means are finite by construction; belt and braces
            reasons.append(str(exc))
    return EmissionMass(
        period=period,
        start=start,
        end=end,
        kg=kg,
        valid=not reasons,
        count_valid=0 if reasons else 1,
        count_total=1,
        reason="; ".join(reasons) if reasons else None,
    )
