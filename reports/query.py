"""Read the rows of one report from PostgreSQL/TimescaleDB (psycopg 3, read-only).

Every query is bounded by the period (`period_start` in [start, end)) and the scope's stack
ids, which the primary keys and `*_stack_time_idx` indexes serve. The stored rows are used
as the sinks wrote them: the limit and verdict each hour was judged with stay as they were,
so a report never changes when the limit catalogue does (README "Storage").
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from reports.model import (
    AckEntry,
    AlertEntry,
    DayEntry,
    HourEntry,
    ReportData,
    StackEntry,
    VerdictEntry,
)
from reports.params import ReportParams, Scope
from sinks.db import connect

__all__ = ["ScopeNotFoundError", "fetch_report_data", "read_report_data"]

log = logging.getLogger(__name__)

_SCOPE_COLUMN = {Scope.STACK: "stack_id", Scope.PLANT: "plant", Scope.CITY: "city"}

_STACKS = """
SELECT stack_id, name, plant, coalesce(city, '') AS city, coalesce(province, '') AS province,
       sector, process, true AS registered
FROM stacks {where} ORDER BY plant, stack_id
"""
# "All stacks" also covers stacks with data in the period but no registry row (e.g. a replayed
# foreign capture): the report must not hide data because the registry lacks it.
_UNREGISTERED = """
SELECT DISTINCT stack_id, stack_id AS name, '' AS plant, '' AS city, '' AS province,
       '' AS sector, '' AS process, false AS registered
FROM hour_aggregates
WHERE period_start >= %(start)s AND period_start < %(end)s
  AND stack_id NOT IN (SELECT stack_id FROM stacks)
ORDER BY stack_id
"""
_HOURS = """
SELECT stack_id, factor, period_start AS start, mean, zs_mean, ref_o2, valid, stopped, flag,
       mass_kg, limit_mg_m3, limit_program
FROM hour_aggregates
WHERE stack_id = ANY(%(ids)s) AND period_start >= %(start)s AND period_start < %(end)s
ORDER BY stack_id, factor, period_start
"""
_FIRST_HOURS = """
SELECT stack_id, min(period_start) AS first_at FROM hour_aggregates
WHERE stack_id = ANY(%(ids)s) GROUP BY stack_id
"""
_VERDICTS = """
SELECT stack_id, factor, period_start AS start, program, kind, status, value, basis, ref_o2,
       limit_mg_m3
FROM limit_verdicts
WHERE period = 'hour' AND stack_id = ANY(%(ids)s)
  AND period_start >= %(start)s AND period_start < %(end)s
ORDER BY stack_id, factor, program, kind, period_start
"""
_DAYS = """
SELECT stack_id, factor, period_start AS start, valid, mass_kg, mass_valid
FROM day_aggregates
WHERE stack_id = ANY(%(ids)s) AND period_start >= %(start)s AND period_start < %(end)s
ORDER BY stack_id, factor, period_start
"""
# An alert belongs to the period when it was open during it. Alert times are the end of the
# observation that raised or cleared it (an hour's alert is stamped at the hour's end), so an
# alert covers (first_seen, cleared_at] and the period is taken as (start, end]: the
# exceedance of 23:00–24:00 on the last day (first seen at 24:00) is this period's, an alert
# cleared at 00:00 on the first day is the previous one's. Its title is the one its latest
# event carried (kind-aware: 超标 vs 超过超低排放限值).
_ALERTS = """
SELECT a.alert_id, a.stack_id, a.factor, a.rule, a.severity, a.state, a.first_seen,
       a.last_seen, a.cleared_at, a.count, a.peak_value, a.limit_value,
       EXISTS (SELECT 1 FROM alert_events e
               WHERE e.alert_id = a.alert_id AND e.event = 'suppressed') AS suppressed,
       t.payload ->> 'title_zh' AS title_zh, t.payload ->> 'title_en' AS title_en
