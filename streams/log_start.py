"""Log start offsets, read by a client of the worker's own, never through Faust's consumer.

The continuity guard asks where a partition begins when nothing is committed for it. Asking
Faust's consumer means a call into its consumer thread, and such calls can wait for good while
that thread is rebalancing (measured: a worker restarted after a SIGKILL handled one record,
then its decode agent waited on `earliest_offsets` and nothing more was read). A plain
aiokafka consumer on the worker's own event loop (no group, nothing assigned) answers the
ListOffsets(earliest) request by itself.
"""

from __future__ import annotations

import asyncio
import logging

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

log = logging.getLogger(__name__)


class LogStarts(mode.Service):
    """First offset of a partition's log; None when the broker does not answer in time."""

    def __init__(self, bootstrap: str, *, timeout_s: float = 10.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._client: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start_of(self, tp: TP) -> int | None:
        """The log start offset of `tp` (the oldest record a reset to "earliest" reads)."""
        try:
            return await asyncio.wait_for(self._ask(tp), self.timeout_s)
        except Exception as exc:  # broker away or slow: the guard trusts the first record
            log.warning("no log start offset", extra={"tp": str(tp), "error": repr(exc)})
            return None

    async def end_of(self, tp: TP) -> int | None:
        """The end offset the broker reports for `tp` (on Tansu: the last batch's base + 1,
        so it can be short of the true end, never past it)."""
        try:
            return await asyncio.wait_for(self._ask(tp, end=True), min(self.timeout_s, 2.0))
        except Exception as exc:  # broker away or slow: checked again at the next tick
            log.warning("no log end offset", extra={"tp": str(tp), "error": repr(exc)})
            return None

    async def _ask(self, tp: TP, *, end: bool = False) -> int | None:
        async with self._lock:
            if self._client is None:
                client = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap, enable_auto_commit=False
                )
                await client.start()
                self._client = client
        partition = TopicPartition(tp.topic, tp.partition)
        ask = self._client.end_offsets if end else self._client.beginning_offsets
        offsets = await ask([partition])
        start = offsets.get(partition)
        return None if start is None else int(start)

    async def on_stop(self) -> None:
        """Close the client (if it was ever needed)."""
        client, self._client = self._client, None
        if client is not None:
            await client.stop()
