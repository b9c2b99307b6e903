"""Every SQL query of every dashboard, executed: Grafana cannot run here, the database can.

A small expander implements what Grafana does to a PostgreSQL panel query before it reaches
the server — the frontend interpolates template variables (`$var`, `${var}`, `${var:format}`,
multi-value and "All" selections, `$__interval`), then the backend expands the macros
(`$__timeFilter`, `$__timeFrom`, `$__timeTo`, `$__timeGroup`, `$__timeGroupAlias`) — for a fixed
time range. The expander follows Grafana 11.3: `SqlDatasource.interpolateVariable` (multi/All
values quoted, a single value inserted with quotes doubled) and
`pkg/tsdb/grafana-postgresql-datasource/macros.go` (RFC 3339 UTC literals; `time_bucket` when
the datasource has `timescaledb: true`, epoch arithmetic otherwise).

Each dashboard's variables are resolved against the demo rows of `dashboard_data.py`, then every
panel target, repeated panel, annotation and variable query runs on PostgreSQL 18 (plain mode)
and on PGlite-TimescaleDB (TimescaleDB mode, continuous aggregates refreshed), as the read-only
role of Grafana's datasource (`stackwatch_reader`), and must return rows with the columns its
panel needs. Separate tests check the answers against values worked
out by hand from the demo rows, and that an empty installation shows empty panels, not errors.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sinks.db import connect
from sinks.schema import Mode, migrate
from tests.integration.dashboard_data import (
    ALERTS,
    DAY_END,
    DAY_START,
    EXPECTED_STATES,
    NOX,
    O2,
    PM,
    SO2,
    STACKS,
    at,
    load_demo_rows,
)

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards" / "json"
PG_UID = "stackwatch-pg"
#: The role of Grafana's datasource login (migration 0011): every query runs as it, so a panel
#: that needs raw frame text or dead-letter payloads fails here as it would in Grafana.
READER = "stackwatch_reader"
#: Panel interval the tests pretend Grafana computed ($__interval) for the one-day range.
INTERVAL = "2m"


# --------------------------------------------------------------------------- the expander


class ExpansionError(ValueError):
    """A query uses something Grafana would not expand (unknown variable, bad macro)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class VarValue:
    """A resolved template variable: what is selected, and how Grafana formats it."""

    values: tuple[str, ...]
    multi_or_all: bool  # variable.multi || variable.includeAll: default format quotes values
    is_all: bool = False
    all_value: str | None = None  # custom "All" value, inserted raw when All is selected


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_value(var: VarValue, fmt: str | None) -> str:
    """Grafana's interpolation of one variable for a SQL datasource."""
    if var.is_all and var.all_value is not None and fmt is None:
        return var.all_value
    values = list(var.values)
    if fmt is None:
        if var.multi_or_all:
            return ",".join(_quote(v) for v in values)
        if len(values) != 1:
            raise ExpansionError(f"single-value variable has {len(values)} values")
        return values[0].replace("'", "''")
    if fmt in ("sqlstring", "singlequote"):
        return ",".join(_quote(v) for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "raw":
        return ",".join(values)
    raise ExpansionError(f"unsupported variable format {fmt!r}")


_VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
#: Backend macros: expanded after the variables (pkg/tsdb/.../macros.go).
MACROS = frozenset({"__timeFilter", "__timeFrom", "__timeTo", "__timeGroup", "__timeGroupAlias"})
_MACRO_RE = re.compile(r"\$(__[A-Za-z0-9_]+)\(([^)]*)\)")
_INTERVAL_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def interval_seconds(text: str) -> float:
    """Grafana's gtime.ParseInterval for the forms dashboards use ('5m', 1h, …)."""
    match = _INTERVAL_RE.match(text.strip().strip("'\""))
    if match is None:
        raise ExpansionError(f"bad interval {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interpolate(text: str, variables: Mapping[str, VarValue], interval: str) -> str:
    """The frontend step: template variables and $__interval, macros left in place."""

    def repl(m: re.Match[str]) -> str:
        if m.group(4):
            raise ExpansionError(f"deprecated [[{m.group(4)}]] syntax")
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        if name == "__interval":
            return interval
        if name == "__interval_ms":
            return str(int(interval_seconds(interval) * 1000))
        if name in MACROS:
            return m.group(0)
        if name not in variables:
            raise ExpansionError(f"unknown variable ${name}")
        return format_value(variables[name], fmt)

    return _VAR_RE.sub(repl, text)


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool) -> str:
    """The backend step: Grafana's PostgreSQL macros for a fixed time range."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
        if name == "__timeFilter":
            if len(args) != 1:
                raise ExpansionError("$__timeFilter takes one column")
            start, end = _rfc3339(time_range.start), _rfc3339(time_range.end)
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name in ("__timeFrom", "__timeTo"):
            if args:
                raise ExpansionError(f"${name}() takes no argument")
            return f"'{_rfc3339(time_range.start if name == '__timeFrom' else time_range.end)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) not in (2, 3):
                raise ExpansionError(f"${name} takes (column, interval[, fill])")
            if (
                len(args) == 3
                and args[2] not in ("NULL", "previous")
                and not re.fullmatch(r"-?\d+(\.\d+)?", args[2])
            ):
                raise ExpansionError(f"bad fill {args[2]!r}")
            seconds = interval_seconds(args[1])
            if timescaledb:
                expr = f"time_bucket('{seconds:.3f}s',{args[0]})"
            else:
                step = f"{seconds:g}"
                expr = f"floor(extract(epoch from {args[0]})/{step})*{step}"
            return expr + (' AS "time"' if name == "__timeGroupAlias" else "")
        raise ExpansionError(f"unknown macro ${name}")

    expanded = _MACRO_RE.sub(repl, sql)
    leftover = re.search(r"\$__\w+", expanded)
    if leftover is not None:
        raise ExpansionError(f"unexpanded {leftover.group(0)}")
    return expanded


def expand(
    sql: str,
    variables: Mapping[str, VarValue],
    time_range: TimeRange,
    *,
    timescaledb: bool,
    interval: str = INTERVAL,
) -> str:
    """Variables first, then macros — Grafana's order."""
    return expand_macros(interpolate(sql, variables, interval), time_range, timescaledb=timescaledb)


def test_expander_follows_grafana() -> None:
    # Expected strings written from Grafana's documented output, not from the expander.
    rng = TimeRange(
        datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC)
    )
    v = {
        "city": VarValue(("Anyang", "O'Hare"), multi_or_all=True),
        "stack": VarValue(("ay-1",), multi_or_all=False),
    }
    assert expand("WHERE $__timeFilter(t)", v, rng, timescaledb=False) == (
        "WHERE t BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    )
    assert expand("$__timeFrom() $__timeTo()", v, rng, timescaledb=False) == (
        "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17Z'"
    )
    assert expand("city IN ($city)", v, rng, timescaledb=False) == ("city IN ('Anyang','O''Hare')")
    assert expand("s = '$stack' OR s = ${stack:sqlstring}", v, rng, timescaledb=False) == (
        "s = 'ay-1' OR s = 'ay-1'"
    )
    # 5m = 300 s: Grafana's plain expansion vs TimescaleDB's
    assert expand("$__timeGroupAlias(t, '5m')", v, rng, timescaledb=False) == (
        'floor(extract(epoch from t)/300)*300 AS "time"'
    )
    assert expand("$__timeGroup(t, $__interval, NULL)", v, rng, timescaledb=True) == (
        "time_bucket('120.000s',t)"
    )
    for bad in ("$nope", "$__timeFilter()", "$__unknownMacro(x)", "[[city]]"):
        with pytest.raises(ExpansionError):
            expand(bad, v, rng, timescaledb=False)


# ------------------------------------------------------------------ dashboards and queries


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        d["uid"]: d
        for d in (json.loads(p.read_text("utf-8")) for p in sorted(DASHBOARD_DIR.rglob("*.json")))
    }


