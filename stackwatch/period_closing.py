"""Closing the processor's periods: minutes derived from real-time samples, hours and days
computed (`stackwatch.period_means`), judged against the stack's limits, and passed on (an
hour to its day); the logger's own hours compared with the platform's.

A layer of `stackwatch.processor.StackProcessor`; each closed window is read back through
`stackwatch.window_items.unpack`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from stackwatch.alerts import Condition, day_conditions, hour_conditions
from stackwatch.averaging import Period, Sample, aggregate
from stackwatch.compliance import (
    DayValue,
    Evidence,
    HourValue,
    PeriodVerdict,
    judge_day,
    judge_hour,
)
from stackwatch.models import Rule
from stackwatch.period_means import (
    FactorPeriod,
    aggregate_record,
    day_from_hours,
    from_logger_record,
    hour_from_minutes,
)
from stackwatch.processor_config import Outputs
from stackwatch.processor_state import HOUR, iso
from stackwatch.processor_windows import WindowRouting
from stackwatch.quality import DEFAULT_CONCENTRATION_FACTORS, logger_hour_mismatch
from stackwatch.stack_limits import StackLimits
from stackwatch.window_items import FactorValue, MinuteItem, hour_item_key, unpack
from stackwatch.windows import ClosedWindow

O2 = "a19001"


class PeriodClosing(WindowRouting):
    """Turns closed windows into aggregates, verdicts and alerts."""

    def _close_realtime_minute(
        self, closed: ClosedWindow, limits: StackLimits, out: Outputs
    ) -> None:
        if closed.revision > 0:
            return  # a derived minute already fed its hour; late samples don't rewrite it
        if self.last_logger_minute is not None and (
            closed.start - self.last_logger_minute < self.cfg.logger_minutes_horizon
        ):
            return  # the logger sends official minutes: they win
        rtd = self.rtd_interval()
        per_minute = max(1, int(timedelta(minutes=1) / rtd)) if rtd < timedelta(minutes=1) else 1
        rules = self.cfg.averaging.model_copy(
            update={"min_samples_per_minute": min(self.cfg.realtime_min_samples, per_minute)}
        )
        per_factor: dict[str, list[Sample]] = {}
        zs_factor: dict[str, list[Sample]] = {}
        flows: list[float] = []
        stopped = 0
        for event_time, sample in unpack("rt", closed.items).samples:
            if sample.stopped:
                stopped += 1
            if sample.flow is not None:
                flows.append(sample.flow)
            for code, (value, flag, zs) in sample.factors.items():
                per_factor.setdefault(code, []).append(
                    Sample(ts=event_time, value=value, flag=flag)
                )
                zs_factor.setdefault(code, []).append(Sample(ts=event_time, value=zs, flag=flag))
        length = max(rtd, timedelta(minutes=1))
        factors: dict[str, FactorValue] = {}
        for code, samples in per_factor.items():
            agg = aggregate(samples, closed.start, Period.MINUTE, rules)
            zs_agg = aggregate(zs_factor[code], closed.start, Period.MINUTE, rules)
            value = agg.mean if agg.valid else None
            zs = zs_agg.mean if zs_agg.valid else None
            flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
            factors[code] = (value, flag, zs)
            record = aggregate_record(
                self.stack_id, code, FactorPeriod(agg, zs), limits, "platform", 0
            )
            out.aggregates.append(
                record.model_copy(
                    update={"period_end": closed.start + length, "coverage_minutes": None}
                )
            )
        item = MinuteItem(
            source="platform",
            stamp=closed.start,
            label="start",
            length_s=int(length.total_seconds()),
            factors=factors,
            flow=sum(flows) / len(flows) if flows else None,
            stopped=stopped * 2 > len(closed.items),
        )
        self._minute_into_hour(item, length, limits, out)

    def _close_hour(
        self,
        closed: ClosedWindow,
        limits: StackLimits,
        out: Outputs,
        *,
        late: bool = False,
        provisional: bool = False,
    ) -> None:
        """Emit, judge and pass on to its day one closed hour (`provisional`: not ended yet,
        so not judged; `late`: a back-filled hour, judged as such)."""
        content = unpack("hour", closed.items)
        rules = self.cfg.averaging
        if content.minutes:
            default_s = int(self.min_interval().total_seconds())
            means = hour_from_minutes(closed, content.minutes, rules, default_s)
        elif content.logger is not None:
            means = from_logger_record(closed, content.logger, Period.HOUR, rules)
        else:
            return
        logger = content.logger.values() if content.logger else {}
        key = iso(closed.start)
        o2 = means.factors.get(O2)
        for code, factor in means.factors.items():
            verdict = None
            if not provisional:
                verdict = self._judge_hour(
                    factor, code, o2, limits, out, stopped=means.stopped, late=late
                )
            out.aggregates.append(
                aggregate_record(
                    self.stack_id, code, factor, limits, means.source, closed.revision,
                    stopped=means.stopped, logger_mean=logger.get(code),
                    verdicts=verdict.verdicts if verdict else (),
                )
            )
            if not provisional and any(c.factor == code for c in limits.permit_caps):
                self.totals.record_hour(code, closed.start, factor.mass_kg)
            item = factor.as_hour_item(means.source, means.stopped)
            self._add_item("day", closed.start, hour_item_key(key, code), item, limits, out)
        if limits.permit_caps and not provisional:
            conds = self.totals.conditions(self.stack_id, limits.permit_caps, closed.start)
            self._observe_all(conds, out)
        if content.minutes and logger and not provisional:
            computed = {
                code: f.agg.mean
                for code, f in means.factors.items()
                if f.agg.valid and f.agg.mean is not None
            }
            self._compare_logger_hour(closed.start, logger, computed, out, late=late)

    def _judge_hour(
        self,
        factor: FactorPeriod,
        code: str,
        o2: FactorPeriod | None,
        limits: StackLimits,
        out: Outputs,
        *,
        stopped: bool,
        late: bool,
    ) -> PeriodVerdict | None:
        factor_limits = limits.by_factor.get(code)
        if not factor_limits:
            return None
        agg, zs_mean = factor.agg, factor.zs_mean
        o2_agg = o2.agg if o2 is not None else None
        flag = agg.flag if agg.valid else (agg.dominant_invalid_flag or agg.flag)
        coverage = agg.coverage_minutes if agg.coverage_minutes is not None else (
            60.0 if agg.valid else 0.0
        )
        hour = HourValue(
            stack_id=self.stack_id,
            factor=code,
            start=agg.start,
            mean_converted=zs_mean,
            mean_measured=agg.mean if agg.valid else None,
            valid=agg.valid,
            valid_minutes=int(min(coverage, 60)),
            flag=flag,
            ref_o2=limits.ref_o2,
            o2_mean=o2_agg.mean if o2_agg is not None and o2_agg.valid else None,
            production=not stopped,
        )
        verdict = judge_hour(hour, list(factor_limits))
        for cond in hour_conditions(hour, verdict):
            if not late:
                self._observe(cond, out)
            elif cond.rule in (Rule.HOUR_EXCEEDANCE, Rule.HOUR_WARNING):
                late_cond = cond.model_copy(
                    update={"evidence": dict(cond.evidence) | {"backfill": True}}
                )
                out.alerts.extend(self.book.observe_late(late_cond))
        return verdict

    def _close_day(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        content = unpack("day", closed.items)
        hours, logger = content.hours, content.logger
        rules = self.cfg.averaging
        if hours:
            days = list(day_from_hours(closed, hours, rules).values())
        elif logger is not None:
            days = [from_logger_record(closed, logger, Period.DAY, rules)]
        else:
            return
        logger_values = logger.values() if logger else {}
        for means in days:
            for code, factor in means.factors.items():
                verdict = self._judge_day(factor, code, limits, out, stopped=means.stopped)
                out.aggregates.append(
                    aggregate_record(
                        self.stack_id, code, factor, limits, means.source, closed.revision,
                        stopped=means.stopped, logger_mean=logger_values.get(code),
                        verdicts=verdict.verdicts if verdict else (),
                    )
                )
                if any(c.factor == code for c in limits.permit_caps):
                    self.totals.record_day(code, closed.start, factor.mass_kg)

    def _judge_day(
        self, factor: FactorPeriod, code: str, limits: StackLimits, out: Outputs, *, stopped: bool
    ) -> PeriodVerdict | None:
        """A day against the daily limits of its factor, where any exist."""
        day_limits = [lim for lim in limits.by_factor.get(code, ()) if lim.averaging == "day"]
        if not day_limits:
            return None
        agg = factor.agg
        day = DayValue(
            stack_id=self.stack_id,
            factor=code,
            start=agg.start,
            mean_converted=factor.zs_mean,
            mean_measured=agg.mean if agg.valid else None,
            valid=agg.valid,
            valid_hours=min(agg.count_valid, 24),
            flag=agg.flag,
            ref_o2=limits.ref_o2,
            production=not stopped,
        )
        verdict = judge_day(day, day_limits)
        self._observe_all(day_conditions(day, verdict), out)
        return verdict

    def _compare_logger_hour(
        self,
        start: datetime,
        logger: dict[str, float],
        computed: dict[str, float],
        out: Outputs,
        *,
        late: bool,
    ) -> None:
        """Record whether this hour's logger record agrees; alert when it keeps disagreeing.

        One alert per stack (not per hour or factor): a logger whose own hours disagree with
        the platform's in `mismatch_min_hours` of its last `mismatch_window` compared hours
        (usually a labelling or interval setting the registry has wrong).
        """
        diffs: dict[str, Evidence] = {}
        disagree = False
        for code in sorted(set(logger) & set(computed) & DEFAULT_CONCENTRATION_FACTORS):
            reported, mean = logger[code], computed[code]
            off = logger_hour_mismatch(
                self.stack_id, code, start, reported, mean, self.cfg.quality
            ).active
            disagree = disagree or off
            diffs[code] = f"logger {reported:g} vs platform {mean:g}" + (" ✗" if off else "")
        if not diffs:
            return
        self.mismatch[iso(start)] = disagree
        recent = sorted(self.mismatch)[-self.cfg.mismatch_window :]
        self.mismatch = {k: self.mismatch[k] for k in recent}
        if late:
            return
        count = sum(1 for k in recent if self.mismatch[k])
        self._observe(
            Condition(
                stack_id=self.stack_id,
                rule=Rule.LOGGER_HOUR_MISMATCH,
                active=count >= self.cfg.mismatch_min_hours,
                at=start + HOUR,
                value=float(count),
                period_start=start,
                period_end=start + HOUR,
                evidence={
                    "disagreeing_hours": count,
                    "compared_hours": len(recent),
                    "latest_hour": iso(start),
                    **diffs,
                },
            ),
            out,
        )
