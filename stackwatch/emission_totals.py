"""Cumulative emission totals of one stack, checked against its permit caps (许可排放量).

A permit states what a plant may emit per year (t/a), sometimes per month. The pipeline
keeps, per capped pollutant, the mass of each closed local day and of each hour of the days
not closed yet, so the running total of the year or month is known after every hour and an
alert is raised the hour it passes the cap. Masses are the hours' eq. 33 values; hours with
no valid mass add nothing (HJ 75 substitution of missing hours is not applied). A revised
hour or day replaces its earlier mass. Pure: no I/O, state as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from stackwatch.alerts import Condition
from stackwatch.beijing_time import CST
from stackwatch.models import Rule
from stackwatch.registry import PermitCap

#: Closed days are kept this long: a year's total and a late revision of last December.
KEEP_DAYS = 400


def _local(ts: datetime) -> datetime:
    return ts.astimezone(CST)


def period_start(cap: PermitCap, hour_start: datetime) -> datetime:
    """Start (Beijing time) of the cap's year or month that holds `hour_start`."""
    local = _local(hour_start)
    if cap.per == "year":
        return local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class EmissionTotals:
    """Masses of closed days and of the hours of open days, per capped pollutant."""

    def __init__(self) -> None:
        self.days: dict[str, dict[str, float]] = {}
        self.hours: dict[str, dict[str, float]] = {}

    def record_hour(self, factor: str, start: datetime, kg: float | None) -> None:
        """The (possibly revised) mass of one hour; None removes it."""
        key = _local(start).isoformat()
        series = self.hours.setdefault(factor, {})
        if kg is None:
            series.pop(key, None)
        else:
            series[key] = kg

    def record_day(self, factor: str, start: datetime, kg: float | None) -> None:
        """The (possibly revised) total of one closed local day; its hours are folded in."""
        day = _local(start).date()
        self.days.setdefault(factor, {})[day.isoformat()] = kg or 0.0
        hours = self.hours.get(factor, {})
        for key in [k for k in hours if datetime.fromisoformat(k).date() == day]:
            del hours[key]
        horizon = (day - timedelta(days=KEEP_DAYS)).isoformat()
        days = self.days[factor]
        for old in [d for d in days if d < horizon]:
            del days[old]

    def total_kg(self, factor: str, since: datetime, until: datetime) -> float:
        """Mass emitted from `since` (a local midnight) up to the hour starting before `until`."""
        first, last = _local(since).date(), _local(until).date()
        days = self.days.get(factor, {})
        total = sum(
            kg for d, kg in days.items() if first <= date.fromisoformat(d) <= last
        )
        for key, kg in self.hours.get(factor, {}).items():
            at = datetime.fromisoformat(key)
            if since <= at < until and at.date().isoformat() not in days:
                total += kg
        return total

    def conditions(
        self, stack_id: str, caps: Iterable[PermitCap], hour_start: datetime
    ) -> list[Condition]:
        """One `permit_cap` observation per capped pollutant after the hour at `hour_start`.

        With a yearly and a monthly cap on one pollutant, the condition is active when either
        is passed and carries the one most exceeded (one alert per stack and pollutant).
        """
        hour_end = hour_start + timedelta(hours=1)
        per_factor: dict[str, list[tuple[float, PermitCap, datetime, float]]] = {}
        for cap in caps:
            since = period_start(cap, hour_start)
            kg = self.total_kg(cap.factor, since, hour_end)
            ratio = kg / 1000.0 / cap.tonnes
            per_factor.setdefault(cap.factor, []).append((ratio, cap, since, kg))
        out = []
        for factor, entries in sorted(per_factor.items()):
            ratio, cap, since, kg = max(entries, key=lambda e: e[0])
            out.append(
                Condition(
                    stack_id=stack_id,
                    factor=factor,
                    rule=Rule.PERMIT_CAP,
                    active=ratio > 1.0,
                    at=hour_end,
                    value=kg / 1000.0,
                    limit=cap.tonnes,
                    period_start=since,
                    period_end=hour_end,
                    evidence={
                        "per": cap.per,
                        "period": since.strftime("%Y" if cap.per == "year" else "%Y-%m"),
                        "total_kg": kg,
                        "cap_t": cap.tonnes,
                    },
                )
            )
        return out

    def to_state(self) -> dict[str, Any]:
        """JSON-safe copy (for the stack's state)."""
        return {
            "days": {f: dict(d) for f, d in self.days.items()},
            "hours": {f: dict(h) for f, h in self.hours.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> EmissionTotals:
        """Rebuild from `to_state()` output (an empty state for older snapshots)."""
        totals = cls()
        if state:
            totals.days = {f: {k: float(v) for k, v in d.items()} for f, d in state["days"].items()}
            totals.hours = {
                f: {k: float(v) for k, v in h.items()} for f, h in state["hours"].items()
            }
        return totals