DASHBOARDS = load_dashboards()


@dataclass(frozen=True)
class Query:
    """One SQL query a dashboard sends: a panel target, an annotation or a variable query."""

    dashboard: str
    kind: str  # panel | annotation | variable
    key: str  # panel id/refId, annotation name or variable name
    sql: str
    panel_type: str
    fmt: str
    repeat: str | None
    overrides: tuple[str, ...]  # byName matchers: fields the panel styles

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.kind}:{self.key}"


def _is_pg(ds: Any) -> bool:
    return isinstance(ds, dict) and ds.get("uid") == PG_UID


def sql_queries(dash: dict[str, Any]) -> list[Query]:
    uid = dash["uid"]
    out: list[Query] = []
    row_repeat: str | None = None
    for panel in dash["panels"]:
        if panel["type"] == "row":
            row_repeat = panel.get("repeat")
            continue
        overrides = tuple(
            o["matcher"]["options"]
            for o in panel.get("fieldConfig", {}).get("overrides", [])
            if o["matcher"]["id"] == "byName"
        )
        for target in panel["targets"]:
            ds = target.get("datasource", panel.get("datasource"))
            if not _is_pg(ds):
                continue
            out.append(
                Query(
                    uid,
                    "panel",
                    f"{panel['id']}/{target['refId']}",
                    target["rawSql"],
                    panel["type"],
                    target.get("format", "table"),
                    panel.get("repeat") or row_repeat,
                    overrides,
                )
            )
    for anno in dash["annotations"]["list"]:
        if _is_pg(anno.get("datasource")):
            out.append(
                Query(
                    uid,
                    "annotation",
                    anno["name"],
                    anno["target"]["rawSql"],
                    "annotation",
                    "table",
                    None,
                    (),
                )
            )
    for var in dash["templating"]["list"]:
        if var["type"] == "query" and _is_pg(var.get("datasource")):
            out.append(
                Query(uid, "variable", var["name"], _var_sql(var), "variable", "table", None, ())
            )
    return out


