"""The HTML report: one self-contained page (inline CSS, charts as SVG data URIs).

Jinja2 with autoescaping on: stack names, plant names and alert reasons come from the
registry and from people, and must never become markup. The same page is the PDF's source.
"""

from __future__ import annotations

import base64
from datetime import datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from reports import charts
from reports.labels import (
    KIND_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
    basis_label,
    factor_label,
    rule_label,
)
from reports.tables import Report
from stackwatch.beijing_time import CST
from stackwatch.compliance import HourStatus, LimitKind
from stackwatch.report_period import ReportKind

__all__ = ["TITLES", "render_html"]

TITLES: dict[ReportKind, tuple[str, str]] = {
    ReportKind.DAILY: ("烟气排放连续监测日报", "CEMS daily report"),
    ReportKind.MONTHLY: ("烟气排放连续监测月报", "CEMS monthly report"),
}


def _bj(ts: datetime | None) -> str:
    return "—" if ts is None else ts.astimezone(CST).strftime("%Y-%m-%d %H:%M")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def _uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bj=_bj, num=_num, pct=_pct, kg=_num)
    env.globals.update(
        factor=factor_label,
        basis=basis_label,
        rule=rule_label,
        kind=lambda k: KIND_LABELS[LimitKind(k)],
        severity=lambda s: SEVERITY_LABELS.get(s, (s, s)),
        state=lambda s: STATE_LABELS.get(s, (s, s)),
    )
    return env


def _charts(report: Report) -> dict[str, Any]:
    period = report.params.period
    exceeded = [(h.factor, h.start) for h in report.hourly if h.status is HourStatus.EXCEEDANCE]
    return {
        "hourly": [
            {"alt": " / ".join(charts.series_title(s)), "uri": _uri(charts.hourly_chart(s, period))}
            for s in report.series
        ],
        "exceedance": _uri(charts.exceedance_chart(report.daily, exceeded, period)),
        "capture": _uri(charts.capture_chart(report.capture)),
        "emissions": _uri(charts.emission_chart(report.emissions)),
    }


def render_html(report: Report) -> str:
    """The report as one HTML document (UTF-8 text)."""
    period = report.params.period
    title_zh, title_en = TITLES[period.kind]
    scope_zh, scope_en = report.params.scope_text
    rates = [c.rate.rate_pct for c in report.capture if c.rate.rate_pct is not None]
    capture_range = (
        "—" if not rates
        else _pct(min(rates)) if min(rates) == max(rates)
        else f"{min(rates):.1f}–{max(rates):.1f}%"
    )
    css = resources.files("reports").joinpath("templates/report.css").read_text("utf-8")
    return _environment().get_template("report.html.j2").render(
        r=report,
        css=Markup(css),  # our own file, not input
        title_zh=title_zh,
        title_en=title_en,
        scope_zh=scope_zh,
        scope_en=scope_en,
        period_text=f"{_bj(period.start)} – {_bj(period.end)}",
        exceeded_hours=sum(1 for h in report.hourly if h.status is HourStatus.EXCEEDANCE),
        capture_range=capture_range,
        exceed_caption=(
            ("每日超限小时（排放口·因子，按污染物叠加）",
             "hours above a limit per day, by pollutant")
            if period.kind is ReportKind.MONTHLY
            else ("各小时超限的排放口·因子数", "stack-factors above a limit in each hour")
        ),
        open_alerts=sum(1 for a in report.alerts if not a.acks and not a.suppressed),
        charts=_charts(report),
    )
