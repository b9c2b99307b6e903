"""The report's tables, built from the stored rows with the pure HJ 75 statistics.

Nothing here reads the database or renders: `query` supplies `ReportData`, the renderers
(`html`, `xlsx`, `charts`) take the `Report`. Definitions (docs/reports.md):

* compliance per limit: the hours' stored verdicts counted by `report_stats.tally_statuses`;
* capture rate per stack and factor: `report_stats.capture_rate`;
* emission totals: the sum of the hours' masses (App. D eq. 33; only valid hours carry one,
  missing hours are not substituted), and how many days of the period had a valid total.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from reports.model import AlertEntry, HourEntry, ReportData, StackEntry, VerdictEntry
from reports.params import ReportParams
from stackwatch.beijing_time import CST
from stackwatch.compliance import HourStatus, LimitKind
from stackwatch.report_stats import CaptureRate, LimitTally, capture_rate, tally_statuses

__all__ = [
    "CaptureLine",
    "ChartSeries",
    "ComplianceLine",
    "DailyLine",
    "EmissionLine",
    "HourlyLine",
    "LimitSeries",
    "Report",
    "ScopeEmission",
    "StackLine",
    "build_report",
]

#: Which status wins when several limits judge one hour (colour of the chart point).
_STATUS_RANK = {
    HourStatus.EXCEEDANCE: 5,
    HourStatus.WARNING: 4,
    HourStatus.COMPLIANT: 3,
    HourStatus.INVALID: 2,
    HourStatus.STOPPED: 1,
    HourStatus.UNJUDGED: 0,
}
#: Order of limit kinds in tables and legends: the governing target first.
_KIND_ORDER = {LimitKind.ULTRA_LOW: 0, LimitKind.FUGITIVE: 1, LimitKind.STANDARD: 2}


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True)


class StackLine(_Line):
    """A stack of the scope and how many hours it reported in the period."""

    stack: StackEntry
    hours_with_data: int
    factors: tuple[str, ...]


class ComplianceLine(_Line):
    """One stack, factor and limit (program, kind, O2 basis) over the period."""

    stack_id: str
    stack_name: str
    factor: str
    program: str
    kind: LimitKind
    basis: str | None
    ref_o2: float | None
    limit_mg_m3: float
    limit_max_mg_m3: float
    """Same as `limit_mg_m3` unless the limit changed within the period (program change)."""
    tally: LimitTally
    mean_value: float | None
    max_value: float | None


class CaptureLine(_Line):
    """Capture rate of one stack and factor."""

    stack_id: str
    stack_name: str
    factor: str
    rate: CaptureRate


class EmissionLine(_Line):
    """Emitted mass of one pollutant at one stack."""

    stack_id: str
    stack_name: str
    factor: str
    mass_kg: float
    hours_with_mass: int
    days_closed: int
    days_valid: int


class ScopeEmission(_Line):
    """Emitted mass of one pollutant over all stacks of the scope."""

    factor: str
    mass_kg: float
    stacks: int


class DailyLine(_Line):
    """One stack, factor and Beijing day (monthly reports)."""

    stack_id: str
    factor: str
    day: AwareDatetime
    valid_hours: int
    exceedance_hours: int
    mass_kg: float | None
    mass_valid: bool | None


class HourlyLine(HourEntry):
    """One stored hour, with the worst status its limits gave it."""

    status: HourStatus | None


class LimitSeries(_Line):
    """One limit's value for every hour that has a verdict (steps if the program changes)."""

    program: str
    kind: LimitKind
    values: tuple[tuple[AwareDatetime, float], ...]


class ChartSeries(_Line):
    """Hourly values of one stack and factor on one O2 basis, with the limits of that basis."""

    stack_id: str
    stack_name: str
    factor: str
    basis: str | None
    ref_o2: float | None
    points: tuple[tuple[AwareDatetime, float | None, HourStatus], ...]
    limits: tuple[LimitSeries, ...]


class Report(_Line):
    """Everything the renderers show."""

    params: ReportParams
    generated_at: AwareDatetime
    stacks: tuple[StackLine, ...]
    compliance: tuple[ComplianceLine, ...]
    capture: tuple[CaptureLine, ...]
    emissions: tuple[EmissionLine, ...]
    scope_emissions: tuple[ScopeEmission, ...]
    alerts: tuple[AlertEntry, ...]
    series: tuple[ChartSeries, ...]
    daily: tuple[DailyLine, ...]
    hourly: tuple[HourlyLine, ...]

    def stack_name(self, stack_id: str) -> str:
        """Display name of a stack of the report (its id when it has none)."""
        for line in self.stacks:
            if line.stack.stack_id == stack_id:
                return line.stack.name
        return stack_id