def _var_sql(var: dict[str, Any]) -> str:
    query = var["query"]
    return str(query["rawSql"] if isinstance(query, dict) else query)


ALL_QUERIES = [q for d in DASHBOARDS.values() for q in sql_queries(d)]


# ------------------------------------------------------------------------------ databases


@dataclass
class Db:
    conn: Conn
    timescaledb: bool

    def run(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.execute(sql)
        assert cur.description is not None, "query returned no result set"
        return [c.name for c in cur.description], cur.fetchall()


DEMO_RANGE = TimeRange(DAY_START, DAY_END)


def _new_database(pg_dsn: str) -> tuple[str, str]:
    name = f"t_dash_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, pg_dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def plain_db(pg_dsn: str) -> Iterator[Db]:
    """A fresh database (as `pg_database` makes, but shared by the module), demo rows loaded."""
    name, dsn = _new_database(pg_dsn)
    try:
        with connect(dsn, autocommit=True) as conn:
            assert migrate(conn, "plain").mode is Mode.PLAIN
            load_demo_rows(conn)
            conn.execute(f"SET ROLE {READER}")  # Grafana's datasource logs in as the reader
            yield Db(conn, timescaledb=False)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def timescale_db(timescale_dsn: str) -> Iterator[Db]:
    """PGlite-TimescaleDB in its own schema, TimescaleDB mode, demo rows, aggregates refreshed."""
    schema = f"sw_dash_{uuid.uuid4().hex[:10]}"
    with connect(timescale_dsn, autocommit=True, pglite=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}, public")
        try:
            assert migrate(conn, "timescale").mode is Mode.TIMESCALE
            load_demo_rows(conn)
            for view in ("compliance_daily", "compliance_monthly"):
                conn.execute(
                    f"CALL refresh_continuous_aggregate('{view}', %s::timestamptz,"
                    " %s::timestamptz)",
                    (datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 8, 1, tzinfo=UTC)),
                )
            conn.execute(f"SET ROLE {READER}")
            yield Db(conn, timescaledb=True)
        finally:
            conn.execute("RESET ROLE")
            conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {schema}.compliance_monthly CASCADE")
            conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {schema}.compliance_daily CASCADE")
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module", params=["plain", "timescale"])
def db(request: pytest.FixtureRequest) -> Db:
    name = "plain_db" if request.param == "plain" else "timescale_db"
    result: Db = request.getfixturevalue(name)
    return result


# ---------------------------------------------------------------------- variable resolution


def resolve_variables(
    dash: dict[str, Any],
    db: Db,
    time_range: TimeRange = DEMO_RANGE,
    chosen: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, VarValue], dict[str, list[str]]]:
    """Run the variable queries in order, as Grafana does on load; All stays All unless
    `chosen` picks values. Returns (current values, options per variable)."""
    chosen = chosen or {}
    values: dict[str, VarValue] = {}
    options: dict[str, list[str]] = {}
    for var in dash["templating"]["list"]:
        name = var["name"]
        if var["type"] == "custom":
            opts = [o["value"] for o in var["options"]]
        elif var["type"] == "query" and _is_pg(var.get("datasource")):
            sql = expand(_var_sql(var), values, time_range, timescaledb=db.timescaledb)
            cols, rows = db.run(sql)
            col = cols.index("__value") if "__value" in cols else 0
            opts = [str(r[col]) for r in rows]
        else:  # Prometheus label_values: not executable here
            opts = ["placeholder"]
        options[name] = opts
        multi_or_all = bool(var.get("multi") or var.get("includeAll"))
        if name in chosen:
            values[name] = VarValue(tuple(chosen[name]), multi_or_all)
        elif var.get("includeAll") and var.get("current", {}).get("value") in (
            ["$__all"],
            "$__all",
        ):
            values[name] = VarValue(tuple(opts), True, True, var.get("allValue"))
        else:
            current = var.get("current", {}).get("value")
            pick = current if isinstance(current, str) and current in opts else opts[0]
            values[name] = VarValue((pick,), multi_or_all)
    return values, options


