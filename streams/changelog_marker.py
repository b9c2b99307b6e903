"""Table recovery that does not trust the broker's end offset: it reads up to a marker.

Faust recovers a table by reading its changelog from the start up to the partition's end
offset (ListOffsets "latest"). Tansu, the embedded broker, answers that request with the last
record *batch's* base offset + 1: after a batch of ten records at offsets 0–9 it says 1
(measured; tests/integration/test_faust_smoke.py recovers a table from a changelog
written in one batch). Recovery then stops
after the first record of the last batch and the table silently loses updates.

So at the start of each recovery this worker produces one marker record to every changelog
partition it is about to read, alone in its batch (the producer is flushed first, and the
agents are paused during recovery, so nothing else is queued for those partitions). The
broker's acknowledgement gives the marker's exact offset, on any broker; recovery reads up to
and including it, so everything written before the recovery started is read. The marker is a
tombstone with its own key and a header naming it, and tables drop it instead of applying it.
With it, producers can batch freely on Tansu as on Kafka.

The same recovery clears the stream queues before Faust seeks the stream partitions, not
after (`MarkedRecovery._quiesce_streams`): records fetched between the seek and Faust's clear
were lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from faust import Table
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, ConsumerT, EventT

MARKER_HEADER = "stackwatch-recovery-marker"
"""Header that marks a recovery marker record (value: b"1")."""

MARKER_KEY = b'"__stackwatch_recovery_marker__"'
"""The marker's key: a JSON string, so it decodes under the tables' key serializers (Faust
decodes a changelog event's key before any table sees it)."""


def is_marker(event: EventT[Any]) -> bool:
    """Whether a changelog event is a recovery marker (by its header)."""
    headers: Any = event.message.headers
    if not headers:
        return False
    items: Iterable[tuple[str, Any]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    return any(name == MARKER_HEADER for name, _ in items)


class MarkerAwareTable(Table[Any, Any]):
    """A Faust table that skips recovery markers when it applies its changelog."""

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]]) -> None:
        """Apply the changelog events, without the markers (they belong to no key)."""
        super().apply_changelog_batch([e for e in batch if not is_marker(e)])


class MarkedRecovery(Recovery):
    """Recovery whose highwater is the offset of a marker it produced, not the end offset."""

    async def _build_highwaters(
        self, consumer: ConsumerT, tps: set[TP], destination: Any, title: str
    ) -> None:
        if not tps:
            destination.clear()
            return
        producer = self.app.producer
        await producer.flush()  # anything queued earlier goes first, in its own batches
        sent = await asyncio.gather(
            *(
                producer.send_and_wait(
                    tp.topic, MARKER_KEY, None, tp.partition, None, [(MARKER_HEADER, b"1")]
                )
                for tp in sorted(tps)
            )
        )
        # Faust's highwater is the last offset to read: the marker's own offset.
        highwaters = {
            tp: int(meta.offset) for tp, meta in zip(sorted(tps), sent, strict=True)
        }
        self.log.info(
            "Highwater (recovery marker) for %s changelog partitions:\n%s",
            title,
            self._highwater_logtable(highwaters, title=title),
        )
        destination.clear()
        destination.update(highwaters)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust's completion (seek the stream partitions, resume the flow), with the stream
        queues cleared before the seek instead of after it (`_quiesce_streams`)."""
        self._quiesce_streams()
        await super().on_recovery_completed(generation_id)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """The same for an app without tables (the sinks)."""
        self._quiesce_streams()
        await super()._resume_streams(generation_id)

    def _quiesce_streams(self) -> None:
        """Stop delivering fetched records and clear the stream queues now.

        Faust seeks the stream partitions to their committed offsets and only then resumes
        the app's flow control, which clears every stream queue. Records fetched in between
        were queued, cleared and never handled, while the fetch position had moved past them
        (measured: a worker handled offset 0 of a partition and then 6; another, on a fresh
        group, none of 183). With the consumer's flow stopped and the queues cleared here,
        Faust's own resume clears nothing, and its seek comes after the last clear: every
        record from the committed offset on is delivered once.
        """
        self.app.consumer.stop_flow()
        self.app.flow_control.resume()  # clears the stream queues; nothing is delivered now


class MarkedTableManager(TableManager):
    """The table manager, recovering with `MarkedRecovery`."""

    @property
    def recovery(self) -> Recovery:
        """Recovery service used by this table manager (marker-based highwaters)."""
        if self._recovery is None:
            self._recovery = MarkedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


__all__ = ["MARKER_HEADER", "MarkedRecovery", "MarkedTableManager", "MarkerAwareTable", "is_marker"]
