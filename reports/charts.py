"""Report charts with matplotlib (object API, no pyplot state), as SVG for HTML and PDF.

Text is drawn as paths (matplotlib's default `svg.fonttype`), so the SVG shows 中文 the same in
any browser and in WeasyPrint without the reader having the font; the font is needed only
here, when the chart is drawn: WenQuanYi Micro Hei (Debian `fonts-wqy-microhei`, installed by
scripts/test.sh), with DejaVu Sans as the fallback for symbols.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache

import matplotlib as mpl
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

from reports.labels import KIND_LABELS, basis_label, factor_label, factor_unit
from reports.tables import CaptureLine, ChartSeries, DailyLine, EmissionLine
from stackwatch.beijing_time import CST
from stackwatch.compliance import HourStatus, LimitKind
from stackwatch.report_period import ReportKind, ReportPeriod

__all__ = [
    "CJK_FONT",
    "capture_chart",
    "emission_chart",
    "exceedance_chart",
    "hourly_chart",
]

log = logging.getLogger(__name__)

CJK_FONT = "WenQuanYi Micro Hei"
_WIDTH_IN = 7.2  # the A4 portrait text width of the PDF (180 mm)

_INK = "#1f2933"
_MEAN = "#2f6690"
_GRID = "#d9dee3"
_LIMIT_STYLE: dict[LimitKind, tuple[str, str]] = {
    LimitKind.ULTRA_LOW: ("#c0392b", "--"),
    LimitKind.STANDARD: ("#7b241c", ":"),
    LimitKind.FUGITIVE: ("#8e44ad", "--"),
}
_FACTOR_COLOURS = ("#2f6690", "#d35400", "#16a085", "#8e44ad", "#c0392b", "#7f8c8d", "#b7950b")


@cache
def _font_available() -> bool:
    try:
        font_manager.findfont(font_manager.FontProperties(family=CJK_FONT),
                              fallback_to_default=False)
    except ValueError:
        log.warning("CJK font missing: 中文 in charts will not render",
                    extra={"font": CJK_FONT, "fix": "apt-get install fonts-wqy-microhei"})
        return False
    return True


@contextmanager
def _style() -> Iterator[None]:
    _font_available()
    with mpl.rc_context(
        {
            "font.family": [CJK_FONT, "DejaVu Sans"],
            "font.size": 8,
            "axes.unicode_minus": False,
            "axes.edgecolor": "#9aa5b1",
            "axes.labelcolor": _INK,
            "axes.titlesize": 9,
            "axes.titleweight": "normal",  # the CJK font has no bold face
            "axes.titlelocation": "left",
            "xtick.color": _INK,
            "ytick.color": _INK,
            "legend.fontsize": 7,
            "legend.frameon": False,
            "svg.hashsalt": "stackwatch-report",  # stable ids: the same data, the same SVG
        }
    ):
        yield


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
    return buf.getvalue()


def _hours(ts: datetime, period: ReportPeriod) -> float:
    """x coordinate: hours since the period's start (ticks are labelled in Beijing time)."""
    return (ts - period.start) / timedelta(hours=1)


