"""Where the gateway puts frames: the raw topic (every frame) and the dead-letter topic.

`FrameSink.submit` queues the records and returns an awaitable that completes only when the
broker has acknowledged them; the gateway answers 9014 after that, so a frame is acknowledged to
the data logger only once it is durable (at-least-once: whatever was not answered, the logger
re-sends, HJ 212-2017 §6.6 / Table 1 timeouts and retries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stackwatch.models import DeadLetter, RawFrame

log = logging.getLogger("stackwatch.gateway")


class FrameSink(Protocol):
    """Destination of the gateway's records."""

    async def start(self) -> None:
        """Connect; called once by `Gateway.start()`."""

    async def stop(self) -> None:
        """Flush everything still queued, then disconnect; called by `Gateway.stop()`."""

    async def submit(self, raw: RawFrame, dead: DeadLetter | None) -> Awaitable[object]:
        """Queue one raw record (and its dead letter, if rejected).

        Awaiting this call may block while the sink's buffer is full (that is backpressure);
        the returned awaitable completes when every record is acknowledged by the broker and
        raises if any was not.
        """
        ...


def _key(raw: RawFrame) -> bytes | None:
    """Records are keyed by MN so one logger's frames stay ordered in one partition."""
    return raw.mn.encode("utf-8") if raw.mn else None


class KafkaFrameSink:
    """Produces `RawFrame` / `DeadLetter` JSON with aiokafka, `acks="all"`.

    Frames from many connections share producer batches on both broker profiles (up to
    64 kB, no linger: frames that queue while a request is in flight go out together); each
    connection still answers its 9014 only once the broker has acknowledged that frame.
    Tansu's batch-based end offsets no longer matter: table recovery reads up to a marker
    (`streams/changelog_marker.py`).
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        raw_topic: str,
        deadletter_topic: str,
        partitions: int = 4,
        create_topics: bool = True,
        client_id: str = "stackwatch-gateway",
        request_timeout_ms: int = 30_000,
        max_concurrent_sends: int = 16,
    ) -> None:
        self._bootstrap = bootstrap
        self._raw_topic = raw_topic
        self._deadletter_topic = deadletter_topic
        self._partitions = partitions
        self._create_topics = create_topics
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._producer: Any = None
        # aiokafka wakes every coroutine waiting in `send()` for batch space whenever a batch
        # drains; with one record per batch and hundreds of loggers that is O(n²) wake-ups
        # (measured: 2 244 frames/s at 50 concurrent sends, 207 at 1 000). Waiting here instead,
        # one wake-up per freed slot, keeps the rate flat.
        self._sending = asyncio.Semaphore(max_concurrent_sends)

    async def start(self) -> None:
        """Create the two topics if missing, then start the producer."""
        if self._create_topics:
            await self._ensure_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            request_timeout_ms=self._request_timeout_ms,
            max_batch_size=64 * 1024,
            linger_ms=0,  # no added wait: frames queued while a request is in flight batch anyway
        )
        await producer.start()
        self._producer = producer

    async def _ensure_topics(self) -> None:
        """Create the raw and dead-letter topics with the project's partition count.

        Auto-created topics would get the broker's default partition count, breaking the
        co-partitioning every stage relies on (settings `topics.partitions`).
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
        await admin.start()
        try:
            for topic in (self._raw_topic, self._deadletter_topic):
                try:
                    await admin.create_topics(
                        [NewTopic(topic, num_partitions=self._partitions, replication_factor=1)]
                    )
                except TopicAlreadyExistsError:
                    pass
                except KafkaError as exc:  # the producer may still auto-create it
                    log.warning("could not create topic", extra={"topic": topic, "error": exc})
        finally:
            await admin.close()

    async def stop(self) -> None:
        """Flush and close the producer (`AIOKafkaProducer.stop` flushes pending batches)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def submit(self, raw: RawFrame, dead: DeadLetter | None) -> Awaitable[object]:
        """Queue the raw record and, for a rejected frame, its dead letter."""
        if self._producer is None:
            raise RuntimeError("KafkaFrameSink is not started")
        key = _key(raw)
        async with self._sending:
            futures = [
                await self._producer.send(
                    self._raw_topic, raw.model_dump_json().encode("utf-8"), key=key
                )
            ]
            if dead is not None:
                futures.append(
                    await self._producer.send(
                        self._deadletter_topic, dead.model_dump_json().encode("utf-8"), key=key
                    )
                )
        return asyncio.ensure_future(_confirm(futures))


async def _confirm(futures: list[Any]) -> None:
    """Wait for every delivery future (so none is left unobserved); raise the first failure."""
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


class MemoryFrameSink:
    """In-process sink for tests and offline tools: records land in lists when "acknowledged".

    `gate` (when set) holds every acknowledgement until it is opened, which lets tests watch
    the gateway stop reading while the broker is slow; `fail` makes deliveries raise.
    """

    def __init__(self) -> None:
        self.raw: list[RawFrame] = []
        self.dead: list[DeadLetter] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.submitted = 0
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def submit(self, raw: RawFrame, dead: DeadLetter | None) -> Awaitable[object]:
        self.submitted += 1
        return asyncio.ensure_future(self._deliver(raw, dead))

    async def _deliver(self, raw: RawFrame, dead: DeadLetter | None) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker unavailable (MemoryFrameSink.fail)")
        self.raw.append(raw)
        if dead is not None:
            self.dead.append(dead)
