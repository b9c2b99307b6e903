"""Hourly and daily means of one stack from the contents of its windows (pure).

The per-stack processor decides *when* a period closes and what follows (judgement, alerts,
the day's constituents); this module computes *what* the period's values are
(HJ 212-2017 App. D.2; docs/hj75-data.md, docs/loggers.md):

* an hour from minute records: per factor the plain mean of the valid records, valid when
  they cover ≥ 45 minutes; a stopped record (停运) counts as flag F; the hour is stopped when
  stopped records cover more than the 15 minutes an hour can miss; mass from the hourly mean
  and the hourly flow for pollutants (eq. 33);
* an hour or a day from the logger's own record, when the platform has nothing else;
* a day from its hours (≥ 20 valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stackwatch.averaging import (
    Aggregate,
    AveragingRules,
    Period,
    Sample,
    aggregate,
    emission_hour,
)
from stackwatch.compliance import LimitVerdict
from stackwatch.intervals import covered_minutes
from stackwatch.models import AggregateRecord
from stackwatch.normalise import FLOW, POLLUTANTS
from stackwatch.stack_limits import StackLimits
from stackwatch.window_items import HourItem, LoggerRecordItem, MinuteItem, Source
from stackwatch.windows import ClosedWindow, WindowItem

STOP_FLAG = "F"
"""Flag a stopped stack's values carry in the averages (HJ 212-2017 Table 8: F 停运)."""

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class FactorPeriod:
    """One factor's period as computed: its aggregate, mean at the reference O2, and mass."""

    agg: Aggregate
    zs_mean: float | None = None
    mass_kg: float | None = None

    def as_hour_item(self, source: Source, stopped: bool) -> HourItem:
        """This hour as a constituent of its day."""
        agg = self.agg
        return HourItem(
            value=agg.mean if agg.valid else None,
            flag=agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag),
            valid=agg.valid,
            zs=self.zs_mean,
            kg=self.mass_kg,
            source=source,
            stopped=stopped,
        )


@dataclass(frozen=True)
class PeriodMeans:
    """Every factor of one closed period."""

    factors: dict[str, FactorPeriod]
    source: Source
    stopped: bool


def hour_from_minutes(
    closed: ClosedWindow, minutes: list[MinuteItem], rules: AveragingRules, default_length_s: int
) -> PeriodMeans:
    """The hour from its minute records (`default_length_s` for records of unknown length)."""
    spans = [m.span(default_length_s) for m in minutes]
    stopped_cov = covered_minutes(
        (s for s, m in zip(spans, minutes, strict=True) if m.stopped), closed.start, closed.end
    )
    flow = _flow_hour(closed, minutes, spans, rules)
    factors: dict[str, FactorPeriod] = {}
    for code in sorted({code for m in minutes for code in m.factors}):
        agg, zs_mean = _factor_hour(code, closed, minutes, spans, rules)
        mass = None
        if flow is not None and code in POLLUTANTS:
            em = emission_hour(agg, flow)
            mass = em.kg if em.valid else None
        factors[code] = FactorPeriod(agg, zs_mean, mass)
    return PeriodMeans(
        factors, "platform", stopped=stopped_cov > 60 - rules.min_minutes_per_hour
    )


def _factor_hour(
    code: str,
    closed: ClosedWindow,
    minutes: list[MinuteItem],
    spans: list[Span],
    rules: AveragingRules,
) -> tuple[Aggregate, float | None]:
    """One factor's hourly mean (and its mean at the reference O2), coverage-based."""
    valid_flags = rules.flags.valid_flags
    samples: list[Sample] = []
    zs_samples: list[Sample] = []
    valid_spans: list[Span] = []
    zs_spans: list[Span] = []
    for minute, span in zip(minutes, spans, strict=True):
        if code not in minute.factors:
            continue
        value, flag, zs = minute.factors[code]
        flag = STOP_FLAG if minute.stopped else flag
        samples.append(Sample(ts=minute.placement, value=value, flag=flag))
        zs_samples.append(Sample(ts=minute.placement, value=zs, flag=flag))
        if flag in valid_flags:
            if value is not None:
                valid_spans.append(span)
            if zs is not None:
                zs_spans.append(span)
    coverage = covered_minutes(valid_spans, closed.start, closed.end)
    agg = aggregate(samples, closed.start, Period.HOUR, rules, coverage=coverage)
    zs_cov = covered_minutes(zs_spans, closed.start, closed.end)
    zs_agg = aggregate(zs_samples, closed.start, Period.HOUR, rules, coverage=zs_cov)
    return agg, zs_agg.mean if zs_agg.valid else None


