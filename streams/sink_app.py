"""`create_sink_app`: the storage writer's Faust app (one batching agent per topic).

Delivery guarantee: at-least-once into an idempotent schema, i.e. effectively once.

* Each agent reads with `stream.noack_take(batch_size, within=batch_within_s)`: records are
  NOT acknowledged by Faust. The agent writes the batch (sinks.delivery.ResilientWriter: COPY
  into staging, upsert, commit) and only then acks the records, so Faust commits offsets
  strictly after the database commit. A crash in between redelivers the batch; the natural-key
  upserts make the second write a no-op.
* Database down: the agent's `write` retries with exponential backoff and does not return, so
  the agent takes no further batch (memory: one batch per agent plus Faust's bounded stream
  buffer). When the database returns, the batch is committed and consumption resumes from
  where it stopped: nothing dropped, nothing duplicated.
* The Faust web server is disabled (the sinks need no HTTP API and would clash with the stream
  worker's port); Prometheus metrics are served by `sinks.metrics_http.MetricsServer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import faust
import mode
from faust.types import TP, AgentT, EventT, StreamT, TopicT
from prometheus_client import CollectorRegistry

from sinks.db import connect, connect_async
from sinks.delivery import ResilientWriter
from sinks.metrics import SinkMetrics
from sinks.metrics_http import MetricsServer
from sinks.records import SinkKind, SourceRecord
from sinks.registry_sync import sync_registry
from sinks.retry import retry_transient
from stackwatch.backoff import BackoffPolicy
from stackwatch.registry import StackRegistry
from stackwatch.settings import Settings
from streams.faust_config import create_faust_app
from streams.topics import Topics, define_topics

__all__ = ["DEFAULT_APP_ID", "SinkApp", "create_sink_app"]

log = logging.getLogger(__name__)

DEFAULT_APP_ID = "stackwatch-sinks"
LAG_INTERVAL_S = 5.0


def _topic_for(topics: Topics, kind: SinkKind) -> TopicT:
    return {
        SinkKind.RAW: topics.raw,
        SinkKind.READINGS: topics.readings,
        SinkKind.MINUTE: topics.minute,
        SinkKind.HOUR: topics.hour,
        SinkKind.DAY: topics.day,
        SinkKind.ALERTS: topics.alerts,
        SinkKind.DEADLETTER: topics.deadletter,
    }[kind]


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return repr(value).encode("utf-8")  # raw topics carry bytes; never expected


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(float(value), UTC)
    return None


def source_record(event: EventT[Any]) -> SourceRecord:
    """The writer's view of one Faust event."""
    message = event.message
    return SourceRecord(
        value=_as_bytes(event.value),
        key=_as_bytes(event.key),
        topic=str(message.topic),
        partition=int(message.partition),
        offset=int(message.offset),
        timestamp=_timestamp(message.timestamp),
    )


@dataclass
class SinkApp:
    """Everything `create_sink_app` built, for the CLI and tests."""

    app: faust.App
    topics: Topics
    metrics: SinkMetrics
    writers: dict[SinkKind, ResilientWriter]
    agents: dict[SinkKind, AgentT[Any]]
    metrics_server: MetricsServer | None
    #: Next offset to write per partition (after the last committed batch).
    written_next: dict[TP, int] = field(default_factory=dict)


def _migrate_sync(dsn: str) -> None:
    from sinks.schema import migrate

    with connect(dsn, autocommit=True) as conn:
        result = migrate(conn)
    log.info("schema ready", extra={"mode": result.mode.value, "applied": result.applied})


