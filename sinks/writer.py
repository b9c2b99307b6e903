"""Batch writer: topic records → database rows, idempotent under replay and redelivery.

Each batch is written in ONE transaction: the rows are COPY'd into a temporary staging table,
then moved with `INSERT … SELECT … ON CONFLICT` keyed on the schema's natural keys
(sinks/migrations/0001_core.sql), so a redelivered or replayed record never duplicates a row:

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

Errors are split in two kinds. *Data* errors (a constraint or type the database refuses,
`IntegrityError`/`DataError`) are isolated by bisecting the batch inside savepoints; the
offending records go to `dead_letters` (stage `sink`) with the database's reason, and the rest
of the batch is written — bad input never blocks the pipeline. Every *other* database error
(connection lost, server shut down, schema not migrated yet) is transient: the caller
(:class:`ResilientWriter`) rolls back, backs off exponentially and retries the same batch, so
nothing is acknowledged to Kafka before it is committed.

The row mapping functions are pure (unit-tested without a database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sinks.db import connect_async, server_info_async
from sinks.metrics import SinkMetrics
from stackwatch.alerts import AlertEvent, AlertState
from stackwatch.models import AggregateRecord, DeadLetter, RawFrame, Reading

__all__ = [
    "AGGREGATE_TABLES",
    "BackoffPolicy",
    "BatchResult",
    "MappingError",
    "Rejection",
    "ResilientWriter",
    "SinkKind",
    "SourceRecord",
    "aggregate_row",
    "alert_row",
    "dead_letter_row",
    "is_transient",
    "parse_records",
    "raw_frame_row",
    "reading_rows",
    "retry_transient",
    "write_batch",
]

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
T = TypeVar("T")

#: Aggregate period → table.
AGGREGATE_TABLES: dict[str, str] = {
    "minute": "minute_aggregates",
    "hour": "hour_aggregates",
    "day": "day_aggregates",
}

#: Dead letters written by this stage carry this `stage` value.
SINK_STAGE = "sink"

_CN_DIGITS = 4


class SinkKind(StrEnum):
    """What a topic carries, i.e. which mapping applies (one agent per topic)."""

    RAW = "raw"
    READINGS = "readings"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    ALERTS = "alerts"
    DEADLETTER = "deadletter"

    @property
    def table(self) -> str:
        """The primary table of this kind (metrics label of batch size/latency)."""
        return _KIND_TABLE[self]


_KIND_TABLE: dict[SinkKind, str] = {
    SinkKind.RAW: "raw_frames",
    SinkKind.READINGS: "readings",
    SinkKind.MINUTE: "minute_aggregates",
    SinkKind.HOUR: "hour_aggregates",
    SinkKind.DAY: "day_aggregates",
    SinkKind.ALERTS: "alerts",
    SinkKind.DEADLETTER: "dead_letters",
}


class MappingError(ValueError):
    """A record parsed but cannot become a row (the message is the dead-letter reason)."""


class SourceRecord(BaseModel):
    """One Kafka record as the writer needs it: payload plus where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp: datetime | None = Field(
        default=None, description="Broker timestamp; makes sink dead letters replay-stable."
    )


class Rejection(BaseModel):
    """A record that could not be stored where it belongs; it is kept in dead_letters."""

    model_config = ConfigDict(frozen=True)

    reason: str
    table: str
    payload: str
    key: str | None
    occurred_at: datetime
    details: dict[str, str] = Field(default_factory=dict)


class BatchResult(BaseModel):
    """Outcome of one committed batch."""

    records: int = 0
    rows_written: dict[str, int] = Field(
        default_factory=dict, description="Rows inserted or updated per table."
    )
    rejected: list[Rejection] = Field(default_factory=list)
    skipped: int = Field(default=0, description="Records that map to no row (event readings).")


