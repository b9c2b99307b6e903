"""Table glue: per-stack `StackProcessor` objects backed by the Faust table `stack_state`.

The table (stack_id → `StackProcessor.to_state()` JSON) is the durable state: memory store +
changelog topic, so a restarted or rebalanced worker rebuilds it from the changelog (see the
README, "Stream worker", for why this beats rebuilding from the stack's past frames). Decoding the
JSON for every record would dominate the cost, so live processor objects are cached here and
the table is written once per record — always by re-assigning the value, because Faust only
sends a changelog record on assignment, never for an in-place mutation.

Writes go through `send_changelog` with an explicit partition (the partition the stack's
frames arrive on) instead of `table[key] = value`, because the timer writes too, and Faust's
`__setitem__` needs a current stream event to pick the changelog partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.types import TableT
from pydantic import ValidationError

from stackwatch.processor import MemoryArchive, ProcessorConfig, StackProcessor, WindowArchive
from stackwatch.registry import StackInfo

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    """Aware UTC wall time (injectable for tests)."""
    return datetime.now(UTC)


class TableArchive:
    """One stack's archived windows in the `window_archive` table (key `stack_id|kind|start`).

    Writes are held until `StackStates.save`, which sends them to the changelog with the
    stack's state, so a record that fails half-way leaves neither behind (`discard`).
    """

    def __init__(self, table: TableT[str, Any], stack_id: str) -> None:
        self.table = table
        self.stack_id = stack_id
        self.dirty: dict[str, dict[str, Any] | None] = {}

    def _key(self, key: str) -> str:
        return f"{self.stack_id}|{key}"

    def get(self, key: str) -> dict[str, Any] | None:
        """The archived window (a pending write first)."""
        if key in self.dirty:
            return self.dirty[key]
        value = self.table.data.get(self._key(key))
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store an archived window (written with the stack's next save)."""
        self.dirty[key] = value

    def delete(self, key: str) -> None:
        """Forget an archived window (a tombstone with the stack's next save)."""
        self.dirty[key] = None

    def write(self, partition: int) -> list[Awaitable[Any]]:
        """Apply the pending writes to the store and the changelog; their delivery futures."""
        futures: list[Awaitable[Any]] = []
        key_partition = getattr(self.table.data, "_key_partition", None)
        for key, value in sorted(self.dirty.items()):
            full = self._key(key)
            if value is None:
                self.table.data.pop(full, None)
                if isinstance(key_partition, dict):
                    key_partition.pop(full, None)
            else:
                self.table.data[full] = value
                if isinstance(key_partition, dict):
                    key_partition[full] = partition  # memory store: rebalance cleanup
            futures.append(self.table.send_changelog(partition, full, value))
        self.dirty.clear()
        return futures


@dataclass
class _Live:
    proc: StackProcessor
    stack: StackInfo | None
    partition: int
    touched: datetime  # wall time this worker last applied a record of the stack
    archive: TableArchive | None = None
    # The registry entry as last dumped to the state, kept with the dump: the entry rarely
    # changes, and dumping it again on every save cost more than the save itself.
    dumped: tuple[StackInfo, dict[str, Any]] | None = None

    def stack_dump(self) -> dict[str, Any] | None:
        if self.stack is None:
            return None
        if self.dumped is None or self.dumped[0] is not self.stack:
            dump = self.stack.model_dump(
                mode="json", exclude={"password", "password_hash", "sm4_keys"}
            )
            self.dumped = (self.stack, dump)
        return self.dumped[1]