def create_sink_app(
    settings: Settings,
    *,
    broker: str,
    dsn: str,
    registry: StackRegistry | None = None,
    app_id: str = DEFAULT_APP_ID,
    data_dir: Path | None = None,
    metrics_registry: CollectorRegistry | None = None,
    metrics_port: int | None = None,
    batch_size: int = 500,
    batch_within_s: float = 1.0,
    backoff: BackoffPolicy | None = None,
    migrate: bool = False,
    kinds: Iterable[SinkKind] = tuple(SinkKind),
    background: Sequence[Callable[[], Awaitable[None]]] = (),
) -> SinkApp:
    """Build the sinks app; nothing connects until it is started.

    `metrics_port`: None = `settings.metrics_port`, 0 = no endpoint. `background`: extra
    coroutines run as app tasks for the life of the worker (the seam for the alert
    dispatcher). `migrate=True` applies the schema migrations at start (idempotent, locked).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if batch_within_s <= 0:
        raise ValueError("batch_within_s must be > 0")
    policy = backoff or BackoffPolicy()
    faust_dir = data_dir or settings.resolved_data_dir() / "faust" / app_id
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = create_faust_app(
        settings, broker=broker, app_id=app_id, data_dir=faust_dir, web_enabled=False
    )
    topics = define_topics(app, settings.topics, config=settings.kafka.topic_config())
    metrics = SinkMetrics(metrics_registry, tables=sorted({kind.table for kind in SinkKind}))
    port = settings.metrics_port if metrics_port is None else metrics_port
    server = MetricsServer(metrics.registry, host=settings.web_host, port=port) if port else None
    sink = SinkApp(
        app=app,
        topics=topics,
        metrics=metrics,
        writers={},
        agents={},
        metrics_server=server,
    )

    def make_agent(kind: SinkKind, writer: ResilientWriter) -> Callable[[StreamT[Any]], Any]:
        async def agent(stream: StreamT[Any]) -> None:
            # noack_take lives on the concrete Stream (faust-streaming), not on StreamT.
            concrete = cast("faust.Stream[Any]", stream)
            async for batch in concrete.noack_take(batch_size, within=batch_within_s):
                events: list[EventT[Any]] = list(batch)
                await writer.write(kind, [source_record(e) for e in events])
                # Only now may Faust commit these offsets (database commit done).
                for event in events:
                    await stream.ack(event)
                    message = event.message
                    tp = message.tp
                    sink.written_next[tp] = max(sink.written_next.get(tp, 0), message.offset + 1)

        agent.__name__ = f"sink_{kind.value}"
        agent.__qualname__ = agent.__name__
        return agent

    for kind in dict.fromkeys(kinds):
        writer = ResilientWriter(dsn=dsn, metrics=metrics, policy=policy)
        sink.writers[kind] = writer
        sink.agents[kind] = app.agent(
            _topic_for(topics, kind), name=f"sink-{kind.value}", concurrency=1
        )(make_agent(kind, writer))

    sink_topics = {_topic_for(topics, k).get_topic_name() for k in sink.writers}

    lagged: set[TP] = set()

    async def update_lag() -> None:
        """Consumer lag per partition: broker high-water mark − next offset to write.

        On the embedded Tansu broker the high-water mark is the last producer batch's base
        offset + 1, so there the gauge can read up to one batch (≤ 16 kB of records) low;
        Apache Kafka reports the true end. Growth and stalls show either way.
        """
        try:
            consumer = app.consumer
            committed = getattr(consumer, "_committed_offset", {})
            assigned = {tp for tp in consumer.assignment() if tp.topic in sink_topics}
            for gone in lagged - assigned:  # revoked: another worker reports it now
                metrics.consumer_lag.remove(gone.topic, str(gone.partition))
                lagged.discard(gone)
                sink.written_next.pop(gone, None)
            for tp in assigned:
                highwater = consumer.highwater(tp)
                position = sink.written_next.get(tp, committed.get(tp))
                if highwater is None or position is None:
                    continue
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(int(highwater) - int(position), 0)
                )
                lagged.add(tp)
        except Exception as exc:  # a gauge must never take the writer down (rebalance, stop)
            log.debug("consumer lag not available", extra={"error": repr(exc)})

    app.timer(LAG_INTERVAL_S, name="sink-lag")(update_lag)

    async def prepare_database() -> None:
        """Schema (optional) and stack registry, retried until the database answers."""

        async def once() -> None:
            if migrate:
                await asyncio.to_thread(_migrate_sync, dsn)
            if registry is not None and registry.stacks:
                conn = await connect_async(dsn)
                try:
                    await sync_registry(conn, registry)
                finally:
                    await conn.close()

        def failed(n: int, exc: BaseException, delay: float) -> None:
            log.warning(
                "database not ready for schema/registry; retrying",
                extra={"attempt": n, "retry_in_s": round(delay, 2), "error": str(exc).strip()},
            )

        try:
            await retry_transient(once, policy=policy, on_failure=failed)
        except Exception:
            log.exception("schema migration / registry sync failed; writers keep retrying")

    app.task(prepare_database)
    for job in background:
        app.task(job)

    class _Resources(mode.Service):
        """Starts the /metrics endpoint with the app; closes the writers' connections."""

        async def on_start(self) -> None:
            if server is not None:
                await server.start()

        async def on_stop(self) -> None:
            if server is not None:
                await server.stop()
            for writer in sink.writers.values():
                await writer.close()

    app.service(_Resources)
    return sink