# --------------------------------------------------------------------------- sanitising


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL; keep it visible as the escape the gateway uses."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def _opt_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # jsonb has no NaN/Infinity
    if isinstance(value, Mapping):
        return {_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _json(value: Any) -> str:
    """JSON text for a jsonb column (NUL-free, finite numbers only)."""
    return json.dumps(_json_safe(value), ensure_ascii=False, allow_nan=False, sort_keys=True)


def _decode(data: bytes | None) -> str:
    if data is None:
        return ""
    return _text(data.decode("utf-8", errors="backslashreplace"))


# --------------------------------------------------------------------------- row mapping

RAW_FRAME_COLUMNS = (
    "received_at", "peer", "mn", "cn", "verdict", "reasons", "text", "gateway", "sha256",
)


def raw_frame_row(frame: RawFrame) -> Row:
    """raw_frames row of one frame (frame_md5 is generated by the database from `text`)."""
    return (
        frame.received_at,
        _text(frame.peer),
        _opt_text(frame.mn),
        _opt_text(frame.cn),
        frame.verdict.value,
        [_text(r) for r in frame.reasons],
        _text(frame.text),
        _text(frame.gateway),
        frame.sha256,
    )


READING_COLUMNS = (
    "stack_id",
    "factor",
    "cn",
    "data_time",
    "value",
    "min_value",
    "max_value",
    "cou",
    "zs_value",
    "zs_min",
    "zs_max",
    "flag",
    "eflag",
    "mn",
    "qn",
    "resent",
    "received_at",
    "st",
)


def reading_rows(reading: Reading) -> list[Row]:
    """readings rows (long format): one per factor, in factor order.

    `zs_value` is what the logger sent as -ZsRtd/-ZsAvg (`logger_zs`), as the column documents;
    the platform's own reference-O2 conversion lives in the aggregates' `zs_mean`. A reading
    without a DataTime (an event upload: heartbeat, facility state) has no row here.
    """
    if reading.data_time is None:
        return []
    if len(reading.cn) != _CN_DIGITS or not reading.cn.isdigit():
        raise MappingError(f"CN {reading.cn!r} is not a 4-digit HJ 212 command number")
    return [
        (
            _text(reading.stack_id),
            _text(factor),
            reading.cn,
            reading.data_time,
            fr.value,
            fr.min,
            fr.max,
            fr.cou,
            fr.logger_zs,
            None,
            None,
            _text(fr.flag),
            None,
            _text(reading.mn),
            None,
            reading.resent,
            reading.received_at,
            _opt_text(reading.st),
        )
        for factor, fr in sorted(reading.values.items())
    ]


AGGREGATE_COLUMNS = (
    "stack_id",
    "factor",
    "period_start",
    "mean",
    "zs_mean",
    "min",
    "max",
    "valid_count",
    "total_count",
    "flag",
    "valid",
    "invalid_reason",
    "mass_kg",
    "ref_o2",
    "source",
    "revision",
    "stopped",
    "coverage_minutes",
)
HOUR_EXTRA_COLUMNS = ("limit_mg_m3", "limit_program", "logger_mean", "mass_valid")
DAY_EXTRA_COLUMNS = ("logger_mean", "mass_valid")
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "hour_aggregates": HOUR_EXTRA_COLUMNS,
    "day_aggregates": DAY_EXTRA_COLUMNS,
}


def aggregate_row(record: AggregateRecord) -> tuple[str, Row]:
    """(table, row) of one aggregate; hour rows also carry the limit that applied."""
    table = AGGREGATE_TABLES.get(record.period)
    if table is None:
        raise MappingError(
            f"aggregate period {record.period!r} is not one of {', '.join(AGGREGATE_TABLES)}"
        )
    row: Row = (
        _text(record.stack_id),
        _text(record.factor),
        record.period_start,
        record.mean,
        record.zs_mean,
        record.min,
        record.max,
        record.valid_count,
        record.total_count,
        _text(record.flag),
        record.valid,
        _opt_text(record.invalid_reason),
        record.mass_kg,
        record.ref_o2,
        _text(record.source),
        record.revision,
        record.stopped,
        record.coverage_minutes,
    )
    if table == "hour_aggregates":
        row = (
            *row,
            record.limit_mg_m3,
            record.limit_program,
            record.logger_mean,
            record.mass_valid,
        )
    elif table == "day_aggregates":
        row = (*row, record.logger_mean, record.mass_valid)
    return table, row


VERDICT_COLUMNS = (
    "stack_id",
    "factor",
    "period",
    "period_start",
    "program",
    "kind",
    "row_id",
    "status",
    "level",
    "term_zh",
    "severity",
    "value",
    "basis",
    "ref_o2",
    "o2_from_row",
    "limit_mg_m3",
    "warning_mg_m3",
    "unconfirmed",
    "reason",
    "revision",
)


