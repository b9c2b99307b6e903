"""Table targets of the storage writer: a staging table per table and the SQL that moves it.

A batch is COPY'd into a temporary staging table, then moved with `INSERT … SELECT … ON
CONFLICT` keyed on the schema's natural keys (sinks/migrations/0001_core.sql), so a redelivered
or replayed record never duplicates a row:

| topic      | table(s)                   | conflict rule                                       |
|------------|----------------------------|-----------------------------------------------------|
| raw        | raw_frames                 | (received_at, peer, md5(text)) → DO NOTHING         |
| readings   | readings (long, 1 row per factor) | (stack, factor, cn, data_time) → DO NOTHING  |
| minute/hour/day | *_aggregates          | (stack, factor, period_start) → DO UPDATE only when |
|            |                            | the new `revision` is higher (never regresses)      |
| hour/day   | limit_verdicts (1 row per  | (stack, factor, period, period_start, program, kind)|
|            | limit judged)              | → DO UPDATE only for a higher `revision`            |
| alerts     | alerts + alert_events      | events (alert_id, seq) → DO NOTHING; the alert row  |
|            |                            | is replaced only by an event newer than any stored  |
| deadletter | dead_letters               | (stage, occurred_at, md5(payload)) → DO NOTHING     |

The staging tables declare their columns (:data:`STAGE_TYPES`) rather than deriving them from
the real table: `CREATE TEMP TABLE … (LIKE raw_frames)` needs SELECT on the whole table, and
`… AS SELECT … FROM raw_frames WITH NO DATA` is a query on the frame text and dead-letter
payloads (whether it is privilege-checked without data depends on the server version).
Staging thus needs only the TEMPORARY privilege; the moves need INSERT, and UPDATE plus
SELECT on the columns an upsert reads (revised aggregates and verdicts, alerts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sinks.rows import (
    AGGREGATE_COLUMNS,
    AGGREGATE_TABLES,
    ALERT_COLUMNS,
    ALERT_EVENT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    EXTRA_COLUMNS,
    RAW_FRAME_COLUMNS,
    READING_COLUMNS,
    VERDICT_COLUMNS,
)

__all__ = ["STAGE_TYPES", "TARGETS", "Target", "column_list"]

_TIME = "timestamptz"
_FLOAT = "double precision"

#: SQL type of every staged column, as the migrations declare it in the real table (a column
#: name has one type in every table it is staged for, but see :data:`_TYPE_OVERRIDES`). No
#: constraints or defaults: the real table checks the rows when they are moved.
STAGE_TYPES: dict[str, str] = {
    # raw_frames
    "received_at": _TIME, "peer": "text", "mn": "text", "cn": "text", "verdict": "text",
    "reasons": "text[]", "text": "text", "gateway": "text", "sha256": "text",
    # readings
    "stack_id": "text", "factor": "text", "data_time": _TIME, "value": _FLOAT,
    "min_value": _FLOAT, "max_value": _FLOAT, "cou": _FLOAT, "zs_value": _FLOAT,
    "zs_min": _FLOAT, "zs_max": _FLOAT, "flag": "text", "eflag": "text", "qn": "text",
    "resent": "boolean", "st": "text",
    # minute/hour/day_aggregates
    "period_start": _TIME, "mean": _FLOAT, "zs_mean": _FLOAT, "min": _FLOAT, "max": _FLOAT,
    "valid_count": "integer", "total_count": "integer", "valid": "boolean",
    "invalid_reason": "text", "mass_kg": _FLOAT, "ref_o2": _FLOAT, "source": "text",
    "revision": "integer", "stopped": "boolean", "coverage_minutes": _FLOAT,
    "limit_mg_m3": _FLOAT, "limit_program": "text", "logger_mean": _FLOAT,
    "mass_valid": "boolean",
    # limit_verdicts
    "period": "text", "program": "text", "kind": "text", "row_id": "text", "status": "text",
    "level": "text", "term_zh": "text", "severity": "text", "basis": "text",
    "o2_from_row": "text", "warning_mg_m3": _FLOAT, "unconfirmed": "boolean", "reason": "text",
    # alerts + alert_events
    "alert_id": "text", "rule": "text", "state": "text", "first_seen": _TIME,
    "last_seen": _TIME, "cleared_at": _TIME, "peak_value": _FLOAT, "count": "integer",
    "limit_value": _FLOAT, "evidence": "jsonb", "acked_by": "text", "acked_at": _TIME,
    "ack_reason": "text", "seq": "integer", "event": "text", "at": _TIME, "payload": "jsonb",
    # dead_letters (payload: see _TYPE_OVERRIDES)
    "stage": "text", "key": "text", "occurred_at": _TIME, "details": "jsonb",
}

#: (table, column) whose type differs from :data:`STAGE_TYPES`: a dead letter's payload is
#: text (whatever the record held), an alert event's is jsonb.
_TYPE_OVERRIDES: dict[tuple[str, str], str] = {("dead_letters", "payload"): "text"}


@dataclass(frozen=True)
class Target:
    """One staging table and the statements that move its rows into the real table(s)."""

    name: str
    stage: str
    create_stage: str
    columns: tuple[str, ...]
    moves: tuple[tuple[str, str], ...]  # (table, SQL); rowcount counts for `table`


def column_list(columns: Iterable[str]) -> str:
    """`a, b, c`: a column list for SQL."""
    return ", ".join(columns)


_cols = column_list


def _create_stage(stage: str, table: str, columns: tuple[str, ...]) -> str:
    declared = ", ".join(
        f"{c} {_TYPE_OVERRIDES.get((table, c), STAGE_TYPES[c])}" for c in columns
    )
    return f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({declared}) ON COMMIT DELETE ROWS"


def _simple_target(table: str, columns: tuple[str, ...], conflict: str) -> Target:
    stage = f"_sw_stage_{table}"
    return Target(
        name=table,
        stage=stage,
        create_stage=_create_stage(stage, table, columns),
        columns=columns,
        moves=(
            (
                table,
                f"INSERT INTO {table} ({_cols(columns)}) "
                f"SELECT {_cols(columns)} FROM {stage} {conflict}",
            ),
        ),
    )


def _aggregate_target(table: str) -> Target:
    columns = AGGREGATE_COLUMNS + EXTRA_COLUMNS.get(table, ())
    return _revised_target(table, columns, ("stack_id", "factor", "period_start"))


def _revised_target(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> Target:
    """Upsert keyed on `keys` that only a higher `revision` may overwrite."""
    stage = f"_sw_stage_{table}"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
    # DISTINCT ON: one statement may not touch a row twice; the highest revision wins.
    move = (
        f"INSERT INTO {table} AS t ({_cols(columns)}) "
        f"SELECT DISTINCT ON ({_cols(keys)}) {_cols(columns)} FROM {stage} "
        f"ORDER BY {_cols(keys)}, revision DESC "
        f"ON CONFLICT ({_cols(keys)}) DO UPDATE SET {updates}, computed_at = now() "
        f"WHERE EXCLUDED.revision > t.revision"
    )
    return Target(
        name=table,
        stage=stage,
        create_stage=_create_stage(stage, table, columns),
        columns=columns,
        moves=((table, move),),
    )


def _alerts_target() -> Target:
    stage = "_sw_stage_alerts"
    columns = ALERT_COLUMNS + ALERT_EVENT_COLUMNS
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ALERT_COLUMNS if c != "alert_id")
    # The alerts row is current state: replace it only with an event newer than every event
    # already stored for that alert (a replayed old event must not roll the state back).
    # The row goes first because alert_events references it.
    upsert_alert = (
        f"INSERT INTO alerts AS t ({_cols(ALERT_COLUMNS)}) "
        f"SELECT DISTINCT ON (alert_id) {_cols(ALERT_COLUMNS)} FROM {stage} "
        f"ORDER BY alert_id, seq DESC "
        f"ON CONFLICT (alert_id) DO UPDATE SET {updates} "
        f"WHERE NOT EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = t.alert_id "
        f"AND e.seq >= (SELECT max(s.seq) FROM {stage} s WHERE s.alert_id = t.alert_id))"
    )
    insert_events = (
        f"INSERT INTO alert_events (alert_id, {_cols(ALERT_EVENT_COLUMNS)}) "
        f"SELECT alert_id, {_cols(ALERT_EVENT_COLUMNS)} FROM {stage} ON CONFLICT DO NOTHING"
    )
    return Target(
        name="alerts",
        stage=stage,
        create_stage=_create_stage(stage, "alerts", columns),
        columns=columns,
        moves=(("alerts", upsert_alert), ("alert_events", insert_events)),
    )


#: Every target by the name of its (primary) table.
TARGETS: dict[str, Target] = {
    "raw_frames": _simple_target("raw_frames", RAW_FRAME_COLUMNS, "ON CONFLICT DO NOTHING"),
    "readings": _simple_target("readings", READING_COLUMNS, "ON CONFLICT DO NOTHING"),
    "dead_letters": _simple_target("dead_letters", DEAD_LETTER_COLUMNS, "ON CONFLICT DO NOTHING"),
    "alerts": _alerts_target(),
    **{t: _aggregate_target(t) for t in AGGREGATE_TABLES.values()},
    "limit_verdicts": _revised_target(
        "limit_verdicts",
        VERDICT_COLUMNS,
        ("stack_id", "factor", "period", "period_start", "program", "kind"),
    ),
}