def _time_axis(ax: Axes, period: ReportPeriod) -> None:
    ax.set_xlim(0, period.hours)
    if period.kind is ReportKind.DAILY:
        major = list(range(0, 25, 3))
        labels = [f"{h:02d}:00" for h in major]
    else:
        days = period.day_starts()
        major = [i * 24 for i, d in enumerate(days) if d.day in (1, 5, 10, 15, 20, 25)]
        major.append(period.hours)
        labels = [d.strftime("%m-%d") for d in days if d.day in (1, 5, 10, 15, 20, 25)]
        labels.append(period.end.astimezone(CST).strftime("%m-%d"))
        ax.xaxis.set_minor_locator(FixedLocator([i * 24 for i in range(len(days) + 1)]))
    ax.set_xticks(major, labels)
    ax.grid(True, axis="y", color=_GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _spans(hours: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours merged into [start, end) spans."""
    spans: list[tuple[datetime, datetime]] = []
    for h in sorted(hours):
        if spans and spans[-1][1] == h:
            spans[-1] = (spans[-1][0], h + timedelta(hours=1))
        else:
            spans.append((h, h + timedelta(hours=1)))
    return spans


def series_title(series: ChartSeries) -> tuple[str, str]:
    """(中文, English) caption of an hourly chart."""
    zh, en = factor_label(series.factor)
    bzh, ben = basis_label(series.basis, series.ref_o2)
    return (
        f"{series.stack_name}（{series.stack_id}）· {zh} · {bzh}",
        f"{series.stack_name} ({series.stack_id}) · {en} · {ben}",
    )


def hourly_chart(series: ChartSeries, period: ReportPeriod) -> bytes:
    """Hourly means against the limits of one basis; exceedances red, stopped/invalid shaded."""
    with _style():
        fig = Figure(figsize=(_WIDTH_IN, 2.3))
        ax = fig.add_subplot()
        _time_axis(ax, period)
        # every hour of the period, NaN where there is no value: missing, invalid and stopped
        # hours are gaps, never a line drawn across them
        values = {t: v for t, v, _ in series.points if v is not None}
        every = period.hour_starts()
        ax.plot([_hours(t, period) + 0.5 for t in every],  # plotted mid-hour
                [values.get(t, float("nan")) for t in every],
                color=_MEAN, linewidth=0.9 if period.hours > 48 else 1.2,
                marker="o" if period.hours <= 48 else None, markersize=2.5,
                label="小时均值 hourly mean")
        for status, colour, label in (
            (HourStatus.WARNING, "#e67e22", "预警 warning"),
            (HourStatus.EXCEEDANCE, "#c0392b", "超限 above the limit"),
        ):
            hit = [(_hours(t, period) + 0.5, v) for t, v, s in series.points
                   if s is status and v is not None]
            if hit:
                ax.scatter([x for x, _ in hit], [y for _, y in hit], s=14, color=colour,
                           zorder=3, label=label)
        for limit in series.limits:
            colour, dash = _LIMIT_STYLE[limit.kind]
            zh, en = KIND_LABELS[limit.kind]
            lx = [_hours(t, period) for t, _ in limit.values]
            lx.append(lx[-1] + 1)
            ly = [v for _, v in limit.values] + [limit.values[-1][1]]
            ax.step(lx, ly, where="post", color=colour, linestyle=dash, linewidth=1.1,
                    label=f"{zh} {en} {limit.program}")
        for status, colour, label in (
            (HourStatus.STOPPED, "#b0b7bf", "停运 stopped"),
            (HourStatus.INVALID, "#f1c40f", "无效 invalid"),
        ):
            hours = [t for t, _, s in series.points if s is status]
            for i, (a, b) in enumerate(_spans(hours)):
                ax.axvspan(_hours(a, period), _hours(b, period), color=colour, alpha=0.35,
                           linewidth=0, label=label if i == 0 else None)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(factor_unit(series.factor) or "")
        zh, en = series_title(series)
        ax.set_title(f"{zh}\n{en}", fontsize=8.5, color=_INK)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6.5)
        return _svg(fig)


def exceedance_chart(daily: Sequence[DailyLine], hourly_status: Sequence[tuple[str, datetime]],
                     period: ReportPeriod) -> bytes:
    """Exceedance hours of the scope per day (monthly) or per hour (daily), by pollutant.

    `hourly_status` holds (factor, hour start) of every exceeded stack-hour; a monthly report
    counts them per Beijing day from `daily`.
    """
    with _style():
        fig = Figure(figsize=(_WIDTH_IN, 2.0))
        ax = fig.add_subplot()
        _time_axis(ax, period)
        counts: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
        if period.kind is ReportKind.MONTHLY:
            for d in daily:
                if d.exceedance_hours:
                    counts[d.factor][_hours(d.day, period)] += d.exceedance_hours
            width = 24 * 0.8
        else:
            for factor, start in hourly_status:
                counts[factor][_hours(start, period)] += 1
            width = 0.8
        bottom: dict[float, int] = defaultdict(int)
        for i, (factor, per) in enumerate(sorted(counts.items())):
            xs = sorted(per)
            zh, en = factor_label(factor)
            ax.bar([x + 0.1 * width / 0.8 for x in xs], [per[x] for x in xs], width=width,
                   align="edge", bottom=[bottom[x] for x in xs],
                   color=_FACTOR_COLOURS[i % 7], label=f"{zh} {en}")
            for x in xs:
                bottom[x] += per[x]
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("小时 hours")
        ax.set_ylim(bottom=0, top=max([*bottom.values(), 1]) * 1.15)
        if counts:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax.text(0.5, 0.5, "本期无超限小时 · no hour above a limit", transform=ax.transAxes,
                    ha="center", va="center", color="#52606d")
        return _svg(fig)


def capture_chart(lines: Sequence[CaptureLine]) -> bytes:
    """Capture rate of every stack and factor, as horizontal bars (0–100 %)."""
    with _style():
        fig = Figure(figsize=(_WIDTH_IN, 0.6 + 0.22 * max(len(lines), 1)))
        ax = fig.add_subplot()
        labels = [f"{c.stack_name} · {factor_label(c.factor)[0]} {c.factor}" for c in lines]
        values = [c.rate.rate_pct or 0.0 for c in lines]
        colours = ["#2f6690" if v >= 90 else "#e67e22" if v >= 75 else "#c0392b"
                   for v in values]
        ypos = list(range(len(lines)))
        ax.barh(ypos, values, color=colours, height=0.6)
        ax.set_yticks(ypos, labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 110)
        ax.set_xticks([0, 25, 50, 75, 90, 100])
        ax.set_xlabel("有效数据捕集率 capture rate (%)")
        for y, c in zip(ypos, lines, strict=True):
            text = "—" if c.rate.rate_pct is None else f"{c.rate.rate_pct:.1f}%"
            ax.text((c.rate.rate_pct or 0) + 1, y, text, va="center", fontsize=7, color=_INK)
        ax.grid(True, axis="x", color=_GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        return _svg(fig)


def emission_chart(lines: Sequence[EmissionLine]) -> bytes:
    """Emitted kg per pollutant, stacked by stack, with the scope total on each bar."""
    with _style():
        fig = Figure(figsize=(_WIDTH_IN, 2.4))
        ax = fig.add_subplot()
        factors = sorted({e.factor for e in lines})
        stacks = list(dict.fromkeys((e.stack_id, e.stack_name) for e in lines))
        xs = list(range(len(factors)))
        bottom = [0.0] * len(factors)
        for i, (stack_id, name) in enumerate(stacks):
            kg = [next((e.mass_kg for e in lines if e.stack_id == stack_id and e.factor == f),
                       0.0) for f in factors]
            drawn = [j for j, k in enumerate(kg) if k > 0]  # no zero-height slivers
            ax.bar([xs[j] for j in drawn], [kg[j] for j in drawn],
                   bottom=[bottom[j] for j in drawn], width=0.55,
                   color=_FACTOR_COLOURS[i % 7], label=f"{name}（{stack_id}）")
            bottom = [b + k for b, k in zip(bottom, kg, strict=True)]
        for x, total in zip(xs, bottom, strict=True):
            ax.text(x, total, f"{total:,.1f} kg", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(xs, [f"{factor_label(f)[0]}\n{factor_label(f)[1]}" for f in factors])
        ax.set_ylabel("排放量 emission (kg)")
        ax.set_ylim(0, max([*bottom, 1.0]) * 1.18)
        ax.grid(True, axis="y", color=_GRID, linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if stacks:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig)
