"""Report periods on the Beijing calendar and the HJ 75 report statistics, by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from reports.params import ReportParams, Scope
from stackwatch.compliance import HourStatus
from stackwatch.report_period import (
    ReportKind,
    daily_period,
    default_period,
    monthly_period,
    parse_period,
)
from stackwatch.report_stats import capture_rate, tally_statuses


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_beijing_day_starts_at_16_00_utc_the_day_before() -> None:
    p = daily_period(date(2024, 6, 3))
    assert (p.start, p.end) == (utc(2024, 6, 2, 16), utc(2024, 6, 3, 16))
    assert (p.label, p.hours) == ("2024-06-03", 24)
    assert p.hour_starts()[0] == utc(2024, 6, 2, 16) and len(p.hour_starts()) == 24


def test_months_have_their_calendar_length() -> None:
    feb = monthly_period(2024, 2)  # leap year: 29 days
    assert (feb.start, feb.end, feb.hours) == (utc(2024, 1, 31, 16), utc(2024, 2, 29, 16), 696)
    dec = monthly_period(2024, 12)  # the year rolls over
    assert (dec.end, dec.hours, dec.label) == (utc(2024, 12, 31, 16), 744, "2024-12")
    assert len(monthly_period(2024, 6).day_starts()) == 30


def test_parse_and_default_periods() -> None:
    assert parse_period(ReportKind.MONTHLY, "2024-06") == monthly_period(2024, 6)
    assert parse_period(ReportKind.DAILY, "2024-06-03") == daily_period(date(2024, 6, 3))
    for kind, text in ((ReportKind.MONTHLY, "2024-13"), (ReportKind.MONTHLY, "2024-6-1"),
                       (ReportKind.DAILY, "2024-06")):
        with pytest.raises(ValueError):
            parse_period(kind, text)
    # 2024-07-01 00:30 Beijing is still 06-30 16:30 UTC: yesterday is 06-30, last month June
    now = utc(2024, 6, 30, 16, 30)
    assert default_period(ReportKind.DAILY, now) == daily_period(date(2024, 6, 30))
    assert default_period(ReportKind.MONTHLY, now) == monthly_period(2024, 6)
    assert default_period(ReportKind.MONTHLY, utc(2024, 1, 5)) == monthly_period(2023, 12)


def test_capture_rate_of_a_closed_month() -> None:
    june = monthly_period(2024, 6)
    c = capture_rate(period_start=june.start, period_end=june.end,
                     first_recorded=utc(2023, 1, 1), now=utc(2025, 1, 1),
                     valid_hours=662, stopped_hours=24, recorded_hours=696)
    # 720 counted − 24 stopped = 696 running; 662 / 696 = 95.11 %; 24 missing, 10 invalid
    assert (c.counted_hours, c.running_hours, c.missing_hours, c.invalid_hours) == (
        720, 696, 24, 10)
    assert c.rate_pct == pytest.approx(95.114942528)


def test_capture_rate_counts_from_the_first_hour_and_up_to_now() -> None:
    june = monthly_period(2024, 6)
    # commissioned 06-11 00:00 Beijing, report made 06-20 12:34 Beijing (04:34 UTC):
    # counted 06-11 00:00 → 06-20 12:00 = 9 days 12 hours = 228 hours
    c = capture_rate(period_start=june.start, period_end=june.end,
                     first_recorded=utc(2024, 6, 10, 16), now=utc(2024, 6, 20, 4, 34),
                     valid_hours=200, stopped_hours=8, recorded_hours=220)
    assert (c.counted_hours, c.running_hours) == (228, 220)
    assert c.rate_pct == pytest.approx(100 * 200 / 220)
    # a stack that ran no hour (all stopped) has no rate rather than a division by zero
    day = daily_period(date(2024, 6, 25))
    c = capture_rate(period_start=day.start, period_end=day.end, first_recorded=utc(2024, 1, 1),
                     now=utc(2025, 1, 1), valid_hours=0, stopped_hours=24, recorded_hours=24)
    assert (c.running_hours, c.rate_pct) == (0, None)


def test_tally_counts_warnings_as_within_and_applies_95_percent_exactly() -> None:
    t = tally_statuses([HourStatus.COMPLIANT] * 682 + [HourStatus.WARNING] * 2
                       + [HourStatus.EXCEEDANCE] * 36 + [HourStatus.INVALID] * 5
                       + [HourStatus.STOPPED] * 3)
    # 684 within of 720 judged = 95.0 % exactly: meets
    assert (t.judged_hours, t.compliant_hours, t.exceedance_hours) == (720, 684, 36)
    assert (t.invalid_hours, t.stopped_hours, t.warning_hours) == (5, 3, 2)
    assert t.conformity_pct == pytest.approx(95.0) and t.meets_95
    t = tally_statuses([HourStatus.COMPLIANT] * 683 + [HourStatus.EXCEEDANCE] * 37)
    assert not t.meets_95  # 683 / 720 = 94.86 %
    empty = tally_statuses([HourStatus.STOPPED] * 24)
    assert (empty.judged_hours, empty.conformity_pct, empty.meets_95) == (0, None, False)


def test_report_params_scope_and_file_name() -> None:
    june = monthly_period(2024, 6)
    p = ReportParams(period=june, scope=Scope.PLANT, value="甲水泥 Cement/Co.")
    assert p.file_stem == "report-monthly-2024-06-plant-甲水泥_Cement_Co."
    assert p.scope_text == ("企业：甲水泥 Cement/Co.", "plant: 甲水泥 Cement/Co.")
    assert ReportParams(period=june).file_stem == "report-monthly-2024-06-all"
    with pytest.raises(ValidationError):
        ReportParams(period=june, scope=Scope.CITY)
    with pytest.raises(ValidationError):
        ReportParams(period=june, scope=Scope.ALL, value="Zhengzhou")
