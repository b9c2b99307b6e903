"""The day or month a report covers, as an instant range on the Beijing calendar.

HJ 212 day data and the HJ 75 statistics count local days, 00:00–24:00 China Standard Time
(UTC+8, no DST; docs/hj75-data.md "Days"), and months are calendar months of that day. A
report period is therefore a half-open UTC range [start, end) whose ends are local midnights.
Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from stackwatch.beijing_time import CST

__all__ = [
    "ReportKind",
    "ReportPeriod",
    "daily_period",
    "default_period",
    "monthly_period",
    "parse_period",
]

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class ReportKind(StrEnum):
    """A daily (日报) or monthly (月报) report."""

    DAILY = "daily"
    MONTHLY = "monthly"


class ReportPeriod(BaseModel):
    """One Beijing day or month: [start, end), both local midnights (UTC+8)."""

    model_config = ConfigDict(frozen=True)

    kind: ReportKind
    start: AwareDatetime
    end: AwareDatetime

    @property
    def label(self) -> str:
        """``2024-06-03`` for a day, ``2024-06`` for a month (Beijing calendar)."""
        local = self.start.astimezone(CST)
        return local.strftime("%Y-%m-%d" if self.kind is ReportKind.DAILY else "%Y-%m")

    @property
    def hours(self) -> int:
        """Clock hours in the period (24 a day; 720 in a 30-day month)."""
        return int((self.end - self.start) / timedelta(hours=1))

    def hour_starts(self) -> list[datetime]:
        """Start of every hour of the period, in Beijing time."""
        first = self.start.astimezone(CST)
        return [first + timedelta(hours=i) for i in range(self.hours)]

    def day_starts(self) -> list[datetime]:
        """Local midnight of every day of the period."""
        first = self.start.astimezone(CST)
        return [first + timedelta(days=i) for i in range(self.hours // 24)]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CST)


def daily_period(day: date) -> ReportPeriod:
    """The Beijing calendar day ``day``."""
    start = _midnight(day)
    return ReportPeriod(kind=ReportKind.DAILY, start=start, end=start + timedelta(days=1))


def monthly_period(year: int, month: int) -> ReportPeriod:
    """The Beijing calendar month ``year-month``."""
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return ReportPeriod(
        kind=ReportKind.MONTHLY, start=_midnight(first), end=_midnight(following)
    )


def parse_period(kind: ReportKind, text: str) -> ReportPeriod:
    """``YYYY-MM-DD`` for a daily report, ``YYYY-MM`` for a monthly one (ValueError otherwise)."""
    if kind is ReportKind.DAILY:
        try:
            return daily_period(date.fromisoformat(text))
        except ValueError:
            raise ValueError(f"a daily report needs a date YYYY-MM-DD, not {text!r}") from None
    match = _MONTH_RE.match(text)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"a monthly report needs a month YYYY-MM, not {text!r}")
    return monthly_period(int(match.group(1)), int(match.group(2)))


def default_period(kind: ReportKind, now: datetime) -> ReportPeriod:
    """The last complete period at ``now``: yesterday or last month, Beijing time."""
    today = now.astimezone(CST).date()
    if kind is ReportKind.DAILY:
        return daily_period(today - timedelta(days=1))
    last = today.replace(day=1) - timedelta(days=1)
    return monthly_period(last.year, last.month)
