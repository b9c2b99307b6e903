"""The Excel workbook (XLSX, openpyxl): the report's tables, one sheet each, machine-readable.

Provincial platforms and certified DAHS exchange reports as workbooks, so every value is a
typed cell (numbers stay numbers, hours are Excel datetimes in Beijing time, UTC+8; Excel has
no time zones), headers are bilingual, and the header row is frozen and filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reports.html import TITLES
from reports.labels import (
    KIND_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
    STATUS_LABELS,
    basis_label,
    factor_label,
    rule_label,
)
from reports.tables import Report
from stackwatch.beijing_time import CST

__all__ = ["SHEETS", "write_xlsx"]

log = logging.getLogger(__name__)

#: Sheet titles, in workbook order.
SHEETS = (
    "概况 Summary",
    "排放口 Stacks",
    "达标 Compliance",
    "捕集率 Capture",
    "排放量 Emissions",
    "排放合计 Totals",
    "报警 Alerts",
    "日统计 Daily",
    "小时数据 Hourly",
)

_HEADER_FONT = Font(bold=True, color="102A43")
_HEADER_FILL = PatternFill("solid", fgColor="E4ECF4")
_DATETIME = "yyyy-mm-dd hh:mm"
_NUMBER = "#,##0.00"


def _local(ts: datetime | None) -> datetime | None:
    """Naive Beijing time (an Excel cell cannot hold a time zone)."""
    return None if ts is None else ts.astimezone(CST).replace(tzinfo=None)


def _width(value: Any) -> int:
    text = str(value) if value is not None else ""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _sheet(wb: Workbook, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
           numeric: Sequence[int] = ()) -> None:
    ws: Worksheet = wb.create_sheet(title)
    ws.append(list(header))
    for row in rows:
        ws.append([_local(v) if isinstance(v, datetime) else v for v in row])
    for cell in ws[1]:
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="bottom")
    for col in range(1, len(header) + 1):
        letter = get_column_letter(col)
        widths = [_width(header[col - 1]) // 2 + 2]
        for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            if isinstance(cell.value, datetime):
                cell.number_format = _DATETIME
                widths.append(16)
            else:
                if col - 1 in numeric and isinstance(cell.value, float):
                    cell.number_format = _NUMBER
                widths.append(_width(cell.value))
        ws.column_dimensions[letter].width = min(max(widths) + 2, 48)
    ws.freeze_panes = "A2"
    if rows:
        ws.auto_filter.ref = ws.dimensions


def _summary(wb: Workbook, report: Report) -> None:
    period = report.params.period
    zh, en = TITLES[period.kind]
    scope_zh, scope_en = report.params.scope_text
    rows: list[tuple[str, Any]] = [
        ("报告 Report", f"{zh} {en}"),
        ("范围 Scope", f"{scope_zh} / {scope_en}"),
        ("报告期开始 Period start (UTC+8)", period.start),
        ("报告期结束 Period end (UTC+8)", period.end),
        ("生成时间 Generated (UTC+8)", report.generated_at),
        ("排放口数 Stacks", len(report.stacks)),
        ("超限小时 Stack-factor hours above a limit",
         sum(1 for h in report.hourly if h.status is not None and h.status.value == "exceedance")),
        ("报警数 Alerts", len(report.alerts)),
        ("说明 Note", "缺失小时未作替代 missing hours are not substituted; "
                     "see docs/reports.md"),
    ]
    _sheet(wb, SHEETS[0], ("项目 Item", "值 Value"), rows)


def _flag(value: bool | None) -> str:
    return "—" if value is None else ("是 yes" if value else "否 no")


def write_xlsx(report: Report, target: Path) -> None:
    """Write the workbook to `target`."""
    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    _summary(wb, report)
    _sheet(wb, SHEETS[1],
           ("排放口编号 stack id", "名称 name", "企业 plant", "城市 city", "省份 province",
            "行业 sector", "工序 process", "有数据小时 hours with data", "因子 factors"),
           [(s.stack.stack_id, s.stack.name, s.stack.plant, s.stack.city, s.stack.province,
             s.stack.sector, s.stack.process, s.hours_with_data, " ".join(s.factors))
            for s in report.stacks])
    _sheet(wb, SHEETS[2],
           ("排放口编号 stack id", "排放口 stack", "因子代码 factor", "因子 factor name",
            "限值类别 limit kind", "方案 program", "限值 limit (mg/m³)", "最大限值 limit max",
            "基准 basis", "基准氧 ref O2 (%)", "判定小时 judged h", "达标小时 within h",
            "预警小时 warning h", "超限小时 exceedance h", "无效小时 invalid h",
            "停运小时 stopped h", "未判定小时 unjudged h", "均值 mean", "最大值 max",
            "达标率 conformity (%)", "满足95% meets 95 %"),
           [(c.stack_id, c.stack_name, c.factor, factor_label(c.factor)[0],
             " ".join(KIND_LABELS[c.kind]), c.program, c.limit_mg_m3, c.limit_max_mg_m3,
             basis_label(c.basis, c.ref_o2)[0], c.ref_o2, c.tally.judged_hours,
             c.tally.compliant_hours, c.tally.warning_hours, c.tally.exceedance_hours,
             c.tally.invalid_hours, c.tally.stopped_hours, c.tally.unjudged_hours,
             c.mean_value, c.max_value, c.tally.conformity_pct, _flag(c.tally.meets_95))
            for c in report.compliance],
           numeric=(17, 18, 19))
    _sheet(wb, SHEETS[3],
           ("排放口编号 stack id", "排放口 stack", "因子代码 factor", "因子 factor name",
            "统计小时 counted h", "停运小时 stopped h", "应运行小时 running h",
            "有效小时 valid h", "无效小时 invalid h", "缺失小时 missing h",
            "捕集率 capture rate (%)"),
           [(c.stack_id, c.stack_name, c.factor, factor_label(c.factor)[0],
             c.rate.counted_hours, c.rate.stopped_hours, c.rate.running_hours,
             c.rate.valid_hours, c.rate.invalid_hours, c.rate.missing_hours, c.rate.rate_pct)
            for c in report.capture],
           numeric=(10,))
    _sheet(wb, SHEETS[4],
           ("排放口编号 stack id", "排放口 stack", "因子代码 factor", "污染物 pollutant",
            "排放量 emission (kg)", "有排放量小时 hours with mass", "已结算日 closed days",
            "有效日 valid days"),
           [(e.stack_id, e.stack_name, e.factor, factor_label(e.factor)[0], e.mass_kg,
             e.hours_with_mass, e.days_closed, e.days_valid) for e in report.emissions],
           numeric=(4,))
    _sheet(wb, SHEETS[5],
           ("因子代码 factor", "污染物 pollutant", "排放量 emission (kg)", "排放口数 stacks"),
           [(t.factor, factor_label(t.factor)[0], t.mass_kg, t.stacks)
            for t in report.scope_emissions],
           numeric=(2,))
    _sheet(wb, SHEETS[6],
           ("报警编号 alert id", "排放口编号 stack id", "因子代码 factor", "规则 rule",
            "报警 title", "级别 severity", "状态 state", "开始 first seen", "最近 last seen",
            "恢复 cleared at", "次数 count", "峰值 peak", "限值 limit",
            "确认次数 acknowledgements", "确认人 acked by", "确认时间 acked at",
            "确认原因 ack reason"),
           [(a.alert_id, a.stack_id, a.factor, a.rule,
             a.title_zh or rule_label(a.rule)[0],
             SEVERITY_LABELS.get(a.severity, (a.severity,))[0],
             STATE_LABELS["suppressed" if a.suppressed else a.state][0],
             a.first_seen, a.last_seen, a.cleared_at, a.count, a.peak_value, a.limit_value,
             len(a.acks),
             a.acks[-1].by if a.acks else None,
             a.acks[-1].at if a.acks else None,
             a.acks[-1].reason if a.acks else None)
            for a in report.alerts])
    _sheet(wb, SHEETS[7],
           ("排放口编号 stack id", "因子代码 factor", "日期 day (UTC+8)", "有效小时 valid h",
            "超限小时 exceedance h", "日排放量 day mass (kg)", "日排放量有效 day total valid"),
           [(d.stack_id, d.factor, d.day, d.valid_hours, d.exceedance_hours, d.mass_kg,
             _flag(d.mass_valid)) for d in report.daily],
           numeric=(5,))
    _sheet(wb, SHEETS[8],
           ("排放口编号 stack id", "因子代码 factor", "时段开始 hour (UTC+8)", "实测均值 mean",
            "折算均值 converted mean", "基准氧 ref O2 (%)", "有效 valid", "停运 stopped",
            "标记 flag", "排放量 mass (kg)", "超低限值 ultra-low limit",
            "判定 status"),
           [(h.stack_id, h.factor, h.start, h.mean, h.zs_mean, h.ref_o2, h.valid, h.stopped,
             h.flag, h.mass_kg, h.limit_mg_m3,
             None if h.status is None else STATUS_LABELS[h.status][0])
            for h in report.hourly])
    wb.save(target)
    log.info("xlsx written", extra={"path": str(target), "sheets": len(SHEETS)})