def run_query(
    q: Query,
    db: Db,
    chosen: Mapping[str, Sequence[str]] | None = None,
    time_range: TimeRange = DEMO_RANGE,
) -> list[tuple[list[str], list[tuple[Any, ...]]]]:
    """Expand and execute `q`, once per repeat value for repeated panels."""
    values, _ = resolve_variables(DASHBOARDS[q.dashboard], db, time_range, chosen)
    runs: list[dict[str, VarValue]] = [values]
    if q.repeat:
        base = values[q.repeat]
        runs = [{**values, q.repeat: VarValue((v,), base.multi_or_all)} for v in base.values]
    return [db.run(expand(q.sql, run, time_range, timescaledb=db.timescaledb)) for run in runs]


# ----------------------------------------------------------------- every query, both modes

#: Stack detail shows one stack; this one has data for every panel (O2 reference, alerts).
DETAIL_STACK = {"stack": ["ay-sinter-1"]}
#: Panels whose rows exist only for particular stacks in the demo data.
CHOICES: dict[str, dict[str, list[str]]] = {
    "stackwatch-stack": DETAIL_STACK,
}
FLAG_STACK = {"stack": ["smx-cement-mill-1"]}


def _is_time(value: Any) -> bool:
    return isinstance(value, datetime | int | float | Decimal)