def verdict_rows(record: AggregateRecord) -> list[Row]:
    """One `limit_verdicts` row per limit the hour or day was judged against."""
    return [
        (
            _text(record.stack_id),
            _text(record.factor),
            _text(record.period),
            record.period_start,
            _text(v.program or v.row_id or "-"),
            v.kind.value,
            _opt_text(v.row_id),
            v.status.value,
            v.level.value if v.level else None,
            v.term_zh,
            v.severity.value if v.severity else None,
            v.value,
            v.basis.value if v.basis else None,
            v.ref_o2,
            _opt_text(v.o2_from_row),
            v.limit,
            v.warning_level,
            v.unconfirmed,
            _text(v.reason),
            record.revision,
        )
        for v in record.verdicts
    ]


ALERT_COLUMNS = (
    "alert_id",
    "stack_id",
    "factor",
    "rule",
    "severity",
    "state",
    "first_seen",
    "last_seen",
    "cleared_at",
    "peak_value",
    "count",
    "limit_value",
    "ref_o2",
    "evidence",
    "acked_by",
    "acked_at",
    "ack_reason",
)
ALERT_EVENT_COLUMNS = ("seq", "event", "at", "payload")


def _table_state(event: AlertEvent) -> tuple[str, datetime | None]:
    """The alerts-table state and cleared_at of an event.

    The table knows active / acknowledged / cleared. `recovering` (condition false, still in
    its hold time) is still open, so it is active (or acknowledged). A `suppressed` event
    (C/M/F flag) never opened an alert: its row is stored closed, cleared at the event time,
    and the `suppressed` event in alert_events says why.
    """
    if event.state in (AlertState.CLEARED, AlertState.SUPPRESSED):
        return "cleared", event.cleared_at or event.at
    return ("acknowledged" if event.acknowledged else "active"), None


def alert_row(event: AlertEvent) -> Row:
    """One staging row of an alert event: the alerts columns, then the alert_events ones."""
    state, cleared_at = _table_state(event)
    acked = event.acknowledged and event.ack_by is not None
    return (
        _text(event.alert_id),
        _text(event.stack_id),
        _opt_text(event.factor),
        event.rule.value,
        event.severity.value,
        state,
        event.first_seen,
        event.last_seen,
        cleared_at,
        event.peak_value,
        event.count,
        event.limit,
        event.ref_o2,
        _json(event.evidence),
        _opt_text(event.ack_by) if acked else None,
        (event.ack_at or event.at) if acked else None,
        _opt_text(event.ack_reason) if acked else None,
        event.seq,
        event.kind.value,
        event.at,
        _json(event.model_dump(mode="json")),
    )


DEAD_LETTER_COLUMNS = ("stage", "reason", "payload", "key", "occurred_at", "details")


def dead_letter_row(letter: DeadLetter) -> Row:
    """dead_letters row (payload_md5 is generated by the database)."""
    return (
        _text(letter.stage),
        _text(letter.reason),
        _text(letter.payload),
        _opt_text(letter.key),
        letter.occurred_at,
        _json(letter.details),
    )


# --------------------------------------------------------------------------- SQL targets


@dataclass(frozen=True)
class _Target:
    """One staging table and the statements that move its rows into the real table(s)."""

    name: str
    stage: str
    create_stage: str
    columns: tuple[str, ...]
    moves: tuple[tuple[str, str], ...]  # (table, SQL); rowcount counts for `table`


def _cols(columns: Iterable[str]) -> str:
    return ", ".join(columns)


def _simple_target(table: str, columns: tuple[str, ...], conflict: str) -> _Target:
    stage = f"_sw_stage_{table}"
    return _Target(
        name=table,
        stage=stage,
        create_stage=(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {_cols(columns)} FROM {table} WITH NO DATA"
        ),
        columns=columns,
        moves=(
            (
                table,
                f"INSERT INTO {table} ({_cols(columns)}) "
                f"SELECT {_cols(columns)} FROM {stage} {conflict}",
            ),
        ),
    )


def _aggregate_target(table: str) -> _Target:
    columns = AGGREGATE_COLUMNS + EXTRA_COLUMNS.get(table, ())
    return _revised_target(table, columns, ("stack_id", "factor", "period_start"))


