"""Table glue: per-stack `StackProcessor` objects backed by the Faust table `stack_state`.

The table (stack_id → `StackProcessor.to_state()` JSON) is the durable state: memory store +
changelog topic, so a restarted or rebalanced worker rebuilds it from the changelog (see the
README, "Stream worker", for why this beats rebuilding from the readings topic). Decoding the
JSON for every record would dominate the cost, so live processor objects are cached here and
the table is written once per record — always by re-assigning the value, because Faust only
sends a changelog record on assignment, never for an in-place mutation.

Writes go through `send_changelog` with an explicit partition (the partition the stack's
readings arrive on) instead of `table[key] = value`, because the timer writes too, and Faust's
`__setitem__` needs a current stream event to pick the changelog partition.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.types import TableT
from pydantic import ValidationError

from stackwatch.processor import ProcessorConfig, StackProcessor
from stackwatch.registry import StackInfo

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    """Aware UTC wall time (injectable for tests)."""
    return datetime.now(UTC)


@dataclass
class _Live:
    proc: StackProcessor
    stack: StackInfo | None
    partition: int
    touched: datetime  # wall time this worker last applied a record of the stack


class StackStates:
    """Live processors of the stacks on this worker's partitions, over the state table."""

    def __init__(
        self,
        table: TableT[str, Any],
        cfg: ProcessorConfig,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.table = table
        self.cfg = cfg
        self.clock = clock
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
            proc, stored = self._load(stack_id)
            known = partition if partition is not None else self.partition_of(stack_id)
            live = _Live(proc, stored, known if known is not None else 0, self.clock())
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

    def _load(self, stack_id: str) -> tuple[StackProcessor, StackInfo | None]:
        value = self.table.data.get(stack_id)
        if not isinstance(value, dict):
            return StackProcessor(stack_id, self.cfg), None
        try:
            stack = StackInfo.model_validate(value["stack"]) if value.get("stack") else None
            return StackProcessor.from_state(value["processor"], self.cfg), stack
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            # A state written by an incompatible version must not stop the worker; the stack
            # restarts from empty windows (its hour in progress is then reported incomplete).
            log.error(
                "unreadable stack state; starting fresh",
                extra={"stack_id": stack_id, "error": str(exc)},
            )
            return StackProcessor(stack_id, self.cfg), None

    def save(self, stack_id: str) -> Awaitable[Any]:
        """Write the stack's state to the table (store + changelog, one record).

        Returns the changelog delivery future: the agent awaits it before taking the next
        record, so an input offset is never committed ahead of the state it produced (a
        restart would otherwise recover a state that lacks records it will not see again).
        """
        live = self._live[stack_id]
        live.touched = self.clock()
        state: dict[str, Any] = {"v": 1, "processor": live.proc.to_state(), "stack": None}
        if live.stack is not None:
            state["stack"] = live.stack.model_dump(
                mode="json", exclude={"password", "password_sha256"}
            )
        self.table.data[stack_id] = state
        key_partition = getattr(self.table.data, "_key_partition", None)
        if isinstance(key_partition, dict):
            key_partition[stack_id] = live.partition  # memory store: keep rebalance cleanup right
        return self.table.send_changelog(live.partition, stack_id, state)

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