def check_shape(q: Query, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    """The columns a panel of this type needs, and rows to show."""
    assert rows, f"{q.id} returned no rows"
    assert all(cols) and len(set(cols)) == len(cols), f"{q.id}: empty/duplicate names {cols}"
    if q.kind == "variable":
        assert len(cols) == 1 or {"__value", "__text"} <= set(cols), cols
        return
    if q.kind == "annotation":
        assert {"time", "text"} <= set(cols), cols
        assert all(isinstance(r[cols.index("time")], datetime) for r in rows)
        return
    numeric = [
        c
        for i, c in enumerate(cols)
        if c not in ("time", "metric")
        and any(
            isinstance(r[i], int | float | Decimal) and not isinstance(r[i], bool) for r in rows
        )
    ]
    if q.fmt == "time_series":
        assert "time" in cols, f"{q.id}: time series without a time column: {cols}"
        times = [r[cols.index("time")] for r in rows]
        assert all(_is_time(t) for t in times), f"{q.id}: non-time values in time column"
        assert times == sorted(times), f"{q.id}: time series not ordered by time"
        assert numeric, f"{q.id}: no numeric value column in {cols}"
        if "metric" in cols:
            assert all(isinstance(r[cols.index("metric")], str) for r in rows)
            return  # long format: field names are metric values, not columns
    if q.panel_type in ("stat", "gauge", "bargauge"):
        assert numeric, f"{q.id}: stat panel without a numeric column: {cols}"


@pytest.mark.parametrize("q", ALL_QUERIES, ids=lambda q: q.id)
def test_every_sql_query_returns_what_its_panel_needs(q: Query, db: Db) -> None:
    chosen = CHOICES.get(q.dashboard, {})
    if q.dashboard == "stackwatch-stack" and q.kind == "annotation" and "flag" in q.key.lower():
        chosen = FLAG_STACK
    for cols, rows in run_query(q, db, chosen):
        check_shape(q, cols, rows)


PANELS_WITH_OVERRIDES = sorted(
    {(q.dashboard, q.key.split("/")[0]) for q in ALL_QUERIES if q.kind == "panel" and q.overrides}
)


@pytest.mark.parametrize("uid, panel_id", PANELS_WITH_OVERRIDES, ids=lambda x: str(x))
def test_field_overrides_name_returned_columns(uid: str, panel_id: str, db: Db) -> None:
    """A byName override (unit, colour, value mapping, link) styles nothing when the name is
    not a field of the panel's frames: a renamed column would silently lose its styling."""
    targets = [
        q
        for q in ALL_QUERIES
        if q.dashboard == uid and q.kind == "panel" and q.key.split("/")[0] == panel_id
    ]
    columns: set[str] = set()
    for q in targets:
        for cols, _ in run_query(q, db, CHOICES.get(uid, {})):
            if "metric" in cols and q.fmt == "time_series":
                return  # long format: fields are named by metric values
            columns.update(cols)
    missing = [name for name in targets[0].overrides if name not in columns]
    assert not missing, f"{uid} panel {panel_id}: overrides name no returned column: {missing}"


def test_every_dashboard_has_sql_queries() -> None:
    per_dash = {uid: sum(q.dashboard == uid for q in ALL_QUERIES) for uid in DASHBOARDS}
    for uid in (
        "stackwatch-overview",
        "stackwatch-stack",
        "stackwatch-alerts",
        "stackwatch-compliance",
    ):
        assert per_dash[uid] >= 5, per_dash


# ------------------------------------------------------------- answers known from the rows


def panel_query(uid: str, title_part: str, ref: str = "A") -> Query:
    for q in ALL_QUERIES:
        if q.dashboard != uid or q.kind != "panel":
            continue
        panel_id, ref_id = q.key.split("/")
        panel = next(p for p in DASHBOARDS[uid]["panels"] if str(p["id"]) == panel_id)
        if title_part in panel["title"] and ref_id == ref:
            return q
    raise LookupError(f"{uid}: no panel titled …{title_part}… with target {ref}")


def other_query(uid: str, kind: str, key: str) -> Query:
    return next(q for q in ALL_QUERIES if q.dashboard == uid and q.kind == kind and q.key == key)


def records(result: tuple[list[str], list[tuple[Any, ...]]]) -> list[dict[str, Any]]:
    cols, rows = result
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_variables_list_the_demo_registry(db: Db) -> None:
    _, options = resolve_variables(DASHBOARDS["stackwatch-overview"], db)
    assert set(options["city"]) == {"Anyang", "Sanmenxia", "Xinzhou", "Zhengzhou", "(unset)"}
    assert set(options["sector"]) == {"steel", "coking", "cement", "carbon", "boiler"}
    assert set(options["stack"]) == {s.stack_id for s in STACKS}
    # flow a00000 and O2 a19001 are flue-gas parameters, not pollutants
    assert set(options["factor"]) == {PM, SO2, NOX}
    # cascading: Anyang has one plant with two stacks
    _, anyang = resolve_variables(
        DASHBOARDS["stackwatch-overview"], db, chosen={"city": ["Anyang"]}
    )
    assert anyang["plant"] == ["Anyang steel works"]
    assert sorted(anyang["stack"]) == ["ay-pellet-1", "ay-sinter-1"]
    _, alerts = resolve_variables(DASHBOARDS["stackwatch-alerts"], db)
    # alert factors: SO2 (a1, a2), PM (a4), NOx (a5) and the stack-level offline alert
    assert set(alerts["factor"]) == {SO2, PM, NOX, "(stack)"}


def test_overview_states_and_counts(db: Db) -> None:
    [table] = run_query(panel_query("stackwatch-overview", "Stack states"), db)
    states = {r["排放口 stack"]: r["状态 state"] for r in records(table)}
    assert states == EXPECTED_STATES
    # offline first, then alarm, calibration, warning, normal
    assert [r["状态 state"] for r in records(table)][:4] == [
        "offline",
        "alarm",
        "calibration",
        "warning",
    ]
    [counts] = run_query(panel_query("stackwatch-overview", "Stacks per state"), db)
    assert records(counts) == [
        {
            "正常 normal": 2,
            "预警 warning": 1,
            "报警 alarm": 1,
            "离线 offline": 1,
            "校准/维护 calibration": 1,
        }
    ]
    # Filtering by city narrows the table: Anyang = the sinter (alarm) and pellet (warning)
    [anyang] = run_query(
        panel_query("stackwatch-overview", "Stack states"), db, {"city": ["Anyang"]}
    )
    assert {r["排放口 stack"]: r["状态 state"] for r in records(anyang)} == {
        "ay-sinter-1": "alarm",
        "ay-pellet-1": "warning",
    }


def test_overview_latest_hour_vs_limit(db: Db) -> None:
    [result] = run_query(panel_query("stackwatch-overview", "Latest hour"), db)
    rows = {(r["排放口 stack"], r["因子 factor"]): r for r in records(result)}
    assert len(rows) == 6 * 3  # 6 stacks × 3 pollutants
    sinter = rows[("ay-sinter-1", SO2)]
    assert sinter["小时 hour"] == DAY_START + timedelta(hours=23)
    assert sinter["判定值 value"] == pytest.approx(45.0)  # 30.0 measured × 1.5
    assert sinter["限值 limit"] == 35.0
    assert float(sinter["占限值 % of limit"]) == pytest.approx(128.571428, rel=1e-6)  # 45/35
    mill = rows[("smx-cement-mill-1", PM)]
    assert mill["标记 flag"] == "C" and mill["有效 valid"] is False
    # measured-basis stack: judged on the measured mean (no zs_mean)
    assert rows[("zz-anode-baking-1", NOX)]["判定值 value"] == pytest.approx(20.0)


def test_stack_detail_series(db: Db) -> None:
    [hours] = run_query(
        panel_query("stackwatch-stack", "Hourly mean"),
        db,
        {"stack": ["ay-sinter-1"], "factor": [SO2]},
    )
    rows = records(hours)
    assert len(rows) == 24
    assert [r["小时均值 hourly value"] for r in rows[-3:]] == pytest.approx([18.0, 45.0, 45.0])
    assert {r["限值 limit"] for r in rows} == {35.0}
    assert [r["预警线 warning"] for r in rows] == pytest.approx([28.0] * 24)  # 35 × 0.8
    assert rows[0]["小时实测 hourly measured"] == 12.0
    # the repeated panel runs once per factor of the stack
    assert len(run_query(panel_query("stackwatch-stack", "Hourly mean"), db, DETAIL_STACK)) == 3
    [minutes] = run_query(
        panel_query("stackwatch-stack", "Minute mean"),
        db,
        {"stack": ["ay-sinter-1"], "factor": [SO2]},
    )
    mrows = records(minutes)
    assert len(mrows) == 720  # 1 440 minutes in 2-minute buckets
    assert float(mrows[0]["分钟均值 minute value"]) == pytest.approx(18.0)  # 12 × 1.5
    assert float(mrows[-1]["分钟均值 minute value"]) == pytest.approx(45.0)
    [o2ref] = run_query(panel_query("stackwatch-stack", "O2", "B"), db, DETAIL_STACK)
    assert {r["基准氧 reference O2"] for r in records(o2ref)} == {16.0}
    [o2] = run_query(panel_query("stackwatch-stack", "O2", "A"), db, DETAIL_STACK)
    assert {float(r["氧含量 O2"]) for r in records(o2)} == {15.0}
    _, options = resolve_variables(DASHBOARDS["stackwatch-stack"], db, chosen=DETAIL_STACK)
    assert O2 not in options["factor"]


def test_stack_detail_annotations(db: Db) -> None:
    flags = other_query("stackwatch-stack", "annotation", "数据标记 Data flags")
    [mill] = run_query(flags, db, FLAG_STACK)
    [run] = records(mill)  # one run of 60 calibration minutes, Beijing 23:00–24:00
    assert run["time"] == DAY_START + timedelta(hours=23)
    assert run["timeend"] == DAY_END
    assert run["tags"] == "flag,C"
    assert "60" in run["text"] and PM in run["text"]
    [sinter] = run_query(flags, db, DETAIL_STACK)
    assert sinter[1] == []  # all minutes N: no flag annotation
    alerts = other_query("stackwatch-stack", "annotation", "告警 Alerts")
    [a] = run_query(alerts, db, DETAIL_STACK)
    [alert] = records(a)
    assert alert["time"] == DAY_START + timedelta(hours=23)
    assert alert["tags"] == "alert,alarm,hour_exceedance"
    # 45 > the ultra-low 35, ≤ the standard 180: the title names the ultra-low limit, not 超标
    assert "小时均值超过超低排放限值" in alert["text"] and "peak 45" in alert["text"]
    assert "超标" not in alert["text"]
    assert "acked by" not in alert["text"]  # a1 is unacknowledged
    # a4 (mill flat-line, 11:00–12:00) was acknowledged by ops.wang: the annotation says so
    [m] = run_query(alerts, db, FLAG_STACK)
    [mill_alert] = records(m)
    assert mill_alert["tags"] == "alert,warning,flatline"
    assert mill_alert["text"].endswith(" · cleared · 已确认 acked by ops.wang")


def test_alert_stats_and_time_to_acknowledge(db: Db) -> None:
    def stat(title: str) -> Any:
        [result] = run_query(panel_query("stackwatch-alerts", title), db)
        [[value]] = result[1]
        return value

    assert stat("Active, unacknowledged") == 2  # a1 (alarm) and a3 (offline)
    assert stat("Acknowledged, still open") == 1  # a2
    assert stat("Raised in range") == len(ALERTS)
    # (25 min + 10 min) / 2 = 17.5 min = 1 050 s
    assert float(stat("Mean time to acknowledge")) == pytest.approx(1050.0)
    [open_] = run_query(panel_query("stackwatch-alerts", "Open alerts"), db)
    assert [r["告警编号 alert id"] for r in records(open_)] == [
        "a3-coke-offline",
        "a1-sinter-so2",
        "a2-pellet-so2-warn",  # active by age, then acked
    ]
    # The level column names a1's deciding limit: 45 > ultra-low 35, ≤ standard 180.
    levels = {r["告警编号 alert id"]: r["判定 level"] for r in records(open_)}
    assert levels == {"a1-sinter-so2": "超过超低排放限值", "a3-coke-offline": None,
                      "a2-pellet-so2-warn": None}
    [tta] = run_query(panel_query("stackwatch-alerts", "Time to acknowledge"), db)
    by_rule = {r["规则 rule"]: r for r in records(tta)}
    assert by_rule["hour_warning"]["中位数 median"] == pytest.approx(1500.0)  # 25 min
    assert by_rule["flatline"]["最长 max"] == pytest.approx(600.0)  # 10 min
    [per_hour] = run_query(panel_query("stackwatch-alerts", "raised per hour"), db)
    assert sum(r["value"] for r in records(per_hour)) == 5
    [notes] = run_query(panel_query("stackwatch-alerts", "Notifications"), db)
    assert sorted(r["状态 status"] for r in records(notes)) == ["failed", "sent", "sent"]


def test_compliance_rates_and_mass(db: Db) -> None:
    [daily] = run_query(panel_query("stackwatch-compliance", "Daily compliance"), db)
    pct = {r["metric"]: float(r["达标率 compliance"]) for r in records(daily)}
    assert pct[f"ay-sinter-1 {SO2}"] == pytest.approx(100 * 22 / 24)  # hours 22, 23 exceed
    assert pct[f"smx-cement-mill-1 {PM}"] == pytest.approx(100.0)  # 23 judged, 23 compliant
    assert f"smx-cement-mill-1 {SO2}" not in pct  # no limit → nothing judged
    [valid] = run_query(panel_query("stackwatch-compliance", "valid-hour rate"), db)
    rate = {r["metric"]: float(r["有效数据率 valid-hour rate"]) for r in records(valid)}
    assert rate[f"smx-cement-mill-1 {PM}"] == pytest.approx(100 * 23 / 24)  # 1 calibration h
    assert rate[f"ay-sinter-1 {SO2}"] == pytest.approx(100.0)
    [monthly] = run_query(panel_query("stackwatch-compliance", "Monthly compliance"), db)
    month = {(r["排放口 stack"], r["因子 factor"]): r for r in records(monthly)}
    sinter = month[("ay-sinter-1", SO2)]
    assert sinter["月份 month"] == datetime(2025, 5, 31, 16, tzinfo=UTC)  # June, Beijing
    assert (
        sinter["小时数 hours"],
        sinter["判定小时 judged hours"],
        sinter["达标小时 compliant hours"],
    ) == (24, 24, 22)
    # June has 30 days = 720 hours; 24 valid hours → 3.333 %
    assert float(sinter["有效数据率 valid-hour rate"]) == pytest.approx(100 * 24 / 720)
    [mass] = run_query(panel_query("stackwatch-compliance", "Mass emitted"), db)
    totals = {
        (r["排放口 stack"], r["因子 factor"]): float(r["排放量 mass (kg)"]) for r in records(mass)
    }
    assert totals[("ay-sinter-1", SO2)] == pytest.approx(12.0)  # 24 h × 0.5 kg
    assert len(totals) == 18  # 6 stacks × 3 pollutants; O2 and flow carry no mass


def test_compliance_per_limit_panels(db: Db) -> None:
    [above] = run_query(panel_query("stackwatch-compliance", "above or near a limit"), db)
    rows = records(above)
    per_series: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["排放口 stack"], r["因子 factor"])
        per_series[key] = per_series.get(key, 0) + 1
    # sinter SO2 hours 22 and 23 (converted 30 × 1.5 = 45 > 35); the boiler's PM all day
    # (4.0 × 1.5 = 6.0 > 5.0); nothing falls between 80 % and 100 % of a limit.
    assert per_series == {("ay-sinter-1", SO2): 2, ("mobile-boiler-1", PM): 24}
    sinter = [r for r in rows if r["排放口 stack"] == "ay-sinter-1"]
    assert {r["time"] for r in sinter} == {at(22), at(23)}
    assert all(
        (r["值 value"], r["限值 limit"], r["基准氧 O2 basis"], r["判定 level"])
        == (45.0, 35.0, "16.0 %", "above_ultra_low")
        for r in sinter
    )
    [conformity] = run_query(panel_query("stackwatch-compliance", "Monthly conformity"), db)
    month = {(r["排放口 stack"], r["因子 factor"], r["限值来源 program"]): r
             for r in records(conformity)}
    ule = month[("ay-sinter-1", SO2, "NATL-2019-STEEL-ULE")]
    # 24 judged, 22 within → 91.67 % < 95 %: 20 × 22 = 440 < 19 × 24 = 456.
    assert (ule["判定小时 judged hours"], ule["达标小时 within hours"]) == (24, 22)
    assert float(ule["达标率 conformity"]) == pytest.approx(100 * 22 / 24)
    assert ule["达到95% meets 95 %"] is False
    std = month[("ay-sinter-1", SO2, "GB28662-2012-special")]
    assert (std["判定小时 judged hours"], std["达到95% meets 95 %"]) == (24, True)
    mill = month[("smx-cement-mill-1", PM, "NATL-2024-CEMENT-ULE")]
    # hour 23 calibrating: invalid, not judged; 23 of 23 within.
    assert (mill["判定小时 judged hours"], mill["无效小时 invalid hours"]) == (23, 1)
    assert mill["达到95% meets 95 %"] is True
    [daily] = run_query(panel_query("stackwatch-compliance", "Daily means"), db)
    means = {r["metric"]: float(r["日均值 daily mean"]) for r in records(daily)}
    # sinter SO2 converted: (22 × 18 + 2 × 45) / 24 = 486 / 24 = 20.25
    assert means[f"ay-sinter-1 {SO2}"] == pytest.approx(20.25)
    assert means[f"smx-cement-mill-1 {PM}"] == pytest.approx(4.0)  # 23 valid hours of 4.0
    [capture] = run_query(panel_query("stackwatch-compliance", "capture rate"), db)
    rates = {
        (r["粒度 granularity"], r["排放口 stack"], r["因子 factor"]): float(
            r["捕集率 capture rate"]
        )
        for r in records(capture)
    }
    # First hour 2025-06-01 00:00 Beijing; June (and Q2 from that hour) = 720 hours.
    assert rates[("month", "smx-cement-mill-1", PM)] == pytest.approx(100 * 23 / 720)
    assert rates[("quarter", "ay-sinter-1", SO2)] == pytest.approx(100 * 24 / 720)
    [totals] = run_query(panel_query("stackwatch-compliance", "Monthly emission totals"), db)
    t = {(r["排放口 stack"], r["因子 factor"]): r for r in records(totals)}
    sinter_t = t[("ay-sinter-1", SO2)]
    assert float(sinter_t["排放量 mass (kg)"]) == pytest.approx(12.0)  # 24 × 0.5
    assert (sinter_t["已结日数 days closed"], sinter_t["有效日数 valid days"]) == (1, 1)


