"""Offset continuity guard: re-read records the Faust consumer skipped.

Measured here (faust-streaming 0.15.3, aiokafka 0.14, Tansu): right after a worker restarts and
recovers its table from a non-empty changelog, the consumer of a source topic resumed at the
committed offset, delivered two or three records and then skipped a block of ~25 (offsets
512–536 after 509–511), treating them as a "gap"; later one record was delivered twice. Lost
readings mean lost minutes in an hour, so every agent checks that offsets arrive contiguously
per partition and, on a jump, seeks back to the first missing offset and ignores the records
after the gap until the missing ones have been re-delivered (they follow again after it).
Records at or below the last handled offset are re-deliveries and are skipped (not handled
twice). A gap that persists for `give_up_s` (records that truly do not exist, e.g. aborted
transactions) is accepted with an error log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from faust.types import TP

log = logging.getLogger(__name__)

Seek = Callable[[TP, int], Awaitable[None]]


class Continuity:
    """Per-partition next expected offset of one agent's source topic."""

    def __init__(
        self,
        name: str,
        seek: Seek,
        *,
        give_up_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.seek = seek
        self.give_up_s = give_up_s
        self.clock = clock
        self._next: dict[TP, int] = {}
        self._healing: dict[TP, tuple[int, float]] = {}  # tp → (offset sought, since)

    def reset(self) -> None:
        """Partitions were (re)assigned: the consumer restarts at the committed offsets."""
        self._next.clear()
        self._healing.clear()

    async def admit(self, tp: TP, offset: int) -> bool:
        """True if the record at `offset` is the next one and must be handled now."""
        expected = self._next.get(tp)
        if expected is None or offset == expected:
            self._next[tp] = offset + 1
            self._healing.pop(tp, None)
            return True
        if offset < expected:
            return False  # re-delivered after a seek, or delivered twice: already handled
        healing = self._healing.get(tp)
        if healing is not None and healing[0] == expected:
            if self.clock() - healing[1] < self.give_up_s:
                return False  # still waiting for the re-delivery of the missing records
            log.error(
                "offset gap persisted; accepting it",
                extra={"agent": self.name, "tp": str(tp), "missing_from": expected, "at": offset},
            )
            self._next[tp] = offset + 1
            self._healing.pop(tp, None)
            return True
        log.warning(
            "consumer skipped records; seeking back",
            extra={"agent": self.name, "tp": str(tp), "expected": expected, "got": offset},
        )
        self._healing[tp] = (expected, self.clock())
        await self.seek(tp, expected)
        return False
