"""Demo rows for the dashboard tests: one Beijing day of a few stacks, with known answers.

The day is 2025-06-01 in Beijing time (UTC+8), i.e. 2025-05-31T16:00Z … 2025-06-01T16:00Z
(`DAY_START` … `DAY_END`). Every value is chosen so the dashboards' answers can be worked out by
hand (the tests write the arithmetic next to each expected value):

* six stacks across four cities (one without a city), five sectors;
* per stack five factors — PM a34013 (4.0 mg/m³), SO2 a21026 (12.0), NOx a21002 (20.0), O2
  a19001 (15.0 %) and flow a00000 (100.0) — hourly and minute rows for all 24 hours; stacks
  with a reference O2 store the converted value zs_mean = 1.5 × mean (a fixed factor, not a
  computed O2 correction: the dashboards only read it); pollutant hours carry mass_kg = 0.5 and
  the limit of that hour;
* ay-sinter-1 SO2 exceeds in Beijing hours 22 and 23 (mean 30.0 → converted 45.0 > 35);
* smx-cement-mill-1 PM is calibrating in Beijing hour 23 (flag C, invalid, every minute too);
* limit verdicts (limit_verdicts) of every hour with a limit, for its ultra-low program, and
  for ay-sinter-1 SO2 also the legal standard GB 28662 (180 mg/m³, measured basis); a verdict
  is an exceedance when the converted (else measured) value is above the limit, a warning above
  80 % of it: ay-sinter-1 SO2 hours 22–23 (45 > 35) and mobile-boiler-1 PM all day (converted
  4.0 × 1.5 = 6.0 > 5.0) exceed, nothing is in the warning band;
* one day_aggregates row per stack and pollutant (mean of the valid hours, valid with ≥ 20
  valid hours, mass = 24 × 0.5 kg);
* alerts in each lifecycle state, with events, two acknowledged (25 and 10 minutes to ack),
  notifications, dead letters and raw frames.

Stack states the Overview must show: ay-sinter-1 alarm (active hour_exceedance),
ay-pellet-1 warning (acknowledged hour_warning), xz-coke-oven-1 offline (active offline),
smx-cement-mill-1 calibration (latest hour flag C; its only alert is cleared),
zz-anode-baking-1 and mobile-boiler-1 normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

DAY_START = datetime(2025, 5, 31, 16, 0, tzinfo=UTC)  # 2025-06-01 00:00 Beijing
DAY_END = DAY_START + timedelta(days=1)

PM, SO2, NOX, O2, FLOW = "a34013", "a21026", "a21002", "a19001", "a00000"
POLLUTANTS = (PM, SO2, NOX)
BASE_MEAN = {PM: 4.0, SO2: 12.0, NOX: 20.0, O2: 15.0, FLOW: 100.0}
ZS_FACTOR = 1.5
HOUR_MASS_KG = 0.5


@dataclass(frozen=True)
class DemoStack:
    """One registry row plus the limits/reference O2 its hour rows carry."""

    stack_id: str
    mn: str
    name: str
    plant: str
    city: str | None
    province: str | None
    sector: str
    process: str
    program: str
    ref_o2: float | None
    limits: dict[str, float] = field(default_factory=dict)


STACKS = (
    DemoStack(
        "ay-sinter-1",
        "410506AYS00001",
        "Sinter machine head",
        "Anyang steel works",
        "Anyang",
        "Henan",
        "steel",
        "sinter",
        "NATL-2019-STEEL-ULE",
        16.0,
        {PM: 10.0, SO2: 35.0, NOX: 50.0},
    ),
    DemoStack(
        "ay-pellet-1",
        "410506AYS00002",
        "Pellet induration",
        "Anyang steel works",
        "Anyang",
        "Henan",
        "steel",
        "pellet",
        "NATL-2019-STEEL-ULE",
        18.0,
        {PM: 10.0, SO2: 35.0, NOX: 50.0},
    ),
    DemoStack(
        "xz-coke-oven-1",
        "140902XZC00001",
        "Coke oven stack",
        "Xinzhou coking plant",
        "Xinzhou",
        "Shanxi",
        "coking",
        "coke_oven_stack",
        "NATL-2024-COKING-ULE",
        8.0,
        {PM: 10.0, SO2: 30.0, NOX: 150.0},
    ),
    DemoStack(
        "smx-cement-mill-1",
        "411202SMX00001",
        "Cement mill main dust collector",
        "Sanmenxia cement grinding station",
        "Sanmenxia",
        "Henan",
        "cement",
        "cement_mill",
        "NATL-2024-CEMENT-ULE",
        None,
        {PM: 10.0},
    ),
    DemoStack(
        "zz-anode-baking-1",
        "410183ZZC00001",
        "Anode baking furnace",
        "Zhengzhou carbon anode plant",
        "Zhengzhou",
        "Henan",
        "carbon",
        "anode_baking",
        "DEMO-UNCONFIRMED",
        None,
        {PM: 10.0, SO2: 35.0, NOX: 100.0},
    ),
    DemoStack(
        "mobile-boiler-1",
        "000000TEST0001",
        "Test boiler (no city)",
        "Unassigned boiler house",
        None,
        None,
        "boiler",
        "gas_boiler",
        "DEMO-UNCONFIRMED",
        3.5,
        {PM: 5.0, SO2: 35.0, NOX: 50.0},
    ),
)

#: (stack, factor) → {Beijing hour index: (mean, flag, valid, invalid_reason)}
SPECIAL_HOURS: dict[tuple[str, str], dict[int, tuple[float | None, str, bool, str | None]]] = {
    ("ay-sinter-1", SO2): {22: (30.0, "N", True, None), 23: (30.0, "N", True, None)},
    ("smx-cement-mill-1", PM): {23: (None, "C", False, "calibration (flag C)")},
}

EXPECTED_STATES = {
    "ay-sinter-1": "alarm",
    "ay-pellet-1": "warning",
    "xz-coke-oven-1": "offline",
    "smx-cement-mill-1": "calibration",
    "zz-anode-baking-1": "normal",
    "mobile-boiler-1": "normal",
}


def at(hour: int, minute: int = 0) -> datetime:
    """UTC instant of Beijing `hour:minute` on the demo day."""
    return DAY_START + timedelta(hours=hour, minutes=minute)


@dataclass(frozen=True)
class DemoAlert:
    alert_id: str
    stack_id: str
    factor: str | None
    rule: str
    severity: str
    state: str
    first_seen: datetime
    last_seen: datetime
    cleared_at: datetime | None
    peak_value: float | None
    limit_value: float | None
    count: int
    acked_by: str | None
    acked_at: datetime | None
    events: tuple[tuple[str, datetime], ...]
    #: What the pipeline records of the deciding limit (stackwatch.alerts.verdict_evidence).
    evidence: dict[str, Any] = field(default_factory=dict)


ALERTS = (
    # SO2 hours 22 and 23 exceed: raised when hour 22 closes, updated when hour 23 closes.
    DemoAlert(
        "a1-sinter-so2",
        "ay-sinter-1",
        SO2,
        "hour_exceedance",
        "alarm",
        "active",
        at(23),
        at(24),
        None,
        45.0,
        35.0,
        2,
        None,
        None,
        (("raise", at(23)), ("update", at(24))),
        # 45 > the ultra-low 35 but ≤ the GB 28662 standard 180: 超过超低排放限值, not 超标
        {"limit_kind": "ultra_low", "level": "above_ultra_low", "term_zh": "超过超低排放限值"},
    ),
    DemoAlert(
        "a2-pellet-so2-warn",
        "ay-pellet-1",
        SO2,
        "hour_warning",
        "warning",
        "acknowledged",
        at(18),
        at(19),
        None,
        30.0,
        35.0,
        2,
        "inspector.li",
        at(18, 25),
        (("raise", at(18)), ("ack", at(18, 25)), ("update", at(19))),
    ),
    DemoAlert(
        "a3-coke-offline",
        "xz-coke-oven-1",
        None,
        "offline",
        "alarm",
        "active",
        at(20),
        at(20),
        None,
        None,
        None,
        1,
        None,
        None,
        (("raise", at(20)),),
    ),
    DemoAlert(
        "a4-mill-flatline",
        "smx-cement-mill-1",
        PM,
        "flatline",
        "warning",
        "cleared",
        at(11),
        at(11, 30),
        at(12),
        4.0,
        None,
        1,
        "ops.wang",
        at(11, 10),
        (("raise", at(11)), ("ack", at(11, 10)), ("clear", at(12))),
    ),
    DemoAlert(
        "a5-anode-nox-warn",
        "zz-anode-baking-1",
        NOX,
        "hour_warning",
        "warning",
        "cleared",
        at(13),
        at(14),
        at(15),
        85.0,
        100.0,
        2,
        None,
        None,
        (("raise", at(13)), ("update", at(14)), ("clear", at(15))),
    ),
)

NOTIFICATIONS = (
    ("a1-sinter-so2", "email", "duty@example.org", "sent", 1, None, at(23), at(23, 1)),
    (
        "a1-sinter-so2",
        "webhook",
        "https://hooks.example.org/cems",
        "failed",
        3,
        "HTTP 503",
        at(23),
        None,
    ),
    (
        "a3-coke-offline",
        "webhook",
        "https://hooks.example.org/cems",
        "sent",
        1,
        None,
        at(20),
        at(20),
    ),
)

DEAD_LETTERS = (
    ("decode", "crc_mismatch", "##0101QN=1;ST=31;CN=2011&&FFFF", at(8)),
    ("decode", "crc_mismatch", "##0101QN=2;ST=31;CN=2011&&EEEE", at(8, 30)),
    ("sink", "check_violation", '{"stack_id": "x", "valid_count": -1}', at(9)),
)

RAW_FRAMES: tuple[tuple[str, str, str, str, list[str], datetime], ...] = (
    ("10.0.0.7:50123", "410506AYS00001", "2011", "rejected", ["crc_mismatch"], at(8)),
    ("10.0.0.7:50123", "410506AYS00001", "2011", "rejected", ["crc_mismatch"], at(8, 30)),
    ("10.0.0.8:40211", "411202SMX00001", "2061", "accepted", [], at(9)),
)


def hour_rows() -> list[tuple[Any, ...]]:
    """The 6 stacks × 5 factors × 24 hour_aggregates rows."""
    rows: list[tuple[Any, ...]] = []
    for stack in STACKS:
        for factor, base in BASE_MEAN.items():
            pollutant = factor in POLLUTANTS
            special = SPECIAL_HOURS.get((stack.stack_id, factor), {})
            for hour in range(24):
                mean, flag, valid, reason = special.get(hour, (base, "N", True, None))
                zs = mean * ZS_FACTOR if pollutant and stack.ref_o2 and mean is not None else None
                rows.append(
                    (
                        stack.stack_id,
                        factor,
                        at(hour),
                        mean,
                        zs,
                        mean,
                        mean,
                        60 if valid else 0,
                        60,
                        flag,
                        valid,
                        reason,
                        HOUR_MASS_KG if pollutant else None,
                        stack.ref_o2 if pollutant else None,
                        stack.limits.get(factor),
                        stack.program if factor in stack.limits else None,
                    )
                )
    return rows


_HOUR_INSERT = (
    "INSERT INTO hour_aggregates (stack_id, factor, period_start, mean, zs_mean, min, max,"
    " valid_count, total_count, flag, valid, invalid_reason, mass_kg, ref_o2, limit_mg_m3,"
    " limit_program) VALUES "
)

# Minutes repeat their hour (2 real-time values per minute at RtdInterval 30 s).
_MINUTES_FROM_HOURS = """
INSERT INTO minute_aggregates (stack_id, factor, period_start, mean, zs_mean, min, max,
    valid_count, total_count, flag, valid, invalid_reason, mass_kg, ref_o2)
