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

With `overlap`, steps 3 and 4 run in the background while the agent goes on applying the next
records: a checkpoint's deliveries take a broker round trip (plus the producers' linger), and
an agent that waited for them applied nothing meanwhile (measured at 500 frames/s offered,
one worker: the agent sat in checkpoints 4.3 s of every 10 s and handled ~400 frames/s; with
the overlap 1.2–2.4 s, and ~470 frames/s). One checkpoint completes at a time and in order:
the next `flush` first waits for the previous one, so acknowledgements never overtake each
other, and a failed delivery surfaces there (or at `settle`). The defaults (2,000 records or
1 s) leave a checkpoint's deliveries time to finish before the next flush: with 0.2 s the agent
still waited for them 1.3–2 s of every 10 s at 500 frames/s offered (national scenario), and
processed ~280 frames/s; with 1 s it did not wait, and processed ~370.

A crash between checkpoints re-processes at most two checkpoints of records (the one being
completed and the one being applied): the processor treats repeats as duplicates and outputs
carry natural keys, so results stay exact. The same holds for SIGTERM and rebalances: the
apps run with `stream_wait_empty=False`, so Faust commits what was acknowledged and does not
wait for a pending checkpoint; on revocation the checkpoint is dropped unacknowledged (`drop`).
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
        overlap: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ack = ack
        self.save = save
        self.max_records = max_records
        self.interval_s = interval_s
        self.overlap = overlap
        self.clock = clock
        self._completing: asyncio.Future[int] | None = None
        self._generation = 0  # bumped by `drop`: a completion of an older one acks nothing
        self._events: list[E] = []
        self._futures: list[Awaitable[Any]] = []
        self._opened: float | None = None
        self._lock = asyncio.Lock()
        self._flushing = asyncio.Lock()  # the agent's and the timer's flushes, one at a time

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
        Acknowledging them later could commit offsets past records not yet re-processed: a
        checkpoint still completing in the background acknowledges nothing either (it is not
        cancelled: that would cancel the producer's delivery futures too).
        """
        self._events, self._futures, self._opened = [], [], None
        self._generation += 1
        self._completing = None

    async def flush(self) -> int:
        """Make the pending records durable, then acknowledge them (with `overlap`, in the
        background); how many records the checkpoint covers.

        On a failed delivery the records stay unacknowledged and the error propagates (the
        worker stops and re-processes them from the last committed offset after restart).
        """
        async with self._flushing:
            await self.settle()
            async with self._lock:
                events, futures = self._events, self._futures
                self._events, self._futures, self._opened = [], [], None
                if self.save is not None:
                    futures.extend(self.save())
            if not self.overlap:
                return await self._complete(self._generation, events, futures)
            self._completing = asyncio.ensure_future(
                self._complete(self._generation, events, futures)
            )
            return len(events)

    async def settle(self) -> None:
        """Wait for the checkpoint completing in the background; its failure is raised here."""
        completing, self._completing = self._completing, None
        if completing is not None:
            await completing

    def settled_or_failed(self) -> bool:
        """Nothing completing in the background, or it has finished (`settle` will not
        block): the checkpoint timer surfaces a failure without waiting on a delivery."""
        return self._completing is None or self._completing.done()

    async def _complete(
        self, generation: int, events: list[E], futures: list[Awaitable[Any]]
    ) -> int:
        if futures:
            await asyncio.gather(*futures)
        if generation != self._generation:
            return 0  # revoked meanwhile: whoever owns the partitions now re-processes them
        for event in events:
            await self.ack(event)
        return len(events)


__all__ = ["Checkpoint"]
