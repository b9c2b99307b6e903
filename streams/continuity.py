"""Offset continuity guard: re-read records the Faust consumer skipped.

Measured here (faust-streaming 0.15.3, aiokafka 0.14, Tansu): right after a worker restarts and
recovers its table from a non-empty changelog, the consumer of a source topic resumed at the
committed offset, delivered two or three records and then skipped a block of ~25 (offsets
512–536 after 509–511), treating them as a "gap"; later one record was delivered twice. Lost
readings mean lost minutes in an hour, so every agent checks that offsets arrive contiguously
per partition and, on a jump, seeks back to the first missing offset and ignores the records
after the gap until the missing ones have been re-delivered (they follow again after it).
Records at or below the last handled offset are re-deliveries and are skipped (not handled
twice). A gap that persists for `give_up_s` is a hole in the log (offsets with no record,
e.g. aborted transactions, or measured on Tansu: an offset assigned to a produce request that
a broker restart cut off, the producer's retry landing at a later offset); it is accepted with
an error log, and reading resumes at the lowest offset seen after the hole, so the records
passed over while waiting are still handled.

The first record of a partition after an assignment is checked too, against the offset the
group resumes at (its committed offset, or the log start): measured on Tansu with batching
producers, a fresh worker's first records of a partition began past offsets that had been
fetched before its recovery ended, and nothing showed the loss (44 % of a day's readings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from faust.types import TP

log = logging.getLogger(__name__)

Seek = Callable[[TP, int], Awaitable[None]]
StartOffset = Callable[[TP], Awaitable[int | None]]
EndOffset = Callable[[TP], Awaitable[int | None]]


class Continuity:
    """Per-partition next expected offset of one agent's source topic."""

    def __init__(
        self,
        name: str,
        seek: Seek,
        *,
        give_up_s: float = 30.0,
        reseek_s: float = 1.0,
        seek_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        start_offset: StartOffset | None = None,
    ) -> None:
        self.name = name
        self._seek = seek
        self._start_offset = start_offset
        self.give_up_s = give_up_s
        self.reseek_s = reseek_s
        self.seek_timeout_s = seek_timeout_s
        self.clock = clock
        self._next: dict[TP, int] = {}
        self._healing: dict[TP, tuple[int, float]] = {}  # tp → (offset sought, since)
        self._beyond: dict[TP, int] = {}  # tp → lowest offset delivered past the gap
        self._admitted_at: dict[TP, float] = {}  # tp → clock of the last admitted record
        self._tail_checked: dict[TP, int] = {}  # tp → next offset when the tail was sought
        self._seen_at: dict[TP, float] = {}  # tp → clock when first seen assigned (`note`)
        self._reseeks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        """Partitions were (re)assigned: the consumer restarts at the committed offsets."""
        self._next.clear()
        self._healing.clear()
        self._beyond.clear()
        self._admitted_at.clear()
        self._tail_checked.clear()
        self._seen_at.clear()

    async def admit(self, tp: TP, offset: int) -> bool:
        """True if the record at `offset` is the next one and must be handled now."""
        expected = await self.expected_offset(tp)
        if expected is None or offset == expected:
            self._next[tp] = offset + 1
            self._admitted_at[tp] = self.clock()
            self._healing.pop(tp, None)
            self._beyond.pop(tp, None)
            return True
        if offset < expected:
            return False  # re-delivered after a seek, or delivered twice: already handled
        beyond = self._beyond[tp] = min(self._beyond.get(tp, offset), offset)
        healing = self._healing.get(tp)
        if healing is not None and healing[0] == expected:
            if self.clock() - healing[1] < self.give_up_s:
                return False  # still waiting for the re-delivery of the missing records
            log.error(
                "offset gap persisted; accepting it: %s %s offsets %d..%d hold no record",
                self.name, tp, expected, beyond - 1,
                extra={"agent": self.name, "tp": str(tp), "missing_from": expected,
                       "resume_at": beyond},
            )
            self._beyond.pop(tp, None)
            self._next[tp] = beyond
            if offset == beyond:
                self._next[tp] = offset + 1
                self._healing.pop(tp, None)
                return True
            # Records beyond..offset-1 were passed over while waiting: read them again.
            await self._heal(tp, beyond)
            return False
        log.warning(
            "consumer skipped records; seeking back: %s %s expected %d, got %d",
            self.name, tp, expected, offset,
            extra={"agent": self.name, "tp": str(tp), "expected": expected, "got": offset},
        )
        await self._heal(tp, expected)
        return False

    async def expected_offset(self, tp: TP) -> int | None:
        """The next offset to handle on `tp`: the one after the last admitted record or,
        before the first record of an assignment, the offset the group resumes at (records
        before it were skipped if the first one delivered is past it)."""
        expected = self._next.get(tp)
        if expected is None and self._start_offset is not None:
            expected = await self._start_offset(tp)
            if expected is not None:
                self._next[tp] = expected  # asked once per assignment, not per record
        return expected

    def note_assigned(self, tps: Iterable[TP]) -> None:
        """Start the idle clock of partitions assigned since the last `reset` (a partition
        that never delivers its first record is idle from here)."""
        now = self.clock()
        for tp in tps:
            self._seen_at.setdefault(tp, now)

    def idle_since(self, tp: TP) -> float | None:
        """Clock of the last admitted record of `tp`, else of its assignment being noted."""
        return self._admitted_at.get(tp, self._seen_at.get(tp))

    async def check_tails(
        self, end_offset: EndOffset, *, idle_s: float, assigned: Iterable[TP] = ()
    ) -> list[TP]:
        """Seek back where a partition's log goes on past the next expected record although
        nothing was admitted for `idle_s`: records skipped at the end of what was produced
        are followed by no record whose jump would show them (measured: a worker handled
        offset 0 of a partition, never got 1–6, and a 2005 logger's hour lost six of its
        seven 10-minute records). `assigned` partitions that never delivered a record are
        checked from the offset the group resumes at. Each next offset is sought once from
        here. Returns the partitions sought."""
        self.note_assigned(assigned)
        now = self.clock()
        sought: list[TP] = []
        for tp in set(self._next) | set(self._seen_at):
            if tp in self._healing:
                continue
            since = self.idle_since(tp)
            if since is None or now - since < idle_s:
                continue
            expected = await self.expected_offset(tp)
            if expected is None or self._tail_checked.get(tp) == expected:
                continue
            end = await end_offset(tp)
            self._tail_checked[tp] = expected  # once per next offset, answered or not
            if end is None or end <= expected:
                continue
            log.warning(
                "records after the last one handled were not delivered; seeking back: "
                "%s %s expected %d, log ends at %d",
                self.name, tp, expected, end,
                extra={"agent": self.name, "tp": str(tp), "expected": expected, "end": end},
            )
            await self._heal(tp, expected)
            sought.append(tp)
        return sought

    async def seek(self, tp: TP, offset: int) -> None:
        """One seek, given up after `seek_timeout_s` (the re-seek loop tries again).

        The seek runs on Faust's consumer thread. A seek asked for while the group was
        rebalancing never completed (measured: a second worker joined 1 s after the guard
        sought back; the decode agent waited on that seek for good and its partitions were
        never read again, a third of the day lost). An agent must never wait on it forever.
        """
        try:
            await asyncio.wait_for(self._seek(tp, offset), self.seek_timeout_s)
        except TimeoutError:
            log.warning(
                "seek did not complete; trying again: %s %s offset %d",
                self.name, tp, offset,
                extra={"agent": self.name, "tp": str(tp), "offset": offset},
            )

    async def _heal(self, tp: TP, offset: int) -> None:
        """Seek back to `offset` now and, until it arrives, again every `reseek_s`."""
        since = self.clock()
        self._healing[tp] = (offset, since)
        await self.seek(tp, offset)
        task = asyncio.ensure_future(self._reseek(tp, offset, since))
        self._reseeks.add(task)
        task.add_done_callback(self._reseeks.discard)

    async def _reseek(self, tp: TP, offset: int, since: float) -> None:
        """Repeat the seek every `reseek_s` until the missing record arrives or we give up.

        Faust's fetch loop may still hold records fetched before the seek; passing them on
        moves its read offset past the seek target, and it then drops the re-fetched missing
        records as already read, so one seek is not enough (measured: the read offset was at
        the partition's end 0.5 s after seeking back, and nothing more arrived).

        The seeks go on after `give_up_s`: the hole is only accepted when a record past it is
        delivered again, and when it lies at the end of what was produced, every record past
        it was already delivered (and refused) while waiting. Stopping there stalled the
        partition for good (measured: a broker restart left a hole at readings offset 62 of
        63 records, and half the stacks got no minute after it).
        """
        while True:
            await asyncio.sleep(self.reseek_s)
            if self._healing.get(tp) != (offset, since):
                return  # healed, reset, or a different gap is being healed
            await self.seek(tp, offset)