SELECT h.stack_id, h.factor, h.period_start + m * interval '1 minute', h.mean, h.zs_mean,
       h.mean, h.mean, CASE WHEN h.valid THEN 2 ELSE 0 END, 2, h.flag, h.valid,
       h.invalid_reason, h.mass_kg / 60, h.ref_o2
FROM hour_aggregates h CROSS JOIN generate_series(0, 59) AS m
"""


# Every hour with a limit, judged against its program (docs/limits.md: converted value where
# the stack has a reference O2, measured otherwise; warning above 80 % of the limit).
_VERDICTS_FROM_HOURS = """
INSERT INTO limit_verdicts (stack_id, factor, period, period_start, program, kind, row_id,
    status, level, value, basis, ref_o2, limit_mg_m3, warning_mg_m3, reason)
SELECT stack_id, factor, 'hour', period_start, limit_program, 'ultra_low', 'demo',
       CASE WHEN NOT valid THEN 'invalid'
            WHEN coalesce(zs_mean, mean) > limit_mg_m3 THEN 'exceedance'
            WHEN coalesce(zs_mean, mean) > 0.8 * limit_mg_m3 THEN 'warning'
            ELSE 'compliant' END,
       CASE WHEN NOT valid THEN NULL
            WHEN coalesce(zs_mean, mean) > limit_mg_m3 THEN 'above_ultra_low'
            WHEN coalesce(zs_mean, mean) > 0.8 * limit_mg_m3 THEN 'warning'
            ELSE 'within' END,
       CASE WHEN valid THEN coalesce(zs_mean, mean) END,
       CASE WHEN zs_mean IS NULL THEN 'measured' ELSE 'converted' END,
       ref_o2, limit_mg_m3, 0.8 * limit_mg_m3, 'demo verdict'
