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
the overlap 1.2–2.4 s, and ~470 frames/s). Up to `in_flight` checkpoints complete in the
background; a flush beyond that first waits for the oldest. Acknowledgements never overtake
each other: a checkpoint acknowledges only after the one before it did, and acknowledges
nothing if that one failed; a failed delivery surfaces at a later flush or at `settle`.
With one in flight and 0.2 s checkpoints the agent still waited for the previous one's
deliveries 1.3–2 s of every 10 s (national scenario, 500 frames/s offered) and processed ~280
frames/s; two in flight of 0.25 s processed ~430 (`streams.checkpoints_in_flight`).

A crash between checkpoints re-processes at most `in_flight` + 1 checkpoints of records (those
completing and the one being applied): the processor treats repeats as duplicates and outputs
carry natural keys, so results stay exact. The same holds for SIGTERM and rebalances: the
apps run with `stream_wait_empty=False`, so Faust commits what was acknowledged and does not
wait for a pending checkpoint; on revocation the checkpoints are dropped unacknowledged
(`drop`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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
        in_flight: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be >= 1")
        self.ack = ack
        self.save = save
        self.max_records = max_records
        self.interval_s = interval_s
        self.overlap = overlap
        self.in_flight = in_flight  # with `overlap`: checkpoints completing at once, at most
        self.clock = clock
        self._completing: deque[asyncio.Future[int]] = deque()  # oldest first
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
        self._completing.clear()

    async def flush(self) -> int:
        """Make the pending records durable, then acknowledge them (with `overlap`, in the
        background); how many records the checkpoint covers.

        On a failed delivery the records stay unacknowledged and the error propagates (the
        worker stops and re-processes them from the last committed offset after restart).
        """
        async with self._flushing:
            await self._settle(keep=self.in_flight - 1)
            async with self._lock:
                events, futures = self._events, self._futures
                self._events, self._futures, self._opened = [], [], None
                if self.save is not None:
                    futures.extend(self.save())
            if not self.overlap:
                return await self._complete(self._generation, events, futures, None)
            previous = self._completing[-1] if self._completing else None
            self._completing.append(
                asyncio.ensure_future(
                    self._complete(self._generation, events, futures, previous)
                )
            )
            return len(events)

    async def settle(self) -> None:
        """Wait for the checkpoints completing in the background; a failure is raised here."""
        async with self._flushing:
            await self._settle(keep=0)

    async def _settle(self, keep: int) -> None:
        """Wait, oldest first, until at most `keep` checkpoints are still completing."""
        while len(self._completing) > keep:
            await self._completing.popleft()

    def settled_or_failed(self) -> bool:
        """Nothing completing in the background, or all of it has finished (`settle` will not
        block): the checkpoint timer surfaces a failure without waiting on a delivery."""
        oldest = self._completing[0] if self._completing else None
        if oldest is not None and oldest.done() and not oldest.cancelled() and oldest.exception():
            return True
        return all(completing.done() for completing in self._completing)

    async def _complete(
        self,
        generation: int,
        events: list[E],
        futures: list[Awaitable[Any]],
        previous: asyncio.Future[int] | None,
    ) -> int:
        if futures:
            await asyncio.gather(*futures)
        if previous is not None:
            # Acknowledgements stay in order: an older checkpoint acknowledges first. If it
            # failed, its error is raised by `settle`; this one acknowledges nothing.
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None:
                return 0
        if generation != self._generation:
            return 0  # revoked meanwhile: whoever owns the partitions now re-processes them
        for event in events:
            await self.ack(event)
        return len(events)


__all__ = ["Checkpoint"]