def _basis(ref_o2: float | None) -> str:
    """A limit with a reference O2 is judged on the converted mean, else on the measured one
    (docs/limits.md#reference-o2-by-source); stored so even for hours it could not judge
    (stopped, invalid)."""
    return "measured" if ref_o2 is None else "converted"


def _worst(statuses: Iterable[HourStatus]) -> HourStatus:
    return max(statuses, key=_STATUS_RANK.__getitem__)


def _stack_order(stacks: Sequence[StackEntry]) -> dict[str, int]:
    return {s.stack_id: i for i, s in enumerate(stacks)}


def _compliance(
    verdicts: Sequence[VerdictEntry], names: dict[str, str], order: dict[str, int]
) -> list[ComplianceLine]:
    groups: dict[tuple[str, str, str, LimitKind, float | None], list[VerdictEntry]]
    groups = defaultdict(list)
    for v in verdicts:
        groups[(v.stack_id, v.factor, v.program, v.kind, v.ref_o2)].append(v)
    lines = []
    for (stack_id, factor, program, kind, ref_o2), rows in groups.items():
        judged = [
            v.value
            for v in rows
            if v.value is not None
            and v.status in (HourStatus.COMPLIANT, HourStatus.WARNING, HourStatus.EXCEEDANCE)
        ]
        lines.append(
            ComplianceLine(
                stack_id=stack_id,
                stack_name=names.get(stack_id, stack_id),
                factor=factor,
                program=program,
                kind=kind,
                basis=_basis(ref_o2),
                ref_o2=ref_o2,
                limit_mg_m3=min(v.limit_mg_m3 for v in rows),
                limit_max_mg_m3=max(v.limit_mg_m3 for v in rows),
                tally=tally_statuses(v.status for v in rows),
                mean_value=math.fsum(judged) / len(judged) if judged else None,
                max_value=max(judged) if judged else None,
            )
        )
    lines.sort(key=lambda c: (order.get(c.stack_id, 0), c.factor, _KIND_ORDER[c.kind], c.program))
    return lines


def _capture(
    data: ReportData, params: ReportParams, names: dict[str, str], now: datetime
) -> list[CaptureLine]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for h in data.hours:
        c = counts[(h.stack_id, h.factor)]
        c[0] += int(h.valid and not h.stopped)
        c[1] += int(h.stopped)
        c[2] += 1
    order = _stack_order(data.stacks)
    lines = [
        CaptureLine(
            stack_id=stack_id,
            stack_name=names.get(stack_id, stack_id),
            factor=factor,
            rate=capture_rate(
                period_start=params.period.start,
                period_end=params.period.end,
                first_recorded=data.first_hours[stack_id],
                now=now,
                valid_hours=valid,
                stopped_hours=stopped,
                recorded_hours=recorded,
            ),
        )
        for (stack_id, factor), (valid, stopped, recorded) in counts.items()
    ]
    lines.sort(key=lambda c: (order.get(c.stack_id, 0), c.factor))
    return lines


def _emissions(
    data: ReportData, names: dict[str, str]
) -> tuple[list[EmissionLine], list[ScopeEmission]]:
    masses: dict[tuple[str, str], list[float]] = defaultdict(list)
    for h in data.hours:
        if h.mass_kg is not None:
            masses[(h.stack_id, h.factor)].append(h.mass_kg)
    days: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for d in data.days:
        days[(d.stack_id, d.factor)].append(bool(d.mass_valid))
    order = _stack_order(data.stacks)
    lines = sorted(
        (
            EmissionLine(
                stack_id=stack_id,
                stack_name=names.get(stack_id, stack_id),
                factor=factor,
                mass_kg=math.fsum(kg),
                hours_with_mass=len(kg),
                days_closed=len(days[(stack_id, factor)]),
                days_valid=sum(days[(stack_id, factor)]),
            )
            for (stack_id, factor), kg in masses.items()
        ),
        key=lambda e: (order.get(e.stack_id, 0), e.factor),
    )
    per_factor: dict[str, list[EmissionLine]] = defaultdict(list)
    for line in lines:
        per_factor[line.factor].append(line)
    scope = [
        ScopeEmission(
            factor=factor, mass_kg=math.fsum(e.mass_kg for e in group), stacks=len(group)
        )
        for factor, group in sorted(per_factor.items())
    ]
    return lines, scope