def _revised_target(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> _Target:
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
    return _Target(
        name=table,
        stage=stage,
        create_stage=(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {_cols(columns)} FROM {table} WITH NO DATA"
        ),
        columns=columns,
        moves=((table, move),),
    )


def _alerts_target() -> _Target:
    stage = "_sw_stage_alerts"
    columns = ALERT_COLUMNS + ALERT_EVENT_COLUMNS
    a_cols = ", ".join(f"a.{c}" for c in ALERT_COLUMNS)
    e_cols = ", ".join(f"e.{c}" for c in ALERT_EVENT_COLUMNS)
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
    return _Target(
        name="alerts",
        stage=stage,
        create_stage=(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {a_cols}, {e_cols} FROM alerts a CROSS JOIN alert_events e WITH NO DATA"
        ),
        columns=columns,
        moves=(("alerts", upsert_alert), ("alert_events", insert_events)),
    )


_TARGETS: dict[str, _Target] = {
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


# --------------------------------------------------------------------------- parsing


@dataclass
class _Item:
    """The rows one source record becomes (all in one target)."""

    source: SourceRecord
    target: _Target
    rows: list[Row]


def _now() -> datetime:
    return datetime.now(UTC)


def _rejection(source: SourceRecord, table: str, reason: str, **details: str) -> Rejection:
    info = {"table": table, **details}
    if source.topic:
        info |= {
            "topic": source.topic,
            "partition": str(source.partition),
            "offset": str(source.offset),
        }
    return Rejection(
        reason=reason[:2000],
        table=table,
        payload=_decode(source.value),
        key=_decode(source.key) if source.key is not None else None,
        occurred_at=source.timestamp or _now(),
        details=info,
    )


_MODELS: dict[SinkKind, type[BaseModel]] = {
    SinkKind.RAW: RawFrame,
    SinkKind.READINGS: Reading,
    SinkKind.MINUTE: AggregateRecord,
    SinkKind.HOUR: AggregateRecord,
    SinkKind.DAY: AggregateRecord,
    SinkKind.ALERTS: AlertEvent,
    SinkKind.DEADLETTER: DeadLetter,
}


def _to_items(kind: SinkKind, source: SourceRecord, model: BaseModel) -> list[_Item]:
    if isinstance(model, RawFrame):
        return [_Item(source, _TARGETS["raw_frames"], [raw_frame_row(model)])]
    if isinstance(model, Reading):
        return [_Item(source, _TARGETS["readings"], reading_rows(model))]
    if isinstance(model, AggregateRecord):
        table, row = aggregate_row(model)
        items = [_Item(source, _TARGETS[table], [row])]
        if model.verdicts:
            items.append(_Item(source, _TARGETS["limit_verdicts"], verdict_rows(model)))
        return items
    if isinstance(model, AlertEvent):
        return [_Item(source, _TARGETS["alerts"], [alert_row(model)])]
    if isinstance(model, DeadLetter):
        return [_Item(source, _TARGETS["dead_letters"], [dead_letter_row(model)])]
    raise MappingError(f"no mapping for {type(model).__name__}")  # pragma: no cover


def parse_records(
    kind: SinkKind, records: Sequence[SourceRecord]
) -> tuple[list[_Item], list[Rejection], int]:
    """Parse and map a batch: (items with rows, rejections, records that map to no row)."""
    model_cls = _MODELS[kind]
    items: list[_Item] = []
    rejected: list[Rejection] = []
    skipped = 0
    for source in records:
        if source.value is None:
            rejected.append(_rejection(source, kind.table, "empty record value (tombstone)"))
            continue
        try:
            model = model_cls.model_validate_json(source.value)
            mapped = [item for item in _to_items(kind, source, model) if item.rows]
        except ValidationError as exc:
            reason = f"invalid {model_cls.__name__}: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            rejected.append(_rejection(source, kind.table, reason))
            continue
        except MappingError as exc:
            rejected.append(_rejection(source, kind.table, str(exc)))
            continue
        except Exception as exc:  # a mapping bug must not stop the topic: keep the record
            log.exception("unexpected error mapping a record", extra={"table": kind.table})
            rejected.append(_rejection(source, kind.table, f"cannot map record: {exc!r}"))
            continue
        if mapped:
            items.extend(mapped)
        else:
            skipped += 1
    return items, rejected, skipped


# --------------------------------------------------------------------------- writing

AnyConn = psycopg.AsyncConnection[Any]


#: Errors that mean "the server refused these values" (class 22/23, and 54 for a value too
#: large to index): retrying cannot help, the offending records are dead-lettered.
DATA_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.errors.ProgramLimitExceeded,
)


def is_transient(exc: BaseException) -> bool:
    """True for database errors worth retrying the whole batch for.

    Data errors (the server refused specific values) are not: retrying them would block the
    topic forever, so they are isolated and dead-lettered instead.
    """
    if isinstance(exc, DATA_ERRORS):
        return False
    return isinstance(exc, psycopg.Error | OSError)


async def _stage(conn: AnyConn, target: _Target, rows: Sequence[Row], copy: bool) -> None:
    await conn.execute(target.create_stage)
    await conn.execute(f"DELETE FROM {target.stage}")
    if copy:
        async with (
            conn.cursor() as cur,
            cur.copy(f"COPY {target.stage} ({_cols(target.columns)}) FROM STDIN") as cp,
        ):
            for row in rows:
                await cp.write_row(row)
    else:  # PGlite: COPY FROM STDIN breaks the connection (sinks/db.py)
        marks = ", ".join(["%s"] * len(target.columns))
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {target.stage} ({_cols(target.columns)}) VALUES ({marks})", rows
            )


