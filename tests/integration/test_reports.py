"""`stackwatch report`: a scripted June 2024 in a real PostgreSQL 18, reports read back.

The month is written through the real sink path (`sinks.batching.write_batch` with the topic
models; verdicts from `judge_hour`, alerts from `AlertBook`), then the daily and monthly
reports of one stack, a plant, a city and all stacks are generated. Their XLSX is read back
with openpyxl and their HTML with the standard library's parser, and compared with numbers
worked out by hand below. One PDF page is rendered to PNG (pypdfium2) and checked.

The month (Beijing time, UTC+8; June has 30 days = 720 hours):

* K1 1号窑尾, plant 甲水泥, Zhengzhou.
  SO2 (a21026), ultra-low 35 and standard 100, both @ 10 % O2: 20.0 and 1.5 kg each hour;
  06-03 10:00–12:00 at 40.0 and 06-15 08:00 at 120.0, 3.0 kg each; 06-20 00:00–09:00
  invalid (10 h, no mass); 06-25 stopped (24 h); 06-28 no data at all (24 h).
  NOx (a21002), ultra-low 50 @ 10 % O2: 40.0 (exactly the 80 % warning level, so not a
  warning) and 2.0 kg each hour; 06-10 09:00 and 10:00 at 45.0 (warnings); the same stopped
  and missing days.
* K2 2号窑头, plant 甲水泥, Zhengzhou. Dust (a34013), ultra-low 10 on the measured basis:
  first data 06-11 00:00; 5.0 and 0.25 kg each hour; 06-12 14:00 and 15:00 at 12.0.
* B1 1号锅炉, plant 乙电厂, Zhengzhou. SO2, ultra-low 35 @ 6 % O2: 10.0 and 1.0 kg every hour.
* G1 烧结机头, plant 丙钢铁, Luoyang. Dust, ultra-low 10 @ 16 % O2: 4.0 and 0.5 kg every
  hour; 06-30 23:00 at 11.0.

K1 SO2 also has one hour on each side of the month (05-31 23:00 and 07-01 00:00), which no
June figure may include.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pypdfium2
import pytest
from typer.testing import CliRunner

from commands import app
from reports.generate import ReportFiles, generate_report
from reports.params import ReportParams, Scope
from reports.query import ScopeNotFoundError
from sinks.batching import write_batch
from sinks.db import connect, connect_async
from sinks.records import SinkKind, SourceRecord
from sinks.registry_sync import sync_registry
from sinks.schema import migrate
from stackwatch.alerts import AlertBook, Condition
from stackwatch.compliance import HourValue, Limit, LimitKind, Severity, judge_hour
from stackwatch.models import AggregateRecord, AlertEvent, Rule
from stackwatch.registry import StackInfo, StackRegistry
from stackwatch.report_period import daily_period, monthly_period

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 7, 2, 9, 30, tzinfo=UTC)  # the report is made the next month


def bj(month: int, day: int, hour: int = 0) -> datetime:
    """A Beijing wall-clock time in 2024 (UTC+8), as an aware UTC datetime."""
    return datetime(2024, month, day, hour, tzinfo=UTC) - timedelta(hours=8)


H = timedelta(hours=1)
SO2, NOX, DUST = "a21026", "a21002", "a34013"
ULE = "NATL-2024-ULE"


# ----------------------------------------------------------------------------- the script


class HourSpec:
    """One scripted hour: converted value, validity, stopped, mass."""

    def __init__(self, value: float, *, valid: bool = True, stopped: bool = False,
                 mass: float | None = None) -> None:
        self.value, self.valid, self.stopped, self.mass = value, valid, stopped, mass


def k1_so2(start: datetime) -> HourSpec | None:
    local = start + timedelta(hours=8)
    if local.day == 28 and local.month == 6:
        return None
    if local.day == 25 and local.month == 6:
        return HourSpec(0.0, valid=False, stopped=True)
    if local.day == 20 and local.month == 6 and local.hour < 10:
        return HourSpec(20.0, valid=False)
    if (local.month, local.day, local.hour) in {(6, 3, 10), (6, 3, 11), (6, 3, 12)}:
        return HourSpec(40.0, mass=3.0)
    if (local.month, local.day, local.hour) == (6, 15, 8):
        return HourSpec(120.0, mass=3.0)
    return HourSpec(20.0, mass=1.5)


def k1_nox(start: datetime) -> HourSpec | None:
    local = start + timedelta(hours=8)
    if local.day == 28:
        return None
    if local.day == 25:
        return HourSpec(0.0, valid=False, stopped=True)
    if (local.day, local.hour) in {(10, 9), (10, 10)}:
        return HourSpec(45.0, mass=2.0)
    return HourSpec(40.0, mass=2.0)


def k2_dust(start: datetime) -> HourSpec | None:
    local = start + timedelta(hours=8)
    if local.day < 11:
        return None
    if (local.day, local.hour) in {(12, 14), (12, 15)}:
        return HourSpec(12.0, mass=0.25)
    return HourSpec(5.0, mass=0.25)


def b1_so2(_start: datetime) -> HourSpec | None:
    return HourSpec(10.0, mass=1.0)


def g1_dust(start: datetime) -> HourSpec | None:
    local = start + timedelta(hours=8)
    if (local.day, local.hour) == (30, 23):
        return HourSpec(11.0, mass=0.5)
    return HourSpec(4.0, mass=0.5)


def limits_for(stack: str, factor: str) -> tuple[float | None, list[Limit]]:
    """(reference O2 of the stack's converted means, limits) of one series."""
    if stack == "K1" and factor == SO2:
        return 10.0, [
            Limit(limit_mg_m3=35, kind=LimitKind.ULTRA_LOW, program=ULE, ref_o2=10.0),
            Limit(limit_mg_m3=100, kind=LimitKind.STANDARD, program="GB4915-2013", ref_o2=10.0),
        ]
    if stack == "K1":
        return 10.0, [Limit(limit_mg_m3=50, kind=LimitKind.ULTRA_LOW, program=ULE, ref_o2=10.0)]
    if stack == "K2":
        return None, [Limit(limit_mg_m3=10, kind=LimitKind.ULTRA_LOW, program=ULE)]
    if stack == "B1":
        return 6.0, [Limit(limit_mg_m3=35, kind=LimitKind.ULTRA_LOW, program=ULE, ref_o2=6.0)]
    return 16.0, [Limit(limit_mg_m3=10, kind=LimitKind.ULTRA_LOW, program=ULE, ref_o2=16.0)]


SERIES = {("K1", SO2): k1_so2, ("K1", NOX): k1_nox, ("K2", DUST): k2_dust,
          ("B1", SO2): b1_so2, ("G1", DUST): g1_dust}


def hour_record(stack: str, factor: str, start: datetime, spec: HourSpec) -> AggregateRecord:
    ref_o2, limits = limits_for(stack, factor)
    valid_minutes = 0 if spec.stopped else (60 if spec.valid else 30)
    converted = spec.value if ref_o2 is not None else None
    hour = HourValue(
        stack_id=stack, factor=factor, start=start, mean_converted=converted,
        mean_measured=spec.value * 0.8 if ref_o2 is not None else spec.value,
        valid=spec.valid, flag="N" if spec.valid else ("F" if spec.stopped else "D"),
        ref_o2=ref_o2, valid_minutes=valid_minutes, production=not spec.stopped,
    )
    verdict = judge_hour(hour, limits)
    ule = limits[0]
    return AggregateRecord(
        stack_id=stack, factor=factor, period="hour", period_start=start,
        period_end=start + H, mean=hour.mean_measured, zs_mean=converted,
        valid=spec.valid, flag=hour.flag, valid_count=valid_minutes, total_count=60,
        invalid_reason=None if spec.valid else "30 valid minutes (HJ 212-2017 App. D: 45)",
        mass_kg=spec.mass, mass_valid=spec.mass is not None or None, ref_o2=ref_o2,
        limit_mg_m3=ule.limit_mg_m3, limit_program=ule.program, stopped=spec.stopped,
        coverage_minutes=float(valid_minutes), verdicts=verdict.verdicts,
    )


def day_record(stack: str, factor: str, day: datetime, hours: list[HourSpec]) -> AggregateRecord:
    valid = [h for h in hours if h.valid and not h.stopped]
    masses = [h.mass for h in valid if h.mass is not None]
    ok = len(valid) >= 20
    return AggregateRecord(
        stack_id=stack, factor=factor, period="day", period_start=day, period_end=day + 24 * H,
        mean=sum(h.value for h in valid) / len(valid) if valid else None, valid=ok,
        flag="N" if ok else "D", valid_count=len(valid), total_count=len(hours),
        invalid_reason=None if ok else f"{len(valid)} valid hours (HJ 212-2017 App. D: 20)",
        mass_kg=sum(masses) if masses else None, mass_valid=ok if masses else None,
        stopped=all(h.stopped for h in hours),
    )


def month_records() -> tuple[list[AggregateRecord], list[AggregateRecord]]:
    hours: list[AggregateRecord] = []
    days: list[AggregateRecord] = []
    for (stack, factor), script in SERIES.items():
        for d in range(1, 31):
            day_start = bj(6, d)
            specs = []
            for h in range(24):
                spec = script(day_start + h * H)
                if spec is not None:
                    specs.append(spec)
                    hours.append(hour_record(stack, factor, day_start + h * H, spec))
            if specs:
                days.append(day_record(stack, factor, day_start, specs))
    # one K1 SO2 hour on each side of June: never part of a June figure
    for start in (bj(5, 31, 23), bj(7, 1, 0)):
        hours.append(hour_record("K1", SO2, start, HourSpec(20.0, mass=1.5)))
    return hours, days


def alert_events() -> list[AlertEvent]:
    """Real lifecycles from the alert book (event time = end of the judged hour)."""
    book = AlertBook()
    events: list[AlertEvent] = []

    def exceed(stack: str, factor: str, at: datetime, active: bool, value: float,
               severity: Severity | None = None) -> None:
        events.extend(book.observe(Condition(
            stack_id=stack, factor=factor, rule=Rule.HOUR_EXCEEDANCE, active=active, at=at,
            value=value, limit=35.0 if factor == SO2 else 10.0,
            severity=severity if active else None, period_start=at - H, period_end=at)))

    # A1: K1 SO2 06-03 10:00–13:00, acknowledged at 11:20, cleared 15:00 (1 h hold)
    exceed("K1", SO2, bj(6, 3, 11), True, 40.0, Severity.ALARM)
    events.extend(book.ack(events[-1].alert_id, "张工 Zhang", "增加脱硫剂 more sorbent",
                           bj(6, 3, 11) + timedelta(minutes=20)))
    exceed("K1", SO2, bj(6, 3, 12), True, 40.0, Severity.ALARM)
    exceed("K1", SO2, bj(6, 3, 13), True, 40.0, Severity.ALARM)
    exceed("K1", SO2, bj(6, 3, 14), False, 20.0)
    events.extend(book.tick(bj(6, 3, 15)))
    # A2: K1 SO2 06-15 08:00 hour above the standard, never acknowledged
    exceed("K1", SO2, bj(6, 15, 9), True, 120.0, Severity.CRITICAL)
    exceed("K1", SO2, bj(6, 15, 10), False, 20.0)
    events.extend(book.tick(bj(6, 15, 11)))
    # A3: G1 dust, the last hour of June (first seen 07-01 00:00, the end of that hour)
    exceed("G1", DUST, bj(7, 1, 0), True, 11.0, Severity.ALARM)
    # A4: B1 offline in May, cleared exactly at June's start: not a June alert
    for active, at in ((True, bj(5, 31, 20)), (False, bj(6, 1, 0))):
        events.extend(book.observe(Condition(stack_id="B1", rule=Rule.OFFLINE, active=active,
                                             at=at)))
    # A5: K1 SO2 incomplete hour during calibration (flag C): suppressed, recorded
    events.extend(book.observe(Condition(
        stack_id="K1", factor=SO2, rule=Rule.HOUR_INCOMPLETE, active=True, at=bj(6, 20, 1),
        value=30.0, limit=45.0, flag="C")))
    return events


def registry() -> StackRegistry:
    def stack(stack_id: str, name: str, plant: str, city: str, sector: str,
              process: str) -> StackInfo:
        return StackInfo(stack_id=stack_id, mn=f"MN{stack_id}", name=name, plant=plant,
                         city=city, province="Henan", sector=sector, process=process)

    return StackRegistry(stacks=[
        stack("K1", "1号窑尾", "甲水泥", "Zhengzhou", "cement", "kiln_tail"),
        stack("K2", "2号窑头", "甲水泥", "Zhengzhou", "cement", "kiln_head"),
        stack("B1", "1号锅炉", "乙电厂", "Zhengzhou", "boiler", "coal_boiler"),
        stack("G1", "烧结机头", "丙钢铁", "Luoyang", "steel", "sinter"),
    ])


def src(model: Any) -> SourceRecord:
    return SourceRecord(value=model.model_dump_json().encode())


async def load(dsn: str) -> None:
    hours, days = month_records()
    conn = await connect_async(dsn)
    try:
        await sync_registry(conn, registry())
        for kind, records in ((SinkKind.HOUR, hours), (SinkKind.DAY, days),
                              (SinkKind.ALERTS, alert_events())):
            result = await write_batch(conn, kind, [src(r) for r in records])
            assert not result.rejected, result.rejected[:3]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def month_dsn(pg_dsn: str) -> Iterator[str]:
    """A database with the scripted month (one per module: every test only reads it)."""
    name = f"t_reports_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        with connect(dsn, autocommit=True) as conn:
            migrate(conn, "plain")
        asyncio.run(load(dsn))
        yield dsn
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----------------------------------------------------------------------------- reading back


def sheet(path: Path, title: str) -> list[dict[str, Any]]:
    """Rows of one XLSX sheet as {header: value}."""
    wb = openpyxl.load_workbook(path)
    rows = list(wb[title].iter_rows(values_only=True))
    header = [str(h) for h in rows[0]]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


class _Tables(HTMLParser):
    """Cells of every <table id=…> as rows of {data-col: text}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and (table := a.get("id")):
            self._table = table
            self.tables[table] = []
        elif tag == "tr" and self._table:
            self._row = {}
        elif tag == "td" and self._row is not None and (col := a.get("data-col")):
            self._col = col
            self._row[col] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None
        elif tag == "tr" and self._table and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col is not None:
            self._row[self._col] += data


def html_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tables


def by(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


STACK, FACTOR = "排放口编号 stack id", "因子代码 factor"


def month(tmp: Path, scope: Scope, value: str | None, dsn: str) -> ReportFiles:
    params = ReportParams(period=monthly_period(2024, 6), scope=scope, value=value)
    return generate_report(dsn, params, tmp, NOW)


# ----------------------------------------------------------------------------- tests


def test_monthly_plant_report_has_the_hand_computed_tables(month_dsn: str,
                                                          tmp_path: Path) -> None:
    files = month(tmp_path, Scope.PLANT, "甲水泥", month_dsn)
    assert files.xlsx.name == "report-monthly-2024-06-plant-甲水泥.xlsx"

    stacks = sheet(files.xlsx, "排放口 Stacks")
    assert [r[STACK] for r in stacks] == ["K1", "K2"]  # 乙电厂 / 丙钢铁 stacks not in the plant
    # K1: 720 − 24 (06-28) = 696 hours with data; K2: 06-11..06-30 = 20 × 24 = 480
    assert by(stacks, **{STACK: "K1"})["有数据小时 hours with data"] == 696
    assert by(stacks, **{STACK: "K2"})["有数据小时 hours with data"] == 480

    comp = sheet(files.xlsx, "达标 Compliance")
    kind = "限值类别 limit kind"
    so2_ule = by(comp, **{STACK: "K1", FACTOR: SO2, kind: "超低排放限值 ultra-low limit"})
    # K1 SO2: 696 rows − 24 stopped − 10 invalid = 662 judged; 3 + 1 above 35; 658 within
    assert so2_ule["限值 limit (mg/m³)"] == 35
    assert so2_ule["基准氧 ref O2 (%)"] == 10
    assert so2_ule["判定小时 judged h"] == 662
    assert so2_ule["超限小时 exceedance h"] == 4
    assert so2_ule["达标小时 within h"] == 658
    assert so2_ule["无效小时 invalid h"] == 10
    assert so2_ule["停运小时 stopped h"] == 24
    assert so2_ule["达标率 conformity (%)"] == pytest.approx(100 * 658 / 662)
    assert so2_ule["满足95% meets 95 %"] == "是 yes"
    assert so2_ule["最大值 max"] == 120.0
    # 662 judged = 658 at 20.0 + 3 at 40.0 + 1 at 120.0 → (13160 + 120 + 120) / 662
    assert so2_ule["均值 mean"] == pytest.approx((658 * 20.0 + 3 * 40.0 + 120.0) / 662)
    so2_std = by(comp, **{STACK: "K1", FACTOR: SO2, kind: "排放标准 emission standard"})
    # only 06-15 08:00 (120.0) is above 100
    assert (so2_std["判定小时 judged h"], so2_std["超限小时 exceedance h"]) == (662, 1)
    nox = by(comp, **{STACK: "K1", FACTOR: NOX})
    # 696 − 24 stopped = 672 judged; 45.0 > 40 (80 % of 50) twice; 40.0 is not above 40
    assert (nox["判定小时 judged h"], nox["预警小时 warning h"], nox["超限小时 exceedance h"]) \
        == (672, 2, 0)
    assert nox["达标率 conformity (%)"] == 100
    k2 = by(comp, **{STACK: "K2", FACTOR: DUST})
    assert (k2["判定小时 judged h"], k2["超限小时 exceedance h"]) == (480, 2)
    assert k2["基准 basis"] == "实测"

    cap = sheet(files.xlsx, "捕集率 Capture")
    c = by(cap, **{STACK: "K1", FACTOR: SO2})
    # counted 720, stopped 24 → running 696; valid 662; missing 24 (06-28); invalid 10
    assert (c["统计小时 counted h"], c["停运小时 stopped h"], c["应运行小时 running h"],
            c["有效小时 valid h"], c["缺失小时 missing h"], c["无效小时 invalid h"]) \
        == (720, 24, 696, 662, 24, 10)
    assert c["捕集率 capture rate (%)"] == pytest.approx(100 * 662 / 696)  # 95.11 %
    c = by(cap, **{STACK: "K1", FACTOR: NOX})
    assert c["捕集率 capture rate (%)"] == pytest.approx(100 * 672 / 696)  # 96.55 %
    c = by(cap, **{STACK: "K2", FACTOR: DUST})
    # counted from the first data hour 06-11 00:00: 20 days × 24 = 480, all valid
    assert (c["统计小时 counted h"], c["有效小时 valid h"], c["捕集率 capture rate (%)"]) \
        == (480, 480, 100)

    # the dashboards' views (migration 0006) give the same month figures
    with psycopg.connect(month_dsn) as conn:
        view = conn.execute(
            "SELECT valid_hours, running_hours, capture_pct FROM capture_rate WHERE stack_id = "
            "'K1' AND factor = 'a21026' AND granularity = 'month' AND period_start = %s",
            (bj(6, 1),)).fetchone()
        conformity = conn.execute(
            "SELECT judged_hours, exceedance_hours FROM conformity_monthly WHERE stack_id = "
            "'K1' AND factor = 'a21026' AND kind = 'ultra_low' AND period_start = %s",
            (bj(6, 1),)).fetchone()
    assert view is not None and (view[0], view[1]) == (662, 696)
    assert float(view[2]) == pytest.approx(100 * 662 / 696)
    assert conformity == (662, 4)

    em = sheet(files.xlsx, "排放量 Emissions")
    e = by(em, **{STACK: "K1", FACTOR: SO2})
    # 658 × 1.5 + 4 × 3.0 = 987 + 12 = 999 kg (the May and July hours excluded)
    assert e["排放量 emission (kg)"] == pytest.approx(999.0)
    assert e["有排放量小时 hours with mass"] == 662
    # 29 closed days (not 06-28); valid: not 06-25 (stopped) nor 06-20 (14 valid hours)
    assert (e["已结算日 closed days"], e["有效日 valid days"]) == (29, 27)
    e = by(em, **{STACK: "K1", FACTOR: NOX})
    assert e["排放量 emission (kg)"] == pytest.approx(672 * 2.0)  # 1344 kg
    assert (e["已结算日 closed days"], e["有效日 valid days"]) == (29, 28)
    e = by(em, **{STACK: "K2", FACTOR: DUST})
    assert e["排放量 emission (kg)"] == pytest.approx(480 * 0.25)  # 120 kg

    totals = {r[FACTOR]: r["排放量 emission (kg)"] for r in sheet(files.xlsx, "排放合计 Totals")}
    assert totals == pytest.approx({SO2: 999.0, NOX: 1344.0, DUST: 120.0})

    alerts = sheet(files.xlsx, "报警 Alerts")
    # A1, A2 and the suppressed A5 at K1; K2 had none
    assert [(a["规则 rule"], a["状态 state"]) for a in alerts] == [
        ("hour_exceedance", "已恢复"), ("hour_exceedance", "已恢复"), ("hour_incomplete", "已抑制")
    ]
    a1 = alerts[0]
    assert a1["开始 first seen"] == datetime(2024, 6, 3, 11)  # Beijing, end of the 10:00 hour
    assert a1["恢复 cleared at"] == datetime(2024, 6, 3, 15)
    assert (a1["确认人 acked by"], a1["确认原因 ack reason"]) == \
        ("张工 Zhang", "增加脱硫剂 more sorbent")
    assert a1["确认时间 acked at"] == datetime(2024, 6, 3, 11, 20)
    assert alerts[1]["确认次数 acknowledgements"] == 0
    assert alerts[1]["级别 severity"] == "严重"

    daily = sheet(files.xlsx, "日统计 Daily")
    d = by(daily, **{STACK: "K1", FACTOR: SO2, "日期 day (UTC+8)": datetime(2024, 6, 3)})
    # 06-03: 24 valid hours, 3 above a limit, 21 × 1.5 + 3 × 3.0 = 40.5 kg, a valid day
    assert (d["有效小时 valid h"], d["超限小时 exceedance h"]) == (24, 3)
    assert d["日排放量 day mass (kg)"] == pytest.approx(40.5)
    assert d["日排放量有效 day total valid"] == "是 yes"
    d = by(daily, **{STACK: "K1", FACTOR: SO2, "日期 day (UTC+8)": datetime(2024, 6, 20)})
    assert (d["有效小时 valid h"], d["日排放量 day mass (kg)"], d["日排放量有效 day total valid"]) \
        == (14, pytest.approx(21.0), "否 no")

    hourly = sheet(files.xlsx, "小时数据 Hourly")
    # 696 + 696 (K1) + 480 (K2) rows, none outside June
    assert len(hourly) == 696 + 696 + 480
    hours = [r["时段开始 hour (UTC+8)"] for r in hourly]
    assert min(hours) == datetime(2024, 6, 1, 0) and max(hours) == datetime(2024, 6, 30, 23)

    # the HTML shows the same numbers
    tables = html_tables(files.html)
    row = next(r for r in tables["capture"] if r["stack_id"].endswith("K1") and
               r["factor"].endswith(SO2))
    assert row["capture"] == "95.11%"  # 100 × 662 / 696 = 95.114…
    # scope totals in factor-code order: a21002 NOx, a21026 SO2, a34013 dust
    assert [r["total_kg"] for r in tables["emissions"] if "total_kg" in r] == \
        ["1,344.00", "999.00", "120.00"]
    html = files.html.read_text(encoding="utf-8")
    assert "张工 Zhang：增加脱硫剂 more sorbent" in html
    assert "data:image/svg+xml;base64," in html


def test_monthly_scopes_select_their_stacks(month_dsn: str, tmp_path: Path) -> None:
    expected = {
        # scope: (stacks, SO2 kg, dust kg, alerts)
        (Scope.STACK, "K1"): (["K1"], 999.0, None, 3),
        (Scope.CITY, "Zhengzhou"): (["K1", "K2", "B1"], 999.0 + 720 * 1.0, 120.0, 3),
        (Scope.CITY, "Luoyang"): (["G1"], None, 720 * 0.5, 1),
        # all: + G1's 360 kg dust; A3 (first seen 07-01 00:00, the end of June's last hour)
        # is a June alert, A4 (cleared exactly at June's start) is not
        (Scope.ALL, None): (["K1", "K2", "B1", "G1"], 1719.0, 480.0, 4),
    }
    for (scope, value), (stacks, so2, dust, n_alerts) in expected.items():
        files = month(tmp_path / scope.value, scope, value, month_dsn)
        ids = {r[STACK] for r in sheet(files.xlsx, "排放口 Stacks")}
        assert ids == set(stacks), scope
        totals = {r[FACTOR]: r["排放量 emission (kg)"]
                  for r in sheet(files.xlsx, "排放合计 Totals")}
        assert totals.get(SO2) == (pytest.approx(so2) if so2 else None), scope
        assert totals.get(DUST) == (pytest.approx(dust) if dust else None), scope
        assert len(sheet(files.xlsx, "报警 Alerts")) == n_alerts, scope
    g1 = by(sheet(files.xlsx, "达标 Compliance"), **{STACK: "G1"})
    # 720 judged at 16 % O2, the last hour of June (11.0) above 10
    assert (g1["判定小时 judged h"], g1["超限小时 exceedance h"], g1["基准氧 ref O2 (%)"]) \
        == (720, 1, 16)


def test_daily_report_of_one_stack(month_dsn: str, tmp_path: Path) -> None:
    params = ReportParams(period=daily_period(date(2024, 6, 3)), scope=Scope.STACK, value="K1")
    files = generate_report(month_dsn, params, tmp_path, NOW)
    assert files.pdf.name == "report-daily-2024-06-03-stack-K1.pdf"
    comp = sheet(files.xlsx, "达标 Compliance")
    so2 = by(comp, **{FACTOR: SO2, "限值类别 limit kind": "超低排放限值 ultra-low limit"})
    # 24 judged hours, 10:00, 11:00, 12:00 above 35; 21/24 = 87.5 %
    assert (so2["判定小时 judged h"], so2["超限小时 exceedance h"]) == (24, 3)
    assert so2["达标率 conformity (%)"] == pytest.approx(87.5)
    assert so2["满足95% meets 95 %"] == "否 no"
    cap = by(sheet(files.xlsx, "捕集率 Capture"), **{FACTOR: SO2})
    assert (cap["统计小时 counted h"], cap["有效小时 valid h"], cap["捕集率 capture rate (%)"]) \
        == (24, 24, 100)
    em = {r[FACTOR]: r["排放量 emission (kg)"] for r in sheet(files.xlsx, "排放量 Emissions")}
    # SO2 21 × 1.5 + 3 × 3.0 = 40.5; NOx 24 × 2.0 = 48
    assert em == pytest.approx({SO2: 40.5, NOX: 48.0})
    alerts = sheet(files.xlsx, "报警 Alerts")
    assert [a["开始 first seen"] for a in alerts] == [datetime(2024, 6, 3, 11)]  # A1 only
    tables = html_tables(files.html)
    so2_row = next(r for r in tables["compliance"] if r["factor"].endswith(SO2)
                   and "35" in r["limit"])
    assert (so2_row["judged"], so2_row["exceedance"], so2_row["conformity"]) \
        == ("24", "3", "87.50%")
    assert [r["kg"] for r in tables["emissions"] if "kg" in r] == ["48.00", "40.50"]  # NOx, SO2


def test_daily_plant_report_counts_invalid_hours_against_capture(month_dsn: str,
                                                                tmp_path: Path) -> None:
    params = ReportParams(period=daily_period(date(2024, 6, 20)), scope=Scope.PLANT,
                          value="甲水泥")
    files = generate_report(month_dsn, params, tmp_path, NOW)
    cap = sheet(files.xlsx, "捕集率 Capture")
    k1 = by(cap, **{STACK: "K1", FACTOR: SO2})
    # 00:00–09:00 invalid: 14 valid of 24 → 58.33 %
    assert (k1["有效小时 valid h"], k1["无效小时 invalid h"]) == (14, 10)
    assert k1["捕集率 capture rate (%)"] == pytest.approx(100 * 14 / 24)
    assert by(cap, **{STACK: "K2", FACTOR: DUST})["捕集率 capture rate (%)"] == 100
    daily = by(sheet(files.xlsx, "日统计 Daily"), **{STACK: "K1", FACTOR: SO2})
    assert (daily["日排放量 day mass (kg)"], daily["日排放量有效 day total valid"]) \
        == (pytest.approx(14 * 1.5), "否 no")  # 21 kg, day not valid (14 < 20 h)
    # the suppressed calibration alert A5 (first seen 06-20 01:00)
    assert [a["状态 state"] for a in sheet(files.xlsx, "报警 Alerts")] == ["已抑制"]


def test_unknown_scope_is_refused(month_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(ScopeNotFoundError, match="丁化工"):
        month(tmp_path, Scope.PLANT, "丁化工", month_dsn)
    assert not list(tmp_path.iterdir())


def test_cli_writes_three_files_and_the_pdf_page_renders(month_dsn: str,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "monthly", "--month", "2024-06", "--city",
                                      "Zhengzhou", "--out", str(out), "--dsn", month_dsn])
    assert result.exit_code == 0, result.output
    stem = "report-monthly-2024-06-city-Zhengzhou"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.html", f"{stem}.pdf",
                                                     f"{stem}.xlsx"]
    assert f"  PDF   {out / stem}.pdf\n" in result.output  # one line, copyable

    pdf = pypdfium2.PdfDocument(out / f"{stem}.pdf")
    try:
        assert len(pdf) >= 3
        first = pdf[0]
        width, height = first.get_size()
        assert (round(width), round(height)) == (595, 842)  # A4 in points
        image = first.render(scale=150 / 72).to_pil()
    finally:
        pdf.close()
    # A4 (210 × 297 mm) at 150 dpi: 1240.2 × 1753.9 px, rounded either way by the renderer
    assert abs(image.size[0] - 1240) <= 1 and abs(image.size[1] - 1754) <= 1
    grey = image.convert("L")
    extrema = grey.getextrema()
    assert extrema[0] < 60 and extrema[1] > 240  # dark text on a white page
    histogram = grey.histogram()
    ink = sum(histogram[:200]) / (image.size[0] * image.size[1])
    assert 0.01 < ink < 0.5  # neither blank nor a black page
    png = tmp_path / "report-page.png"
    image.save(png)
    docs_dir = os.environ.get("STACKWATCH_DOCS_IMG")
    if docs_dir:  # documented command: docs/reports.md "Regenerating the screenshot"
        shutil.copyfile(png, REPO / docs_dir / "report-page.png")


def test_cli_refuses_two_scopes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "daily", "--date", "2024-06-03", "--stack",
                                      "K1", "--plant", "甲水泥", "--out", str(tmp_path),
                                      "--dsn", "postgresql://127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "at most one of --stack, --plant and --city" in result.output
    result = CliRunner().invoke(app, ["report", "monthly", "--month", "2024-13", "--dsn",
                                      "postgresql://127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "YYYY-MM" in result.output