def test_pipeline_database_panels(db: Db) -> None:
    [rejects] = run_query(panel_query("stackwatch-pipeline", "Rejected frames"), db)
    assert sum(r["value"] for r in records(rejects)) == 2
    assert {r["metric"] for r in records(rejects)} == {"crc_mismatch"}
    [dead] = run_query(panel_query("stackwatch-pipeline", "Dead letters by stage"), db)
    assert {(r["环节 stage"], r["原因 reason"]): r["条数 records"] for r in records(dead)} == {
        ("decode", "crc_mismatch"): 2,
        ("sink", "check_violation"): 1,
    }


# ------------------------------------------------------------------------- empty install


def test_fresh_installation_shows_empty_panels_not_errors(pg_database: str) -> None:
    """Before the first frame arrives every variable still has one option, so no panel
    expands `IN ()` (a syntax error); every query runs and returns nothing to show."""
    with connect(pg_database, autocommit=True) as conn:
        migrate(conn, "plain")
        conn.execute(f"SET ROLE {READER}")
        empty = Db(conn, timescaledb=False)
        for uid, dash in DASHBOARDS.items():
            _, options = resolve_variables(dash, empty)
            for var in dash["templating"]["list"]:
                if var["type"] == "query" and _is_pg(var.get("datasource")):
                    assert options[var["name"]] in (["(none)"], ["(stack)"]), (uid, options)
            for q in sql_queries(dash):
                if q.kind == "variable":
                    continue
                for cols, rows in run_query(q, empty):
                    assert cols
                    if q.panel_type != "stat":
                        assert rows == [] or all(
                            v in (None, 0) for r in rows for v in r if not isinstance(v, str)
                        ), (q.id, rows)


def test_dashboards_run_as_the_reader_that_cannot_see_frame_text(db: Db) -> None:
    """The fixtures really query as Grafana's role: what it must not see is refused."""
    assert db.run("SELECT current_user")[1] == [(READER,)]
    for secret in ("SELECT text FROM raw_frames", "SELECT payload FROM dead_letters"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.run(secret)