def _flow_hour(
    closed: ClosedWindow, minutes: list[MinuteItem], spans: list[Span], rules: AveragingRules
) -> Aggregate | None:
    """Hourly standard dry flow; it carries a00000's flag, so a faulty flow meter (D, M, …)
    yields no hourly flow and no mass (eq. 33)."""
    flows: list[Sample] = []
    flow_spans: list[Span] = []
    for minute, span in zip(minutes, spans, strict=True):
        if minute.flow is None:
            continue
        flag = minute.factors.get(FLOW, (None, "N", None))[1]
        flag = STOP_FLAG if minute.stopped else flag
        flows.append(Sample(ts=minute.placement, value=minute.flow, flag=flag))
        if flag in rules.flags.valid_flags:
            flow_spans.append(span)
    if not flows:
        return None
    coverage = covered_minutes(flow_spans, closed.start, closed.end)
    return aggregate(flows, closed.start, Period.HOUR, rules, coverage=coverage)


def from_logger_record(
    closed: ClosedWindow, record: LoggerRecordItem, period: Period, rules: AveragingRules
) -> PeriodMeans:
    """A period whose only constituent is the logger's own record for it (2061 or 2031)."""
    factors: dict[str, FactorPeriod] = {}
    for code, (value, flag, zs) in sorted(record.factors.items()):
        valid = value is not None and flag in rules.flags.valid_flags and not record.stopped
        reason = None
        if record.stopped:
            reason = "stack stopped (停运)"
        elif not valid:
            reason = "the logger's record has no value" if value is None else (
                f"the logger's record is flagged {flag}"
            )
        agg = Aggregate(
            period=period,
            start=closed.start,
            end=closed.end,
            valid=valid,
            flag=flag,
            mean=value,
            min=value,
            max=value,
            count_total=1,
            count_valid=1 if valid else 0,
            count_normal=1 if flag in rules.flags.normal_flags else 0,
            required_valid=1,
            dominant_invalid_flag=None if valid else flag,
            reason=reason,
        )
        factors[code] = FactorPeriod(agg, zs if valid else None)
    return PeriodMeans(factors, "logger", record.stopped)


def day_from_hours(
    closed: ClosedWindow, hours: dict[str, list[tuple[WindowItem, HourItem]]], rules: AveragingRules
) -> dict[str, PeriodMeans]:
    """Each factor's day from its hours (≥ 20 valid); its mass is the valid hours' sum.

    A day is stopped when stopped hours leave fewer than the 20 it needs.
    """
    out: dict[str, PeriodMeans] = {}
    for code in sorted(hours):
        entries = hours[code]
        samples = [
            Sample(ts=e.event_time, value=h.value, flag=h.flag, valid=h.valid) for e, h in entries
        ]
        zs_samples = [
            Sample(ts=e.event_time, value=h.zs, flag=h.flag, valid=h.valid and h.zs is not None)
            for e, h in entries
        ]
        agg = aggregate(samples, closed.start, Period.DAY, rules)
        zs_agg = aggregate(zs_samples, closed.start, Period.DAY, rules)
        kg = [h.kg for _, h in entries if h.valid and h.kg is not None]
        sources = {h.source for _, h in entries}
        stopped_hours = sum(1 for _, h in entries if h.stopped)
        out[code] = PeriodMeans(
            {code: FactorPeriod(agg, zs_agg.mean if zs_agg.valid else None,
                                sum(kg) if kg else None)},
            "logger" if sources == {"logger"} else "platform",
            stopped=stopped_hours > 24 - rules.min_hours_per_day,
        )
    return out


def aggregate_record(
    stack_id: str,
    code: str,
    means: FactorPeriod,
    limits: StackLimits,
    source: Source,
    revision: int,
    *,
    stopped: bool = False,
    logger_mean: float | None = None,
    verdicts: tuple[LimitVerdict, ...] = (),
) -> AggregateRecord:
    """The record of one factor's period for the aggregates topics.

    `mass_valid`: an hour's mass exists only when the hour is valid; a day's total is valid
    only when the day is (≥ 20 valid hours), though it always sums the valid hours it has.
    """
    agg = means.agg
    limit = limits.ultra_low(code)
    return AggregateRecord(
        stack_id=stack_id,
        factor=code,
        period=agg.period.value,
        period_start=agg.start,
        period_end=agg.end,
        mean=agg.mean,
        zs_mean=means.zs_mean,
        min=agg.min,
        max=agg.max,
        valid=agg.valid,
        flag=agg.flag,
        valid_count=agg.count_valid,
        total_count=agg.count_total,
        invalid_reason=agg.reason,
        dominant_invalid_flag=agg.dominant_invalid_flag,
        mass_kg=means.mass_kg,
        ref_o2=limits.ref_o2 if means.zs_mean is not None else None,
        limit_mg_m3=limit.limit_mg_m3 if limit is not None else None,
        limit_program=limit.program if limit is not None else None,
        source=source,
        revision=revision,
        coverage_minutes=agg.coverage_minutes,
        stopped=stopped,
        logger_mean=logger_mean,
        mass_valid=agg.valid if means.mass_kg is not None else None,
        verdicts=verdicts,
    )
