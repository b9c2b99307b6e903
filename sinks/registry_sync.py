"""Upsert the stack registry (YAML, `stackwatch.registry`) into the `stacks` table at start.

The YAML file is the source of truth; the table exists so dashboards, reports and the alert
API can join plant, city, sector and location. Each stack is upserted in its own savepoint:
one stack the table refuses (e.g. an MN still held by another stack id, an interval outside
the HJ 212 ranges the table enforces) is reported with the reason and does not stop the rest.
Stacks that vanished from the file are left in place (history refers to them).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from pydantic import BaseModel, Field

from stackwatch.registry import StackInfo, StackRegistry

__all__ = ["RegistrySyncResult", "stack_row", "sync_registry"]

log = logging.getLogger(__name__)

STACK_COLUMNS = (
    "stack_id",
    "mn",
    "password_sha256",
    "name",
    "plant",
    "city",
    "province",
    "sector",
    "process",
    "lat",
    "lon",
    "program",
    "rtd_interval_s",
    "min_interval_min",
)

_UPSERT = (
    f"INSERT INTO stacks ({', '.join(STACK_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(STACK_COLUMNS))}) "
    "ON CONFLICT (stack_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in STACK_COLUMNS if c != "stack_id")
    # only touch (and re-stamp updated_at) when something changed
    + " WHERE ("
    + ", ".join(f"stacks.{c}" for c in STACK_COLUMNS if c != "stack_id")
    + ") IS DISTINCT FROM ("
    + ", ".join(f"EXCLUDED.{c}" for c in STACK_COLUMNS if c != "stack_id")
    + ")"
)


class RegistrySyncResult(BaseModel):
    """What a sync did."""

    upserted: int = Field(default=0, description="Stacks inserted or changed.")
    unchanged: int = 0
    rejected: dict[str, str] = Field(default_factory=dict, description="stack_id → reason.")


def _blank_to_none(value: str) -> str | None:
    return value or None


def stack_row(stack: StackInfo) -> tuple[Any, ...]:
    """The `stacks` row of one registry entry.

    No password, in any form, reaches the database (`password_sha256` stays NULL: an unsalted
    digest of a short PW is as good as the PW, and nothing that reads the table needs it); an
    empty name falls back to the stack id (the column is NOT NULL and the dashboards show it).
    """
    return (
        stack.stack_id,
        stack.mn,
        None,
        stack.name or stack.stack_id,
        stack.plant,
        _blank_to_none(stack.city),
        _blank_to_none(stack.province),
        stack.sector,
        stack.process,
        stack.lat,
        stack.lon,
        stack.program,
        stack.rtd_interval_s,
        stack.min_interval_min,
    )


async def sync_registry(
    conn: psycopg.AsyncConnection[Any], registry: StackRegistry
) -> RegistrySyncResult:
    """Upsert every stack of `registry` in one transaction (one savepoint per stack)."""
    result = RegistrySyncResult()
    async with conn.transaction():
        for stack in registry.stacks:
            try:
                async with conn.transaction():
                    cur = await conn.execute(_UPSERT, stack_row(stack))
            except (psycopg.IntegrityError, psycopg.DataError) as exc:
                reason = str(exc).strip().splitlines()[0]
                result.rejected[stack.stack_id] = reason
                log.warning(
                    "stack not stored in the stacks table",
                    extra={"stack_id": stack.stack_id, "mn": stack.mn, "error": reason},
                )
                continue
            if cur.rowcount > 0:
                result.upserted += 1
            else:
                result.unchanged += 1
    log.info(
        "stack registry synced to the database",
        extra={
            "upserted": result.upserted,
            "unchanged": result.unchanged,
            "rejected": len(result.rejected),
        },
    )
    return result
