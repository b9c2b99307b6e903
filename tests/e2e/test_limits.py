"""Limits judged end to end: the 1.5 mg/m³ workshop dust hour and a stack under two programs.

Gateway, worker and sinks run as subprocesses on real Tansu and PostgreSQL 18 (the harness of
tests/e2e/pipeline.py); simulated loggers upload 5-minute data over TCP for the Beijing day
2026-03-02 and the first ten minutes of the next (which close the day):

* W1 — a Sanmenxia grinding-station mill/packaging workshop dust point (area point, measured
  basis, value 1.5 mg/m³): hour 10:00–11:00 at 2.5 mg/m³, every other hour at 0.8. A real
  monitor wobbles, so the records alternate level ∓ 0.05: each hour's mean is its level.
* W2 — a second workshop point at 0.8 all the time.
* YQ — a Yangquan coal-fired boiler: SO2 alternating 130/140 (measured mean 135) at O2 12 %.
  Its ultra-low target B2 is 35 at 6 % O2: 135 × (21 − 6)/(21 − 12) = 225 > 35, 超过超低排放
  限值; its legal limit B3 (GB 13271-2014 special) is 200 at 9 %: 135 × 12/9 = 180, 预警.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from simulators.client import LoggerClient
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, decode_frame
from stackwatch.registry import StackInfo, StackRegistry
from tests.e2e.pipeline import Pipeline, fresh_database, migrate, settle

pytestmark = pytest.mark.e2e

PM, SO2, O2 = "a34013", "a21026", "a19001"
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=CST)
H10 = T0 + timedelta(hours=10)
STEP = timedelta(minutes=5)
RECORDS = 24 * 12 + 3  # 00:00 … 23:55, then 00:00, 00:05, 00:10 of the next day
W1 = StackInfo(stack_id="smx-mill-ws-1", mn="41120001WS00001", password="w1-pw",
               sector="cement", process="grinding_workshop", province="河南", city="三门峡",
               min_interval_min=5)
W2 = StackInfo(stack_id="smx-pack-ws-2", mn="41120001WS00002", password="w2-pw",
               sector="cement", process="grinding_workshop", province="河南", city="三门峡",
               min_interval_min=5)
YQ = StackInfo(stack_id="yq-boiler-1", mn="14030001BL00001", password="yq-pw",
               sector="boiler", process="coal_boiler", province="山西", city="阳泉",
               min_interval_min=5)


def wobble(level: float, i: int) -> float:
    return round(level + (0.05 if i % 2 else -0.05), 2)


def w1_dust(i: int) -> float:
    return wobble(2.5 if i // 12 == 10 else 0.8, i)


def frame(stack: StackInfo, i: int, values: dict[str, dict[str, float]]) -> str:
    t = T0 + i * STEP
    pw = stack.password.get_secret_value() if stack.password else ""
    (text,) = build_frames("2051", stack.mn, pw, t, values, ack=True, now=t + STEP)
    return text


def uploads(stack: StackInfo) -> list[str]:
    if stack is W1:
        return [frame(W1, i, {PM: {"Avg": w1_dust(i)}}) for i in range(RECORDS)]
    if stack is W2:
        return [frame(W2, i, {PM: {"Avg": wobble(0.8, i)}}) for i in range(RECORDS)]
    return [frame(YQ, i, {SO2: {"Avg": 130.0 if i % 2 == 0 else 140.0}, O2: {"Avg": 12.0}})
            for i in range(RECORDS)]


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, pg_dsn: str,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("limits")
    dsn = fresh_database(pg_dsn)
    migrate(dsn)
    pipe = Pipeline(bootstrap=kafka_bootstrap, dsn=dsn, prefix=f"l.{uuid.uuid4().hex[:10]}",
                    tmp=tmp, registry=StackRegistry(stacks=[W1, W2, YQ]))
    try:
        await pipe.start_all()

        async def feed(stack: StackInfo) -> None:
            client = LoggerClient("127.0.0.1", pipe.gateway_port, mn=stack.mn, ack_timeout=5,
                                  retries=100)
            try:
                for text in uploads(stack):
                    await client.send(text, ack=True, qn=decode_frame(text).qn)
            finally:
                await client.close()

        await asyncio.gather(feed(W1), feed(W2), feed(YQ))

        def done(counts: dict[str, int]) -> bool:
            # W1, W2: PM; YQ: SO2 and O2 — 24 hours and one day each
            return counts.get("hour_aggregates", 0) >= 4 * 24 and counts.get(
                "day_aggregates", 0
            ) >= 4

        await settle(dsn, done=done, quiet_s=6.0, timeout_s=300.0, alive=pipe.children.values())
        with psycopg.connect(dsn, autocommit=True) as conn:
            verdicts = conn.execute(
                "SELECT stack_id, factor, period_start, program, kind, row_id, status, level,"
                " term_zh, value, basis, ref_o2, limit_mg_m3 FROM limit_verdicts"
                " WHERE period = 'hour' ORDER BY stack_id, period_start, kind"
            ).fetchall()
            alerts = conn.execute(
                "SELECT stack_id, factor, rule, severity, state, first_seen, cleared_at,"
                " peak_value, limit_value, evidence->>'limit_kind', evidence->>'term_zh'"
                " FROM alerts ORDER BY stack_id, rule"
            ).fetchall()
            conformity = conn.execute(
                "SELECT stack_id, program, kind, judged_hours, compliant_hours,"
                " exceedance_hours, meets_95 FROM conformity_monthly ORDER BY 1, 2"
            ).fetchall()
            capture = conn.execute(
                "SELECT stack_id, factor, valid_hours, period_hours, running_hours, capture_pct"
                " FROM capture_rate WHERE granularity = 'month' ORDER BY 1, 2"
            ).fetchall()
            days = conn.execute(
                "SELECT stack_id, factor, valid, valid_count, mean, zs_mean, mass_valid"
                " FROM day_aggregates ORDER BY 1, 2"
            ).fetchall()
        yield {"verdicts": verdicts, "alerts": alerts, "conformity": conformity,
               "capture": capture, "days": days, "dsn": dsn}
    finally:
        pipe.stop_all()


def _verdicts(run: dict[str, Any], stack: str) -> list[tuple[Any, ...]]:
    return [v for v in run["verdicts"] if v[0] == stack]


def test_the_workshop_hour_at_2_5_is_an_hourly_exceedance_with_its_compliance_row(
    run: dict[str, Any],
) -> None:
    rows = _verdicts(run, W1.stack_id)
    assert [r[2] for r in rows] == [T0 + timedelta(hours=h) for h in range(24)]
    first = rows[10]
    assert first[2] == H10
    assert first[4:9] == ("fugitive", first[5], "exceedance", "above_fugitive",
                          "超过车间扬尘控制值")
    assert first[9] == pytest.approx(2.5)
    assert (first[10], first[11], first[12]) == ("measured", None, 1.5)
    others = rows[:10] + rows[11:]
    assert [r[6] for r in others] == ["compliant"] * 23
    assert all(r[9] == pytest.approx(0.8) for r in others)


def test_the_workshop_alert_is_raised_for_the_hour_and_cleared_after_normal_hours(
    run: dict[str, Any],
) -> None:
    hourly = [a for a in run["alerts"] if a[0] == W1.stack_id and a[2] == "hour_exceedance"]
    assert len(hourly) == 1
    (_, factor, _, severity, state, first_seen, cleared_at, peak, limit, kind, term) = hourly[0]
    assert (factor, severity, state) == (PM, "alarm", "cleared")
    assert first_seen == H10 + timedelta(hours=1)  # the hour's end: its verdict's event time
    # cleared after the hold (1 h by default): at the end of the second compliant hour
    assert cleared_at == H10 + timedelta(hours=3)
    assert peak == pytest.approx(2.5) and limit == 1.5
    assert (kind, term) == ("fugitive", "超过车间扬尘控制值")
    # The real-time (rolling hour) check used the same value: it alarmed too, never
    # contradicting the hour.
    rolling = [a for a in run["alerts"]
               if a[0] == W1.stack_id and a[2] == "provisional_exceedance"]
    assert rolling and all(a[8] == 1.5 for a in rolling)


def test_the_workshop_at_0_8_raises_nothing(run: dict[str, Any]) -> None:
    assert not [a for a in run["alerts"] if a[0] == W2.stack_id]
    rows = _verdicts(run, W2.stack_id)
    assert len(rows) == 24 and {r[6] for r in rows} == {"compliant"}


def test_the_boiler_hour_is_judged_against_both_programs_on_their_own_o2(
    run: dict[str, Any],
) -> None:
    first_hour = [r for r in _verdicts(run, YQ.stack_id) if r[1] == SO2 and r[2] == H10]
    by_row = {r[5]: r for r in first_hour}
    assert set(by_row) == {"B2", "B3"}
    b2, b3 = by_row["B2"], by_row["B3"]
    assert (b2[4], b2[6], b2[8], b2[11], b2[12]) == (
        "ultra_low", "exceedance", "超过超低排放限值", 6.0, 35.0
    )
    assert b2[9] == pytest.approx(225.0)
    assert (b3[4], b3[6], b3[8], b3[11], b3[12]) == ("standard", "warning", "预警", 9.0, 200.0)
    assert b3[9] == pytest.approx(180.0)
    alert = [a for a in run["alerts"] if a[0] == YQ.stack_id and a[2] == "hour_exceedance"]
    assert len(alert) == 1 and alert[0][3] == "alarm" and alert[0][9] == "ultra_low"


def test_monthly_conformity_and_capture_rate_rows(run: dict[str, Any]) -> None:
    conformity = {(r[0], r[2]): r for r in run["conformity"]}
    # W1: 24 judged hours, 23 within, 1 above → 95.83 %: meets (20 × 23 = 460 ≥ 19 × 24 = 456).
    assert conformity[(W1.stack_id, "fugitive")][3:] == (24, 23, 1, True)
    assert conformity[(W2.stack_id, "fugitive")][3:] == (24, 24, 0, True)
    # YQ: every hour 225 at 6 %: all above the target; at 9 % 180, within the standard.
    assert conformity[(YQ.stack_id, "ultra_low")][3:] == (24, 0, 24, False)
    assert conformity[(YQ.stack_id, "standard")][3:] == (24, 24, 0, True)
    capture = {(r[0], r[1]): r for r in run["capture"]}
    # The first hour is 2026-03-02 00:00; March ends 2026-04-01 00:00: 30 × 24 = 720 h.
    # 24 valid hours, nothing stopped: α = 24/720 = 3.33 %.
    valid, period, running, pct = capture[(W1.stack_id, PM)][2:]
    assert (valid, period, running) == (24, 720, 720)
    assert float(pct) == pytest.approx(100 * 24 / 720)


def test_the_days_are_valid_with_their_hand_computed_means(run: dict[str, Any]) -> None:
    days = {(r[0], r[1]): r[2:] for r in run["days"]}
    valid, hours, mean, _, _ = days[(W1.stack_id, PM)]
    # (2.5 + 23 × 0.8) / 24 = 20.9 / 24
    assert (valid, hours) == (True, 24) and mean == pytest.approx(20.9 / 24)
    valid, hours, mean, zs_mean, _ = days[(YQ.stack_id, SO2)]
    assert (valid, hours) == (True, 24)
    assert mean == pytest.approx(135.0) and zs_mean == pytest.approx(225.0)


def test_the_hours_show_in_the_compliance_dashboard(run: dict[str, Any]) -> None:
    from sinks.db import connect
    from tests.integration.test_dashboards import (
        Db,
        TimeRange,
        panel_query,
        records,
        run_query,
    )

    with connect(run["dsn"], autocommit=True) as conn:
        [above] = run_query(
            panel_query("stackwatch-compliance", "above or near a limit"),
            Db(conn, timescaledb=False),
            time_range=TimeRange(T0, T0 + timedelta(days=1)),
        )
    cells = {(r["排放口 stack"], r["time"], r["判定 level"]) for r in records(above)}
    assert {c for c in cells if c[0] == W1.stack_id} == {(W1.stack_id, H10, "above_fugitive")}
    assert not [c for c in cells if c[0] == W2.stack_id]
    o2_basis = {r["基准氧 O2 basis"] for r in records(above) if r["排放口 stack"] == W1.stack_id}
    assert o2_basis == {"实测 measured"}


def test_the_day_ends_with_exactly_the_expected_limit_alerts(run: dict[str, Any]) -> None:
    """Of the limit rules, only two alerts: W1's workshop hour (cleared) and YQ's ultra-low
    exceedance (every hour 225 > 35 at 6 %, still active). YQ at 9 % is 180 ≤ 200: no 超标,
    no critical; no daily limit applies (no day_exceedance); no permit cap (no permit_cap);
    W2 at 0.8 raises nothing."""
    limit_rules = {"hour_exceedance", "hour_warning", "day_exceedance", "permit_cap"}
    got = sorted(
        (a[0], a[2], a[3], a[4], a[9], a[10]) for a in run["alerts"] if a[2] in limit_rules
    )
    assert got == [
        (W1.stack_id, "hour_exceedance", "alarm", "cleared", "fugitive", "超过车间扬尘控制值"),
        (YQ.stack_id, "hour_exceedance", "alarm", "active", "ultra_low", "超过超低排放限值"),
    ]
    assert not [a for a in run["alerts"] if a[3] == "critical"]
    # With the two real-time (rolling hour) alarms on the same limits, that is the whole day:
    # W1's cleared once the rolling mean was back under 1.5, YQ's still active.
    assert sorted((a[0], a[2], a[4]) for a in run["alerts"]) == [
        (W1.stack_id, "hour_exceedance", "cleared"),
        (W1.stack_id, "provisional_exceedance", "cleared"),
        (YQ.stack_id, "hour_exceedance", "active"),
        (YQ.stack_id, "provisional_exceedance", "active"),
    ]
