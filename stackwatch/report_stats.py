"""HJ 75 statistics of a report period, from the stored hour rows (pure, no I/O).

* **Capture rate** (有效数据捕集率 α, HJ 75; docs/limits.md): valid hours / running hours,
  where running hours are the clock hours of the period from the stack's first recorded hour
  to the period's end (or the current hour, for a period in progress) minus the stopped
  (停运) hours. An hour with no row at all is missing, which is what the statistic measures.
  The same arithmetic as the database view ``capture_rate`` (migration 0006), which only
  serves months and quarters; a report also needs days.
* **Limit tally**: the stored hourly verdicts of one limit counted like the view
  ``conformity_monthly``: judged = compliant (达标) + warning (预警) + exceedance hours;
  invalid, stopped and unjudged hours are not judged. The 95 % test is exact
  (docs/limits.md#ultra-low-and-legal-checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from fractions import Fraction

from pydantic import BaseModel, ConfigDict

from stackwatch.compliance import ULTRA_LOW_REQUIRED_RATE, HourStatus, exact

__all__ = ["CaptureRate", "LimitTally", "capture_rate", "tally_statuses"]

_HOUR = timedelta(hours=1)


class CaptureRate(BaseModel):
    """Capture rate of one stack and factor over one period (counts are hours)."""

    model_config = ConfigDict(frozen=True)

    counted_hours: int
    """Clock hours from max(period start, first recorded hour) to the counted end."""
    stopped_hours: int
    running_hours: int
    """counted − stopped: the hours the stack was expected to report valid data."""
    valid_hours: int
    """Valid, not stopped hours."""
    recorded_hours: int
    """Hours with a row at all (valid, invalid or stopped)."""
    missing_hours: int
    """counted − recorded: hours without any data."""
    invalid_hours: int
    """recorded − valid − stopped: hours with data that HJ 75 does not accept."""
    rate_pct: float | None
    """100 × valid / running; None when the stack ran no hour of the period."""


def _floor_hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def capture_rate(
    *,
    period_start: datetime,
    period_end: datetime,
    first_recorded: datetime,
    now: datetime,
    valid_hours: int,
    stopped_hours: int,
    recorded_hours: int,
) -> CaptureRate:
    """α of one stack and factor; ``first_recorded`` is the stack's first hour ever stored.

    Hours before a stack's first data are not counted (a stack commissioned mid-month is not
    missing the days before it existed); a period in progress is counted up to the current
    hour. Both as the ``capture_rate`` view does, hour for hour.
    """
    counted_from = max(period_start, first_recorded)
    counted_to = min(period_end, max(_floor_hour(now), first_recorded + _HOUR))
    counted = max(0, round((counted_to - counted_from) / _HOUR))
    running = counted - stopped_hours
    rate = float(100 * Fraction(valid_hours, running)) if running > 0 else None
    return CaptureRate(
        counted_hours=counted,
        stopped_hours=stopped_hours,
        running_hours=running,
        valid_hours=valid_hours,
        recorded_hours=recorded_hours,
        missing_hours=max(0, counted - recorded_hours),
        invalid_hours=recorded_hours - valid_hours - stopped_hours,
        rate_pct=rate,
    )


class LimitTally(BaseModel):
    """The hours of one limit over a period, by stored verdict status."""

    model_config = ConfigDict(frozen=True)

    judged_hours: int
    compliant_hours: int
    """Within the limit: 达标 and 预警 (a warning is below the limit)."""
    warning_hours: int
    exceedance_hours: int
    invalid_hours: int
    stopped_hours: int
    unjudged_hours: int
    conformity_pct: float | None
    """100 × compliant / judged; None when nothing was judged."""
    meets_95: bool
    """compliant / judged ≥ 95 % (exact; 94.99 % fails), with at least one judged hour."""


def tally_statuses(statuses: Iterable[HourStatus]) -> LimitTally:
    """Count one limit's hourly verdicts (one status per hour)."""
    counts = dict.fromkeys(HourStatus, 0)
    for status in statuses:
        counts[status] += 1
    compliant = counts[HourStatus.COMPLIANT] + counts[HourStatus.WARNING]
    judged = compliant + counts[HourStatus.EXCEEDANCE]
    return LimitTally(
        judged_hours=judged,
        compliant_hours=compliant,
        warning_hours=counts[HourStatus.WARNING],
        exceedance_hours=counts[HourStatus.EXCEEDANCE],
        invalid_hours=counts[HourStatus.INVALID],
        stopped_hours=counts[HourStatus.STOPPED],
        unjudged_hours=counts[HourStatus.UNJUDGED],
        conformity_pct=float(100 * Fraction(compliant, judged)) if judged else None,
        meets_95=judged > 0
        and Fraction(compliant, judged) >= exact(ULTRA_LOW_REQUIRED_RATE),
    )