def _series(
    verdicts: Sequence[VerdictEntry], names: dict[str, str], order: dict[str, int]
) -> list[ChartSeries]:
    groups: dict[tuple[str, str, float | None], list[VerdictEntry]]
    groups = defaultdict(list)
    for v in verdicts:
        groups[(v.stack_id, v.factor, v.ref_o2)].append(v)
    out = []
    for (stack_id, factor, ref_o2), rows in groups.items():
        per_hour: dict[datetime, list[VerdictEntry]] = defaultdict(list)
        limits: dict[tuple[str, LimitKind], dict[datetime, float]] = defaultdict(dict)
        for v in rows:
            per_hour[v.start].append(v)
            limits[(v.program, v.kind)][v.start] = v.limit_mg_m3
        points = tuple(
            (
                start,
                next((v.value for v in hour if v.value is not None), None),
                _worst(v.status for v in hour),
            )
            for start, hour in sorted(per_hour.items())
        )
        out.append(
            ChartSeries(
                stack_id=stack_id,
                stack_name=names.get(stack_id, stack_id),
                factor=factor,
                basis=_basis(ref_o2),
                ref_o2=ref_o2,
                points=points,
                limits=tuple(
                    LimitSeries(program=program, kind=kind, values=tuple(sorted(vals.items())))
                    for (program, kind), vals in sorted(
                        limits.items(), key=lambda kv: (_KIND_ORDER[kv[0][1]], kv[0][0])
                    )
                ),
            )
        )
    out.sort(key=lambda s: (order.get(s.stack_id, 0), s.factor, s.ref_o2 or 0.0))
    return out


def _hour_status(verdicts: Sequence[VerdictEntry]) -> dict[tuple[str, str, datetime], HourStatus]:
    per_hour: dict[tuple[str, str, datetime], list[HourStatus]] = defaultdict(list)
    for v in verdicts:
        per_hour[(v.stack_id, v.factor, v.start)].append(v.status)
    return {key: _worst(statuses) for key, statuses in per_hour.items()}


def _daily(
    data: ReportData, status: dict[tuple[str, str, datetime], HourStatus]
) -> list[DailyLine]:
    """Per stack, factor and Beijing day: valid and exceeded hours, the closed day's mass."""
    tz = CST
    valid: dict[tuple[str, str, datetime], int] = defaultdict(int)
    exceeded: dict[tuple[str, str, datetime], int] = defaultdict(int)
    for h in data.hours:
        day = h.start.astimezone(tz).replace(hour=0)
        key = (h.stack_id, h.factor, day)
        valid[key] += int(h.valid and not h.stopped)
        exceeded[key] += int(status.get((h.stack_id, h.factor, h.start)) is HourStatus.EXCEEDANCE)
    day_rows = {(d.stack_id, d.factor, d.start.astimezone(tz)): d for d in data.days}
    order = _stack_order(data.stacks)
    return sorted(
        (
            DailyLine(
                stack_id=key[0],
                factor=key[1],
                day=key[2],
                valid_hours=valid[key],
                exceedance_hours=exceeded[key],
                mass_kg=day_rows[key].mass_kg if key in day_rows else None,
                mass_valid=day_rows[key].mass_valid if key in day_rows else None,
            )
            for key in valid
        ),
        key=lambda d: (order.get(d.stack_id, 0), d.factor, d.day),
    )


def build_report(data: ReportData, params: ReportParams, now: datetime) -> Report:
    """The report's tables for `params` from the rows `data`, as of `now`."""
    names = {s.stack_id: s.name for s in data.stacks}
    order = _stack_order(data.stacks)
    status = _hour_status(data.verdicts)
    hours_per_stack: dict[str, set[datetime]] = defaultdict(set)
    factors: dict[str, set[str]] = defaultdict(set)
    for h in data.hours:
        hours_per_stack[h.stack_id].add(h.start)
        factors[h.stack_id].add(h.factor)
    emissions, scope_emissions = _emissions(data, names)
    return Report(
        params=params,
        generated_at=now,
        stacks=tuple(
            StackLine(
                stack=s,
                hours_with_data=len(hours_per_stack[s.stack_id]),
                factors=tuple(sorted(factors[s.stack_id])),
            )
            for s in data.stacks
        ),
        compliance=tuple(_compliance(data.verdicts, names, order)),
        capture=tuple(_capture(data, params, names, now)),
        emissions=tuple(emissions),
        scope_emissions=tuple(scope_emissions),
        alerts=data.alerts,
        series=tuple(_series(data.verdicts, names, order)),
        daily=tuple(_daily(data, status)),
        hourly=tuple(
            HourlyLine(
                **h.model_dump(), status=status.get((h.stack_id, h.factor, h.start))
            )
            for h in data.hours
        ),
    )