async def _move(conn: AnyConn, target: _Target, rows: Sequence[Row], copy: bool) -> dict[str, int]:
    await _stage(conn, target, rows, copy)
    counts: dict[str, int] = {}
    for table, sql in target.moves:
        cur = await conn.execute(sql)
        counts[table] = counts.get(table, 0) + max(cur.rowcount, 0)
    return counts


async def _write_isolating(
    conn: AnyConn,
    target: _Target,
    items: Sequence[_Item],
    copy: bool,
    counts: dict[str, int],
    rejected: list[Rejection],
) -> None:
    """Write `items` in a savepoint; on a data error bisect until the bad records are alone."""
    rows = [row for item in items for row in item.rows]
    try:
        async with conn.transaction():  # a savepoint inside the batch transaction
            written = await _move(conn, target, rows, copy)
    except DATA_ERRORS as exc:
        if len(items) == 1:
            diag = exc.diag
            rejected.append(
                _rejection(
                    items[0].source,
                    target.name,
                    f"database refused the row: {str(exc).strip().splitlines()[0]}",
                    sqlstate=exc.sqlstate or "",
                    **({"constraint": diag.constraint_name} if diag.constraint_name else {}),
                )
            )
            return
        half = len(items) // 2
        await _write_isolating(conn, target, items[:half], copy, counts, rejected)
        await _write_isolating(conn, target, items[half:], copy, counts, rejected)
        return
    for table, n in written.items():
        counts[table] = counts.get(table, 0) + n


def _rejection_letter(rejection: Rejection) -> Row:
    return dead_letter_row(
        DeadLetter(
            stage=SINK_STAGE,
            reason=rejection.reason,
            payload=rejection.payload,
            key=rejection.key,
            occurred_at=rejection.occurred_at,
            details=rejection.details,
        )
    )


async def write_batch(
    conn: AnyConn, kind: SinkKind, records: Sequence[SourceRecord], *, copy: bool = True
) -> BatchResult:
    """Write one batch in one transaction and commit it; returns what was written.

    Raises the database error when it is transient (see :func:`is_transient`); the
    transaction is then rolled back and nothing of the batch is stored.
    """
    items, rejected, skipped = parse_records(kind, records)
    counts: dict[str, int] = {}
    async with conn.transaction():
        groups: dict[str, list[_Item]] = {}
        for item in items:
            groups.setdefault(item.target.name, []).append(item)
        for name, group in groups.items():
            await _write_isolating(conn, _TARGETS[name], group, copy, counts, rejected)
        if rejected:
            letters = [
                _Item(
                    SourceRecord(value=r.payload.encode()),
                    _TARGETS["dead_letters"],
                    [_rejection_letter(r)],
                )
                for r in rejected
            ]
            lost: list[Rejection] = []
            await _write_isolating(conn, _TARGETS["dead_letters"], letters, copy, counts, lost)
            for rejection in lost:  # refused even as a dead letter: only the log keeps it
                log.error(
                    "record refused by the database and as a dead letter",
                    extra={"reason": rejection.reason, "payload": rejection.payload[:2000]},
                )
    return BatchResult(
        records=len(records), rows_written=counts, rejected=rejected, skipped=skipped
    )