FROM alerts a
LEFT JOIN LATERAL (SELECT payload FROM alert_events e WHERE e.alert_id = a.alert_id
                   ORDER BY seq DESC LIMIT 1) t ON true
WHERE a.stack_id = ANY(%(ids)s) AND a.first_seen <= %(end)s
  AND (a.cleared_at IS NULL OR a.cleared_at > %(start)s)
ORDER BY a.first_seen, a.stack_id, a.alert_id
"""
_ACKS = """
SELECT alert_id, at, coalesce(payload ->> 'ack_by', '') AS by,
       coalesce(payload ->> 'ack_reason', '') AS reason
FROM alert_events WHERE event = 'ack' AND alert_id = ANY(%(alert_ids)s)
ORDER BY alert_id, seq
"""


class ScopeNotFoundError(LookupError):
    """No registered stack matches the requested stack, plant or city."""


def _rows(conn: psycopg.Connection[Any], query: str | sql.Composed, params: dict[str, Any]) -> (
    list[dict[str, Any]]
):
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _stacks(conn: psycopg.Connection[Any], params: ReportParams) -> list[StackEntry]:
    bounds = {"start": params.period.start, "end": params.period.end}
    if params.scope is Scope.ALL:
        rows = _rows(conn, sql.SQL(_STACKS).format(where=sql.SQL("")), {})
        rows += _rows(conn, _UNREGISTERED, bounds)
    else:
        where = sql.SQL("WHERE {} = %(value)s").format(
            sql.Identifier(_SCOPE_COLUMN[params.scope])
        )
        rows = _rows(conn, sql.SQL(_STACKS).format(where=where), {"value": params.value})
        if not rows:
            raise ScopeNotFoundError(
                f"no registered stack has {params.scope.value} = {params.value!r}"
            )
    return [StackEntry.model_validate(r) for r in rows]


def _alerts(conn: psycopg.Connection[Any], bounds: dict[str, Any]) -> list[AlertEntry]:
    rows = _rows(conn, _ALERTS, bounds)
    acks: dict[str, list[AckEntry]] = {}
    if rows:
        for ack in _rows(conn, _ACKS, {"alert_ids": [r["alert_id"] for r in rows]}):
            acks.setdefault(ack.pop("alert_id"), []).append(AckEntry.model_validate(ack))
    return [
        AlertEntry.model_validate({**r, "acks": tuple(acks.get(r["alert_id"], ()))})
        for r in rows
    ]


def read_report_data(conn: psycopg.Connection[Any], params: ReportParams) -> ReportData:
    """All stored rows of the report's stacks in its period, in one read-only transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        stacks = _stacks(conn, params)
        bounds: dict[str, Any] = {
            "ids": [s.stack_id for s in stacks],
            "start": params.period.start,
            "end": params.period.end,
        }
        first: dict[str, datetime] = {
            r["stack_id"]: r["first_at"] for r in _rows(conn, _FIRST_HOURS, bounds)
        }
        data = ReportData(
            stacks=tuple(stacks),
            hours=tuple(HourEntry.model_validate(r) for r in _rows(conn, _HOURS, bounds)),
            verdicts=tuple(
                VerdictEntry.model_validate(r) for r in _rows(conn, _VERDICTS, bounds)
            ),
            days=tuple(DayEntry.model_validate(r) for r in _rows(conn, _DAYS, bounds)),
            alerts=tuple(_alerts(conn, bounds)),
            first_hours=first,
        )
    log.info(
        "report data read",
        extra={
            "period": params.period.label,
            "scope": params.scope.value,
            "stacks": len(data.stacks),
            "hours": len(data.hours),
            "verdicts": len(data.verdicts),
            "alerts": len(data.alerts),
        },
    )
    return data


def fetch_report_data(dsn: str, params: ReportParams) -> ReportData:
    """Connect to `dsn` (PGlite quirks handled by `sinks.db.connect`) and read the report."""
    with connect(dsn) as conn:
        return read_report_data(conn, params)
