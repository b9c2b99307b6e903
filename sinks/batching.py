"""Write one batch in one transaction; bisect data errors into dead letters.

Each batch is written in ONE transaction: the rows of each target are COPY'd into its staging
table and moved into the real table(s) (:mod:`sinks.targets`), then committed.

Errors are split in two kinds (:mod:`sinks.db_errors`). *Data* errors (a constraint or type
the database refuses, `IntegrityError`/`DataError`) are isolated by bisecting the batch inside
savepoints; the offending records go to `dead_letters` (stage `sink`) with the database's
reason, and the rest of the batch is written — bad input never blocks the pipeline. Every
*other* database error (connection lost, server shut down, schema not migrated yet) is
transient: :func:`write_batch` raises it, and the caller
(:class:`sinks.delivery.ResilientWriter`) rolls back, backs off exponentially and retries the
same batch, so nothing is acknowledged to Kafka before it is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from sinks.db_errors import DATA_ERRORS
from sinks.records import (
    BatchResult,
    Item,
    Rejection,
    SinkKind,
    SourceRecord,
    parse_records,
    reject,
)
from sinks.rows import Row, dead_letter_row
from sinks.targets import TARGETS, Target, column_list
from stackwatch.models import DeadLetter

__all__ = ["SINK_STAGE", "AnyConn", "write_batch"]

log = logging.getLogger(__name__)

AnyConn = psycopg.AsyncConnection[Any]

#: Dead letters written by this stage carry this `stage` value.
SINK_STAGE = "sink"


async def _stage(conn: AnyConn, target: Target, rows: Sequence[Row], copy: bool) -> None:
    await conn.execute(target.create_stage)
    await conn.execute(f"DELETE FROM {target.stage}")
    if copy:
        async with (
            conn.cursor() as cur,
            cur.copy(f"COPY {target.stage} ({column_list(target.columns)}) FROM STDIN") as cp,
        ):
            for row in rows:
                await cp.write_row(row)
    else:  # PGlite: COPY FROM STDIN breaks the connection (sinks/db.py)
        marks = ", ".join(["%s"] * len(target.columns))
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {target.stage} ({column_list(target.columns)}) VALUES ({marks})", rows
            )


async def _move(conn: AnyConn, target: Target, rows: Sequence[Row], copy: bool) -> dict[str, int]:
    await _stage(conn, target, rows, copy)
    counts: dict[str, int] = {}
    for table, sql in target.moves:
        cur = await conn.execute(sql)
        counts[table] = counts.get(table, 0) + max(cur.rowcount, 0)
    return counts


async def _write_isolating(
    conn: AnyConn,
    target: Target,
    items: Sequence[Item],
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
                reject(
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

    Raises the database error when it is transient (:func:`sinks.db_errors.is_transient`); the
    transaction is then rolled back and nothing of the batch is stored.
    """
    items, rejected, skipped = parse_records(kind, records)
    counts: dict[str, int] = {}
    async with conn.transaction():
        groups: dict[str, list[Item]] = {}
        for item in items:
            groups.setdefault(item.target.name, []).append(item)
        for name, group in groups.items():
            await _write_isolating(conn, TARGETS[name], group, copy, counts, rejected)
        if rejected:
            letters = [
                Item(
                    SourceRecord(value=r.payload.encode()),
                    TARGETS["dead_letters"],
                    [_rejection_letter(r)],
                )
                for r in rejected
            ]
            lost: list[Rejection] = []
            await _write_isolating(conn, TARGETS["dead_letters"], letters, copy, counts, lost)
            for rejection in lost:  # refused even as a dead letter: only the log keeps it
                log.error(
                    "record refused by the database and as a dead letter",
                    extra={"reason": rejection.reason, "payload": rejection.payload[:2000]},
                )
    return BatchResult(
        records=len(records), rows_written=counts, rejected=rejected, skipped=skipped
    )

