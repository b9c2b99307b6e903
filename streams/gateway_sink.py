"""Where the gateway puts frames: the raw topic (every frame) and the dead-letter topic.

`FrameSink.submit` queues the records and returns an awaitable that completes only when the
broker has acknowledged them; the gateway answers 9014 after that, so a frame is acknowledged to
the data logger only once it is durable (at-least-once: whatever was not answered, the logger
re-sends, HJ 212-2017 §6.6 / Table 1 timeouts and retries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential
from tenacity.stop import stop_base

from stackwatch.models import DeadLetter, RawFrame
from stackwatch.settings import BrokerProfile, KafkaSettings

log = logging.getLogger("stackwatch.gateway")


class FrameSink(Protocol):
    """Destination of the gateway's records."""

    async def start(self) -> None:
        """Connect; called once by `Gateway.start()`."""

    async def stop(self) -> None:
        """Flush everything still queued, then disconnect; called by `Gateway.stop()`."""

    async def submit(
        self, raw: RawFrame, dead: DeadLetter | None, key: str | None
    ) -> Awaitable[object]:
        """Queue one raw record (and its dead letter, if rejected), both with `key` (the
        stack id, `Gateway.record_key`).

        Awaiting this call may block while the sink's buffer is full (that is backpressure);
        the returned awaitable completes when every record is acknowledged by the broker and
        raises if any was not.
        """
        ...