FROM hour_aggregates WHERE limit_mg_m3 IS NOT NULL
"""

# The sinter SO2 hours against the legal standard too: GB 28662 180 mg/m³, measured basis.
_STANDARD_VERDICTS = """
INSERT INTO limit_verdicts (stack_id, factor, period, period_start, program, kind, row_id,
    status, level, value, basis, ref_o2, limit_mg_m3, warning_mg_m3, reason)
SELECT stack_id, factor, 'hour', period_start, 'GB28662-2012-special', 'standard', 'GB28662',
       'compliant', 'within', mean, 'measured', NULL, 180.0, 144.0, 'demo verdict'
FROM hour_aggregates WHERE stack_id = 'ay-sinter-1' AND factor = 'a21026'
"""

# One Beijing day per stack and pollutant; valid with >= 20 valid hours (HJ 212-2017 App. D).
_DAYS_FROM_HOURS = """
INSERT INTO day_aggregates (stack_id, factor, period_start, mean, zs_mean, min, max,
    valid_count, total_count, flag, valid, invalid_reason, mass_kg, ref_o2, mass_valid)
SELECT stack_id, factor, min(period_start), avg(mean) FILTER (WHERE valid),
       avg(zs_mean) FILTER (WHERE valid), min(mean), max(mean),
       count(*) FILTER (WHERE valid), count(*), 'N', count(*) FILTER (WHERE valid) >= 20,
       CASE WHEN count(*) FILTER (WHERE valid) < 20 THEN 'fewer than 20 valid hours' END,
       sum(mass_kg), max(ref_o2), count(*) FILTER (WHERE valid) >= 20
