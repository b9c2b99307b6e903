"""The report renderers without a database: escaping, empty periods, workbook layout."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl

from reports.html import render_html
from reports.model import ReportData, StackEntry
from reports.params import ReportParams, Scope
from reports.tables import build_report
from reports.xlsx import SHEETS, write_xlsx
from stackwatch.report_period import daily_period

NOW = datetime(2024, 6, 4, 1, 0, tzinfo=UTC)


def empty_report(name: str) -> ReportData:
    return ReportData(
        stacks=(StackEntry(stack_id="S<1>", name=name, plant="P & Q", city="C", province="",
                           sector="cement", process="kiln_tail"),),
        hours=(), verdicts=(), days=(), alerts=(), first_hours={},
    )


def test_registry_text_is_escaped_and_an_empty_day_says_so() -> None:
    params = ReportParams(period=daily_period(date(2024, 6, 3)), scope=Scope.PLANT,
                          value="P & Q")
    page = render_html(build_report(empty_report("<script>alert(1)</script>"), params, NOW))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "S&lt;1&gt;" in page and "企业：P &amp; Q" in page
    assert "本期无判定数据" in page and "本期无报警" in page and "本期无排放量数据" in page
    assert "2024-06-03 00:00 – 2024-06-04 00:00" in page  # Beijing day
    assert "2024-06-04 09:00 (UTC+8)" in page  # generated at 01:00 UTC


def test_workbook_has_every_sheet_with_headers_even_when_empty(tmp_path: Path) -> None:
    params = ReportParams(period=daily_period(date(2024, 6, 3)))
    target = tmp_path / "r.xlsx"
    write_xlsx(build_report(empty_report("1号窑尾"), params, NOW), target)
    wb = openpyxl.load_workbook(target)
    assert wb.sheetnames == list(SHEETS)
    assert wb["排放口 Stacks"]["B2"].value == "1号窑尾"
    assert wb["排放量 Emissions"].max_row == 1  # header only
    # row 4 = period start, as a naive Beijing time (16:00 UTC the day before)
    assert wb["概况 Summary"]["B4"].value == datetime(2024, 6, 3, 0, 0)