# --------------------------------------------------------------------------- retrying


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with bounded jitter.

    delay(n) = min(max_s, initial_s × multiplier^(n−1)) × (1 − jitter + 2·jitter·u), u ∈ [0, 1),
    capped again at max_s. Jitter spreads the reconnects of several agents and processes so a
    restarted database is not hit by all of them in the same instant.
    """

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def delay(self, attempt: int, u: float = 0.5) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based); u ∈ [0, 1)."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        exponent = min(attempt - 1, 64)  # beyond this the cap applies anyway
        base = min(self.max_s, self.initial_s * self.multiplier**exponent)
        return min(self.max_s, base * (1 - self.jitter + 2 * self.jitter * u))


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: BackoffPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_failure: Callable[[int, BaseException, float], None] | None = None,
    retryable: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run `operation` until it succeeds, sleeping `policy.delay(n)` after each retryable
    failure; any other exception propagates at once. Never gives up by itself: the caller
    stops it by cancellation (worker shutdown)."""
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not retryable(exc):
                raise
            attempt += 1
            delay = policy.delay(attempt, rand())
            if on_failure is not None:
                on_failure(attempt, exc, delay)
            await sleep(delay)


def _always(_exc: BaseException) -> bool:
    return True


@dataclass
class ResilientWriter:
    """One database connection and the retry loop around :func:`write_batch`.

    `write()` returns only after the batch is committed, however long the database is away;
    the agent awaiting it consumes nothing meanwhile (memory stays at one batch per agent),
    and acknowledges the records to Kafka only afterwards. An unexpected (non-database)
    error is retried the same way and logged with its traceback: the records stay unacked
    rather than lost, and `stackwatch_sink_db_up` = 0 makes the stall visible.
    """

    dsn: str
    metrics: SinkMetrics
    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    _conn: AnyConn | None = field(default=None, init=False, repr=False)
    _copy: bool = field(default=True, init=False, repr=False)
    _down_since: float | None = field(default=None, init=False, repr=False)

    async def _connection(self) -> AnyConn:
        if self._conn is None or self._conn.closed:
            conn = await connect_async(self.dsn)
            self._copy = (await server_info_async(conn)).supports_copy
            await conn.rollback()
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:  # the connection is already broken; nothing to save
                log.debug("closing a broken connection failed", extra={"error": str(exc)})

    async def write(self, kind: SinkKind, records: Sequence[SourceRecord]) -> BatchResult:
        """Write and commit one batch, retrying transient failures with backoff."""
        table = kind.table

        async def attempt() -> BatchResult:
            conn = await self._connection()
            started = self.clock()
            try:
                result = await write_batch(conn, kind, records, copy=self._copy)
            except BaseException:
                await self._discard_connection()
                raise
            self.metrics.write_seconds.labels(table).observe(self.clock() - started)
            return result

        def failed(n: int, exc: BaseException, delay: float) -> None:
            if self._down_since is None:
                self._down_since = self.clock()
            self.metrics.db_up.set(0)
            transient = is_transient(exc)
            self.metrics.db_errors.labels(table, "connection" if transient else "unexpected").inc()
            if not transient:
                log.error("unexpected error writing a batch", exc_info=exc)
            log.warning(
                "database write failed; retrying",
                extra={
                    "table": table,
                    "attempt": n,
                    "retry_in_s": round(delay, 2),
                    "records": len(records),
                    "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                },
            )

        result = await retry_transient(
            attempt,
            policy=self.policy,
            sleep=self.sleep,
            rand=self.rand,
            on_failure=failed,
            # Data errors never get here (write_batch isolates them), so whatever escapes is
            # "cannot write now": retry rather than ack records that are not stored.
            retryable=_always,
        )
        if self._down_since is not None:
            log.info(
                "database write recovered",
                extra={"table": table, "down_s": round(self.clock() - self._down_since, 1)},
            )
            self._down_since = None
        self.metrics.db_up.set(1)
        self.metrics.batch_size.labels(table).observe(len(records))
        for name, n in result.rows_written.items():
            self.metrics.rows_written.labels(name).inc(n)
        for rejection in result.rejected:
            self.metrics.rows_rejected.labels(rejection.table).inc()
            if "sqlstate" in rejection.details:
                self.metrics.db_errors.labels(rejection.table, "data").inc()
        if result.rejected:
            log.warning(
                "records dead-lettered by the sink",
                extra={
                    "table": table,
                    "count": len(result.rejected),
                    "first_reason": result.rejected[0].reason,
                },
            )
        return result
