"""stackwatch's Faust transports: consumers that do not sit on an empty fetch, and an
idempotent producer for real Kafka.

**Fetch wait.** faust-streaming hard-codes `fetch_max_wait_ms=1500` for its consumers. A broker
may hold a fetch that long before answering: measured on the embedded Tansu, a record produced
every 100 ms over 4 partitions reached a consumer after 390 ms at the median (736 ms at worst)
with 1,500 ms, and after 3 ms with 100 ms. The wait stood in the alert latency at every consume
hop between a frame and its alert. Every consumer of ours fetches with `FETCH_MAX_WAIT_MS`; the
cost on an idle topic is ten small fetch requests per second.
The Faust apps' fetches also wait for `kafka.fetch_min_bytes` within that time
(`set_fetch_min_bytes`): under load a fetch then carries many records, not one per request,
which matters on Tansu, whose every fetch lists all batches of the partition.

**Idempotence.** faust-streaming turns idempotence on only inside transactions (exactly-once).
stackwatch is at-least-once, with natural keys downstream, but a producer retry that writes an
aggregate or an alert event twice still costs the sinks and the notifier work; an idempotent
producer (with `acks=all`) writes each record once per send. It is used when
`Settings.kafka.idempotence(...)` says so (not on Tansu, which refuses InitProducerId).

Faust picks a transport by the broker URL's scheme: `SCHEME://host:port` or
`IDEMPOTENT_SCHEME://host:port` (`streams.faust_config.broker_url`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT

SCHEME: Final = "kafka-stackwatch"
IDEMPOTENT_SCHEME: Final = "kafka-idempotent"

FETCH_MAX_WAIT_MS: Final = 100
"""Longest a fetch waits on the broker for data (see the module docstring)."""

_FETCH_MIN_BYTES_ATTR: Final = "_stackwatch_fetch_min_bytes"


def set_fetch_min_bytes(app: AppT, min_bytes: int) -> None:
    """Bytes the app's consumer fetches wait for (up to `FETCH_MAX_WAIT_MS`); Faust has no
    setting for it. Set before the app starts."""
    setattr(app, _FETCH_MIN_BYTES_ATTR, min_bytes)


async def seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer, *, reset: str, skip: Callable[[TopicPartition], bool]
) -> dict[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset and, unlike aiokafka's
    `seek_to_committed`, the partitions with none (or 0) to where `reset` says a fresh
    consumer starts ("earliest" or "latest"). Returns the committed offsets.

    aiokafka seeks only to committed offsets above 0 and leaves the others where the fetcher
    happens to be. Faust relies on this seek to re-read the records it fetched and dropped
    while a rebalance or recovery went on (`streams.changelog_marker.MarkedRecovery`); for a
    partition nothing was committed on yet, nothing moved back and those records were lost
    for good (measured: a fresh worker assigned a raw partition holding 183 records never
    handled one). `skip` leaves partitions alone (the tables' changelogs, which recovery
    positions itself).
    """
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    uncommitted = [
        tp for tp, offset in committed.items() if (offset is None or offset <= 0) and not skip(tp)
    ]
    if uncommitted:
        if reset == "latest":
            await consumer.seek_to_end(*uncommitted)
        else:
            await consumer.seek_to_beginning(*uncommitted)
    return committed


class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread: its aiokafka consumer fetches with `FETCH_MAX_WAIT_MS`, and
    seeking to committed offsets also moves partitions with none back to the reset point."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes no setting for it; aiokafka reads this when the consumer starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        consumer._fetch_min_bytes = int(getattr(self.app, _FETCH_MIN_BYTES_ATTR, 1))
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's `perform_seek` step, with `seek_to_committed_or_reset`."""
        return cast(Mapping[TP, int], await self.call_thread(self._seek_to_committed_or_reset))

    async def _seek_to_committed_or_reset(self) -> Mapping[TopicPartition, int | None]:
        return await seek_to_committed_or_reset(
            self._ensure_consumer(),
            reset=str(self.app.conf.consumer_auto_offset_reset),
            skip=lambda tp: bool(self.consumer._is_changelog_tp(tp)),
        )


class PromptConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer on `PromptConsumerThread`."""

    def _new_consumer_thread(self) -> PromptConsumerThread:
        return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class PromptTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `PromptConsumer`."""

    Consumer = PromptConsumer


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with idempotence always on."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentTransport(PromptTransport):
    """`PromptTransport`, producing through `IdempotentProducer`."""

    Producer = IdempotentProducer


def register() -> None:
    """Make both schemes resolve to their transports (idempotent call)."""
    TRANSPORTS.data.setdefault(SCHEME, f"{__name__}:PromptTransport")
    TRANSPORTS.data.setdefault(IDEMPOTENT_SCHEME, f"{__name__}:IdempotentTransport")
