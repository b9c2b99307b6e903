"""Checkpoints: acknowledge a batch of input records once everything they caused is durable.

Kafka Streams commits every `commit.interval.ms`, quixstreams every `commit_interval`; the
worker does the same instead of waiting for the broker after every record (issue #14: the
per-record round trips, not the CPU, bounded the worker). An agent applies a record, queues
its outputs without awaiting them, and `add`s the record's event with the outputs' delivery
futures. Every `max_records` records or `interval_s` seconds, whichever comes first,
`flush` makes the checkpoint durable in this order:

1. the outputs were already queued, record by record, in input order;
2. `save` writes each stack the checkpoint changed to the changelog, once;
3. every delivery (outputs and state) is awaited;
4. only then are the records acknowledged, so Faust commits their offsets.

A crash between checkpoints re-processes at most one checkpoint of records: the processor
treats repeats as duplicates and outputs carry natural keys, so results stay exact. The same
holds for SIGTERM and rebalances: the apps run with `stream_wait_empty=False`, so Faust
commits what was acknowledged and does not wait for a pending checkpoint; on revocation
the checkpoint is dropped unacknowledged (`drop`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

E = TypeVar("E")
Ack = Callable[[E], Awaitable[Any]]
Save = Callable[[], list[Awaitable[Any]]]


class Checkpoint(Generic[E]):
    """The records one agent has applied since its last durable checkpoint."""

    def __init__(
        self,
        ack: Ack[E],
        *,
        save: Save | None = None,
        max_records: int = 500,
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ack = ack
        self.save = save
        self.max_records = max_records
        self.interval_s = interval_s
        self.clock = clock
        self._events: list[E] = []
        self._futures: list[Awaitable[Any]] = []
        self._opened: float | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def applying(self) -> AsyncIterator[None]:
        """Hold while a record is applied and added: a flush never saves half a record."""
        async with self._lock:
            yield

    def add(self, event: E, futures: list[Awaitable[Any]]) -> None:
        """A record was applied and its outputs queued (call inside `applying`)."""
        if self._opened is None:
            self._opened = self.clock()
        self._events.append(event)
        self._futures.extend(futures)

    def __len__(self) -> int:
        return len(self._events)

    def due(self) -> bool:
        """Enough records, or the oldest has waited `interval_s`."""
        if not self._events:
            return False
        if len(self._events) >= self.max_records:
            return True
        return self._opened is not None and self.clock() - self._opened >= self.interval_s

    def drop(self) -> None:
        """Partitions were revoked: forget the pending records without acknowledging them.

        Their stacks' unsaved states are dropped too; Faust seeks to the committed offsets
        after the rebalance, so whoever owns the partitions now processes them again.
        Acknowledging them later could commit offsets past records not yet re-processed.
        """
        self._events, self._futures, self._opened = [], [], None

    async def flush(self) -> int:
        """Make the pending records durable, then acknowledge them; how many were acked.

        On a failed delivery the records stay unacknowledged and the error propagates (the
        worker stops and re-processes them from the last committed offset after restart).
        """
        async with self._lock:
            events, futures = self._events, self._futures
            self._events, self._futures, self._opened = [], [], None
            if self.save is not None:
                futures.extend(self.save())
        if futures:
            await asyncio.gather(*futures)
        for event in events:
            await self.ack(event)
        return len(events)


__all__ = ["Checkpoint"]
