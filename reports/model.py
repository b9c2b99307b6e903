"""The stored rows a report is built from, one model per table read (typed, validated)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

from stackwatch.compliance import HourStatus, LimitKind

__all__ = ["AckEntry", "AlertEntry", "DayEntry", "HourEntry", "ReportData", "StackEntry",
           "VerdictEntry"]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class StackEntry(_Row):
    """A stack of the scope (`stacks` table); `registered` False: data without a registry row."""

    stack_id: str
    name: str
    plant: str
    city: str
    province: str
    sector: str
    process: str
    registered: bool = True


class HourEntry(_Row):
    """One `hour_aggregates` row."""

    stack_id: str
    factor: str
    start: AwareDatetime
    mean: float | None
    zs_mean: float | None
    ref_o2: float | None
    valid: bool
    stopped: bool
    flag: str | None
    mass_kg: float | None
    limit_mg_m3: float | None
    limit_program: str | None


class VerdictEntry(_Row):
    """One hourly `limit_verdicts` row: an hour judged against one limit on its own O2 basis."""

    stack_id: str
    factor: str
    start: AwareDatetime
    program: str
    kind: LimitKind
    status: HourStatus
    value: float | None
    basis: str | None
    ref_o2: float | None
    limit_mg_m3: float


class DayEntry(_Row):
    """One `day_aggregates` row (a closed Beijing day)."""

    stack_id: str
    factor: str
    start: AwareDatetime
    valid: bool
    mass_kg: float | None
    mass_valid: bool | None


class AckEntry(_Row):
    """One acknowledgement (`alert_events` ack): who, when, why."""

    at: AwareDatetime
    by: str
    reason: str


class AlertEntry(_Row):
    """One alert overlapping the period, with every acknowledgement it received."""

    alert_id: str
    stack_id: str
    factor: str | None
    rule: str
    severity: str
    state: str
    suppressed: bool
    title_zh: str | None
    title_en: str | None
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    cleared_at: AwareDatetime | None
    count: int
    peak_value: float | None
    limit_value: float | None
    acks: tuple[AckEntry, ...] = ()


class ReportData(_Row):
    """Everything stored about the scope's stacks in the period."""

    stacks: tuple[StackEntry, ...]
    hours: tuple[HourEntry, ...]
    verdicts: tuple[VerdictEntry, ...]
    days: tuple[DayEntry, ...]
    alerts: tuple[AlertEntry, ...]
    first_hours: dict[str, AwareDatetime]
    """Each stack's first hour ever stored (capture rate counts from it)."""