class StackStates:
    """Live processors of the stacks on this worker's partitions, over the state table."""

    def __init__(
        self,
        table: TableT[str, Any],
        cfg: ProcessorConfig,
        clock: Callable[[], datetime] = wall_clock,
        archive_table: TableT[str, Any] | None = None,
    ) -> None:
        self.table = table
        self.cfg = cfg
        self.clock = clock
        self.archive_table = archive_table
        self._live: dict[str, _Live] = {}

    def get(
        self, stack_id: str, partition: int | None = None, stack: StackInfo | None = None
    ) -> StackProcessor:
        """The live processor of `stack_id` (from the cache, the table, or new).

        `stack` (the registry entry the reading was resolved with) is remembered in the state,
        so a timer tick after a restart knows the stack's sector/process and so its limits.
        """
        live = self._live.get(stack_id)
        if live is None:
            archive = (
                TableArchive(self.archive_table, stack_id)
                if self.archive_table is not None
                else None
            )
            proc, stored = self._load(stack_id, archive or MemoryArchive())
            known = partition if partition is not None else self.partition_of(stack_id)
            live = _Live(proc, stored, known if known is not None else 0, self.clock(), archive)
            self._live[stack_id] = live
        if partition is not None:
            live.partition = partition
        if stack is not None:
            live.stack = stack
        return live.proc

    def stack_info(self, stack_id: str) -> StackInfo | None:
        """The stack's registry entry as last seen with its readings."""
        live = self._live.get(stack_id)
        return live.stack if live is not None else None

    def live(self, stack_id: str) -> bool:
        """Whether a live processor of the stack is held (it may have unsaved changes)."""
        return stack_id in self._live

    def known(self, stack_id: str) -> bool:
        """Whether this worker holds state for the stack (live or in the table)."""
        return stack_id in self._live or isinstance(self.table.data.get(stack_id), dict)

    def _load(
        self, stack_id: str, archive: WindowArchive
    ) -> tuple[StackProcessor, StackInfo | None]:
        value = self.table.data.get(stack_id)
        if not isinstance(value, dict):
            return StackProcessor(stack_id, self.cfg, archive), None
        try:
            stack = StackInfo.model_validate(value["stack"]) if value.get("stack") else None
            return StackProcessor.from_state(value["processor"], self.cfg, archive), stack
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            # A state written by an incompatible version must not stop the worker; the stack
            # restarts from empty windows (its hour in progress is then reported incomplete).
            log.error(
                "unreadable stack state; starting fresh",
                extra={"stack_id": stack_id, "error": str(exc)},
            )
            return StackProcessor(stack_id, self.cfg, archive), None

    def save(self, stack_id: str) -> Awaitable[Any]:
        """Write the stack's state to the table (store + changelog, one record), and the
        archived windows it changed (usually none).

        Returns the changelog delivery futures, gathered: the checkpoint awaits them before it
        acknowledges its records, so an input offset is never committed ahead of the state it
        produced (a restart would otherwise recover a state that lacks records it will not see
        again).
        """
        live = self._live[stack_id]
        live.touched = self.clock()
        state: dict[str, Any] = {
            "v": 1,
            "processor": live.proc.to_state(),
            "stack": live.stack_dump(),
        }
        self.table.data[stack_id] = state
        key_partition = getattr(self.table.data, "_key_partition", None)
        if isinstance(key_partition, dict):
            key_partition[stack_id] = live.partition  # memory store: keep rebalance cleanup right
        archived = live.archive.write(live.partition) if live.archive is not None else []
        sent = self.table.send_changelog(live.partition, stack_id, state)
        return asyncio.gather(*archived, sent) if archived else sent

    def tick_time(self, stack_id: str) -> datetime | None:
        """`now` for `StackProcessor.tick`, in the time domain of the stack's receive times.

        The processor's clock is "newest event time + wall time elapsed since that frame
        arrived". Passing the wall clock would be right live, but in a replay (recorded
        `received_at`) it would jump the clock to today. So the elapsed part is measured here,
        from when this worker last applied a record of the stack: the stack's newest receive
        time + idle wall time. Live both are the same; in a replay only real idleness counts.
        """
        live = self._live.get(stack_id)
        if live is None or live.proc.clock_arrival is None:
            return None
        idle = max(self.clock() - live.touched, timedelta(0))
        return live.proc.clock_arrival + idle

    def partition_of(self, stack_id: str) -> int | None:
        """Partition of a stack: where its readings arrived, or its changelog partition."""
        live = self._live.get(stack_id)
        if live is not None:
            return live.partition
        key_partition = getattr(self.table.data, "_key_partition", None)
        if isinstance(key_partition, dict):
            value = key_partition.get(stack_id)
            return value if isinstance(value, int) else None
        return None

    def owned(self, active_partitions: Iterable[int]) -> list[str]:
        """Stacks in the table whose partition this worker owns (sorted, deterministic)."""
        active = set(active_partitions)
        stacks = {str(k) for k in self.table.data} | set(self._live)
        return sorted(s for s in stacks if self.partition_of(s) in active)

    def discard(self, stack_id: str) -> None:
        """Forget one live object whose record was not completed (its outputs may be unsent).

        The next access reloads the last saved state, so a re-delivered record is applied
        again instead of being seen as a duplicate of an effect nobody received.
        """
        self._live.pop(stack_id, None)

    def invalidate(self) -> None:
        """Forget live objects (partitions revoked: the table is the truth again)."""
        self._live.clear()

    def __len__(self) -> int:
        return len(self._live)