FROM hour_aggregates WHERE mass_kg IS NOT NULL
GROUP BY stack_id, factor
"""


def load_demo_rows(conn: psycopg.Connection[Any]) -> None:
    """Insert the demo rows into a migrated, empty database (plain or TimescaleDB mode).

    Plain INSERTs only (no COPY), so it also runs on PGlite-TimescaleDB.
    """
    with conn.transaction():
        for s in STACKS:
            conn.execute(
                "INSERT INTO stacks (stack_id, mn, name, plant, city, province, sector, process,"
                " program, rtd_interval_s, min_interval_min)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 30, 1)",
                (
                    s.stack_id,
                    s.mn,
                    s.name,
                    s.plant,
                    s.city,
                    s.province,
                    s.sector,
                    s.process,
                    s.program,
                ),
            )
        rows = hour_rows()
        placeholders = ", ".join(["(" + ", ".join(["%s"] * 16) + ")"] * len(rows))
        conn.execute(_HOUR_INSERT + placeholders, [v for row in rows for v in row])
        conn.execute(_MINUTES_FROM_HOURS)
        conn.execute(_VERDICTS_FROM_HOURS)
        conn.execute(_STANDARD_VERDICTS)
        conn.execute(_DAYS_FROM_HOURS)
        for a in ALERTS:
            conn.execute(
                "INSERT INTO alerts (alert_id, stack_id, factor, rule, severity, state,"
                " first_seen, last_seen, cleared_at, peak_value, count, limit_value, acked_by,"
                " acked_at, evidence)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    a.alert_id,
                    a.stack_id,
                    a.factor,
                    a.rule,
                    a.severity,
                    a.state,
                    a.first_seen,
                    a.last_seen,
                    a.cleared_at,
                    a.peak_value,
                    a.count,
                    a.limit_value,
                    a.acked_by,
                    a.acked_at,
                    Jsonb(a.evidence),
                ),
            )
            for seq, (event, when) in enumerate(a.events):
                payload: dict[str, str | None] = {"by": a.acked_by} if event == "ack" else {}
                conn.execute(
                    "INSERT INTO alert_events (alert_id, seq, event, at, payload)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (a.alert_id, seq, event, when, Jsonb(payload)),
                )
        for alert_id, channel, recipient, status, attempts, error, created, sent in NOTIFICATIONS:
            conn.execute(
                "INSERT INTO notifications (alert_id, channel, recipient, status, attempts,"
                " error, created_at, sent_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (alert_id, channel, recipient, status, attempts, error, created, sent),
            )
        for stage, reason, text, occurred in DEAD_LETTERS:
            conn.execute(
                "INSERT INTO dead_letters (stage, reason, payload, occurred_at)"
                " VALUES (%s, %s, %s, %s)",
                (stage, reason, text, occurred),
            )
        for peer, mn, cn, verdict, reasons, received in RAW_FRAMES:
            conn.execute(
                "INSERT INTO raw_frames (received_at, peer, mn, cn, verdict, reasons, text)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    received,
                    peer,
                    mn,
                    cn,
                    verdict,
                    reasons,
                    f"##demo;MN={mn};CN={cn};at={received.isoformat()}",
                ),
            )