class KafkaFrameSink:
    """Produces `RawFrame` / `DeadLetter` JSON with aiokafka, `acks="all"`.

    Frames from many connections share producer batches on both broker profiles (up to
    64 kB, lingering `kafka.linger_ms`; frames that queue while a request is in flight go out
    together too); each connection still answers its 9014 only once the broker has
    acknowledged that frame.
    Tansu's batch-based end offsets no longer matter: table recovery reads up to a marker
    (`streams/changelog_marker.py`).

    A frame is never accepted and then dropped. A delivery that fails is sent again, with
    back-off, until the broker takes it (`_deliver`); meanwhile `submit` holds every new
    frame (the broker is down), so each connection stops reading its socket once its
    in-flight budget is spent and the loggers' own TCP buffers hold the rest (backpressure).
    Loggers that never ask for a 9014 (Flag A=0) therefore lose nothing to an outage either.
    Only a gateway stopped while the broker is still down gives up, and logs each frame
    it could not deliver.
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
        kafka: KafkaSettings | None = None,
        broker_profile: BrokerProfile = "tansu",
        retry_max_wait_s: float = 5.0,
        on_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._bootstrap = bootstrap
        self._raw_topic = raw_topic
        self._deadletter_topic = deadletter_topic
        self._partitions = partitions
        self._create_topics = create_topics
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._kafka = kafka or KafkaSettings()
        self._profile = broker_profile
        self._retry_max_wait_s = retry_max_wait_s
        self._on_failure = on_failure  # counts each delivery the broker did not take (metric)
        self._producer: Any = None
        # aiokafka wakes every coroutine waiting in `send()` for batch space whenever a batch
        # drains; with one record per batch and hundreds of loggers that is O(n²) wake-ups
        # (measured: 2 244 frames/s at 50 concurrent sends, 207 at 1 000). Waiting here instead,
        # one wake-up per freed slot, keeps the rate flat.
        self._sending = asyncio.Semaphore(max_concurrent_sends)
        self._broker_up = asyncio.Event()
        self._broker_up.set()
        self._stopping = asyncio.Event()
        self.retries = 0  # deliveries sent again after a failure (for tests and the note)

    async def start(self) -> None:
        """Create the two topics if missing, then start the producer."""
        if self._create_topics:
            await self._ensure_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            request_timeout_ms=self._request_timeout_ms,
            max_batch_size=64 * 1024,
            # Frames queued while a request is in flight batch anyway; the linger makes the
            # batches larger still (fewer for the broker to keep and list), for a few ms of 9014.
            linger_ms=self._kafka.linger_ms,
            **self._kafka.producer_options(self._profile),
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
                    await admin.create_topics([
                        NewTopic(topic, num_partitions=self._partitions,
                                 replication_factor=self._kafka.replication_factor,
                                 topic_configs=self._kafka.topic_config())
                    ])
                except TopicAlreadyExistsError:
                    pass
                except KafkaError as exc:  # the producer may still auto-create it
                    log.warning("could not create topic", extra={"topic": topic, "error": exc})
        finally:
            await admin.close()

    async def stop(self) -> None:
        """Flush and close the producer (`AIOKafkaProducer.stop` flushes pending batches).

        Deliveries still being retried give up (the broker is down at shutdown); each logs
        the frame it could not deliver.
        """
        self._stopping.set()
        self._broker_up.set()  # release submits waiting for the broker: they fail fast now
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def submit(
        self, raw: RawFrame, dead: DeadLetter | None, key: str | None
    ) -> Awaitable[object]:
        """Queue the raw record and, for a rejected frame, its dead letter.

        Waits while the broker is known to be down: the connection stops reading.
        """
        if self._producer is None:
            raise RuntimeError("KafkaFrameSink is not started")
        await self._broker_up.wait()
        key_bytes = key.encode("utf-8") if key else None
        records = [(self._raw_topic, raw.model_dump_json().encode("utf-8"))]
        if dead is not None:
            records.append((self._deadletter_topic, dead.model_dump_json().encode("utf-8")))
        async with self._sending:
            futures = [
                await _queue(self._producer, topic, value, key_bytes) for topic, value in records
            ]
        return asyncio.ensure_future(self._deliver(records, key_bytes, futures, mn=raw.mn))

    async def _deliver(
        self, records: list[tuple[str, bytes]], key: bytes | None, futures: list[Any],
        *, mn: str | None,
    ) -> None:
        """Complete when every record is acknowledged; send failed ones again until then."""
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        pending = [rec for rec, out in zip(records, outcomes, strict=True)
                   if isinstance(out, BaseException)]
        if not pending:
            return
        first = next(out for out in outcomes if isinstance(out, BaseException))
        if not isinstance(first, KafkaError):
            raise first
        self._broker_up.clear()
        self._on_failure()
        log.warning("broker did not take a frame; holding the sockets and sending it again",
                    extra={"mn": mn, "error": repr(first)})
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(KafkaError),
            wait=wait_exponential(multiplier=0.2, max=self._retry_max_wait_s),
            stop=_StopWhenSet(self._stopping),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.retries += 1
                producer = self._producer
                if producer is None:
                    raise RuntimeError("gateway stopped while the broker was down")
                pending = await _send_all(producer, pending, key)
                if pending:
                    raise KafkaError(f"{len(pending)} record(s) still not acknowledged")
        self._broker_up.set()
        log.info("broker took the held frame again", extra={"mn": mn})


class _StopWhenSet(stop_base):
    """tenacity stop condition: give up once the sink is stopping (never otherwise)."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._event.is_set()


async def _queue(producer: Any, topic: str, value: bytes, key: bytes | None) -> Any:
    """Queue one record; a send refused at once becomes a failed future, retried later."""
    try:
        return await producer.send(topic, value, key=key)
    except KafkaError as exc:
        failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


async def _send_all(
    producer: Any, records: list[tuple[str, bytes]], key: bytes | None
) -> list[tuple[str, bytes]]:
    """Send `records` and wait; return the ones the broker did not acknowledge."""
    futures = [await _queue(producer, topic, value, key) for topic, value in records]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    return [rec for rec, out in zip(records, outcomes, strict=True)
            if isinstance(out, KafkaError)]


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
        self.keys: list[str | None] = []
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def submit(
        self, raw: RawFrame, dead: DeadLetter | None, key: str | None
    ) -> Awaitable[object]:
        self.submitted += 1
        self.keys.append(key)
        return asyncio.ensure_future(self._deliver(raw, dead))

    async def _deliver(self, raw: RawFrame, dead: DeadLetter | None) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker unavailable (MemoryFrameSink.fail)")
        self.raw.append(raw)
        if dead is not None:
            self.dead.append(dead)
