"""`create_app`: the stream worker's Faust app (topics, state table, agents, timer, metrics).

A factory rather than a module-level app so tests and the benchmark build isolated apps with
their own settings, topic names, registry and metrics registry. `stackwatch worker run` builds
one from the process settings and runs it with `faust.Worker`.

Agents (README "Stream worker"):
* `frames`   raw → readings (for the sinks), minute/hour/day aggregates, alerts, deadletter:
  decode + validate + normalise in one pure call, then the stack's processor, in one consume
  hop (the raw topic is keyed by stack id, so a stack's frames and state share a partition);
* `commands` alert-commands → alerts (acknowledgements on the same state table);
* timer `tick` every `settings.streams.tick_interval_s` closes idle windows by event-time
  watermark + grace, detects offline loggers and clears alerts past their hold time;
* timer `checkpoint` completes the frames agent's checkpoint when it is due
  (`streams.checkpoint`: records are acknowledged only once their effects are durable).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP, AgentT, EventT, StreamT, TableT
from mode.types.signals import BaseSignalT
from prometheus_client import CollectorRegistry

from stackwatch.limits import default_catalogue
from stackwatch.limits.catalogue import LimitCatalogue
from stackwatch.registry import StackRegistry
from stackwatch.settings import Settings
from streams.agents import Pipeline, Send, faust_send
from streams.changelog_marker import MarkerAwareTable
from streams.checkpoint import Checkpoint
from streams.continuity import Continuity
from streams.faust_config import create_faust_app
from streams.log_start import LogStarts
from streams.metrics import WorkerMetrics
from streams.stall_watch import StallWatch, consumer_state
from streams.state import StackStates
from streams.state_codec import STATE_CODEC
from streams.topics import Topics, define_topics

STATE_TABLE = "stack_state"
ARCHIVE_TABLE = "window_archive"
log = logging.getLogger(__name__)


@dataclass
class WorkerApp:
    """Everything `create_app` built, for the CLI, tests and the benchmark."""

    app: faust.App
    topics: Topics
    table: TableT[str, Any]
    archive: TableT[str, Any]
    states: StackStates
    pipeline: Pipeline
    metrics: WorkerMetrics
    frames: AgentT[Any]
    commands: AgentT[Any]
    checkpoints: dict[str, Checkpoint[Acked]]


@dataclass(frozen=True)
class Acked:
    """An event and the stream that acknowledges it (Faust acks through the stream)."""

    event: EventT[Any]
    stream: StreamT[bytes]


async def ack(acked: Acked) -> None:
    """Acknowledge one event (its offset may then be committed)."""
    await acked.stream.ack(acked.event)


def _manual_acks(stream: StreamT[bytes]) -> StreamT[bytes]:
    """`stream.noack()` (missing from Faust's `StreamT` type)."""
    return cast(StreamT[bytes], cast(Any, stream).noack())


Apply = Callable[[EventT[Any]], Awaitable[list[Awaitable[Any]]]]
"""An agent's per-record step: apply the record, return its queued deliveries."""


TAIL_IDLE_S = 5.0
"""A partition whose log goes on past the next expected record, with nothing admitted for this
long, is sought back (`Continuity.check_tails`)."""
STALL_S = 20.0
"""A source partition with unhandled records and nothing admitted this long is logged as
stalled, with the consumer's state (`streams.stall_watch`)."""


def create_app(
    settings: Settings,
    *,
    broker: str,
    registry: StackRegistry,
    app_id: str = "stackwatch-worker",
    data_dir: Path | None = None,
    catalogue: LimitCatalogue | None = None,
    metrics_registry: CollectorRegistry | None = None,
    send: Send = faust_send,
) -> WorkerApp:
    """Build the worker app; nothing connects until the app is started."""
    datadir = data_dir or settings.resolved_data_dir() / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = create_faust_app(settings, broker=broker, app_id=app_id, data_dir=datadir)
    topics = define_topics(app, settings.topics, config=settings.kafka.topic_config())

    def changelog_table(name: str, help: str) -> TableT[str, Any]:
        """A table of this app, partitioned like its topics, its changelog configured alike."""
        table = MarkerAwareTable(
            app,
            name=name,
            default=None,
            beacon=app.tables.beacon,
            partitions=settings.topics.partitions,
            extra_topic_configs=settings.kafka.topic_config(),
            help=help,
        )
        # What `app.Table` does, with the values' codec set before the table manager builds
        # the changelog topic (Faust would pick `json` for plain dict values).
        table.value_serializer = STATE_CODEC
        return cast(TableT[str, Any], app.tables.add(table))

    table = changelog_table(
        STATE_TABLE, "stack_id → StackProcessor state (JSON); changelog-backed."
    )
    archive = changelog_table(
        ARCHIVE_TABLE,
        "stack_id|hour|start → finalised window kept for back-fill (补传); changelog-backed.",
    )
    states = StackStates(table, settings.streams.processor, archive_table=archive)
    metrics = WorkerMetrics(metrics_registry)
    pipeline = Pipeline(
        topics=topics,
        states=states,
        registry=registry,
        catalogue=catalogue or default_catalogue(),
        normalise_cfg=settings.streams.normalise,
        metrics=metrics,
        auto_register=settings.gateway.auto_register,
        send=send,
        idle_flush_s=settings.streams.idle_flush_s,
        clock_reference=settings.streams.clock_reference,
        clock_min_peers=settings.streams.clock_min_peers,
    )

    async def seek(tp: TP, offset: int) -> None:
        """Seek on the consumer's own thread (`seek_wait`). Faust's `consumer.seek` calls
        aiokafka from this thread while the fetcher runs in the consumer thread, a race that
        crashed the worker (measured: KeyError in aiokafka `fetched_records`, after a SIGKILL
        restart while the continuity guard was seeking back)."""
        try:
            await app.consumer.seek_wait({tp: offset})
        except Exception as exc:  # revoked meanwhile, broker away: the guard seeks again
            log.warning("seek failed", extra={"tp": str(tp), "offset": offset, "error": repr(exc)})

    log_starts = LogStarts(broker)
    app.service(cast(Any, log_starts))  # an instance: Faust starts and stops it with the app

    async def start_offset(tp: TP) -> int | None:
        """The offset this member resumes `tp` at: the group's committed offset, which Faust
        reads when the partition is assigned (before any record is delivered), else the
        log start. None when the broker cannot say (the guard then trusts the first record)."""
        committed = cast(Any, app.consumer)._committed_offset.get(tp)
        if committed:
            return int(committed)
        return await log_starts.start_of(tp)

    guards = {
        name: Continuity(name, seek, start_offset=start_offset)
        for name in ("frames", "commands")
    }
    source_topics = {
        "frames": topics.raw.get_topic_name(),
        "commands": topics.alert_commands.get_topic_name(),
    }
    stall_watch = StallWatch(app, guards, stall_s=STALL_S, clock=time.monotonic)
    cfg = settings.streams

    checkpoints: dict[str, Checkpoint[Acked]] = {
        "frames": Checkpoint(
            ack,
            save=pipeline.save_unsaved,
            max_records=cfg.checkpoint_records,
            interval_s=cfg.checkpoint_interval_s,
            overlap=True,
            in_flight=cfg.checkpoints_in_flight,
        ),
    }

    async def process_frame(event: EventT[Any]) -> list[Awaitable[Any]]:
        """raw → readings, aggregates, alerts, deadletter; each changed stack's state written
        once per checkpoint."""
        return await pipeline.process_frame(event.key, event.value, event.message.partition)

    async def handle_command(event: EventT[Any]) -> list[Awaitable[Any]]:
        """alert-commands → ack events on the same state table (durable on return)."""
        await pipeline.handle_command(event.key, event.value, event.message.partition)
        return []

    def consume(
        name: str, apply: Apply, checkpoint: Checkpoint[Acked]
    ) -> Callable[[StreamT[bytes]], Coroutine[Any, Any, None]]:
        """The body of every agent: admit each record past the continuity guard, apply it,
        add it to the checkpoint, and complete the checkpoint when it is due."""

        async def agent(stream: StreamT[bytes]) -> None:
            manual = _manual_acks(stream)
            async for event in manual.events():
                if await guards[name].admit(event.message.tp, event.message.offset):
                    async with checkpoint.applying():
                        checkpoint.add(Acked(event, manual), await apply(event))
                if checkpoint.due():
                    await checkpoint.flush()

        agent.__doc__ = apply.__doc__
        return agent

    # `handle_command` awaits its own deliveries: its checkpoint of one record acks at once.
    command_checkpoint: Checkpoint[Acked] = Checkpoint(ack, max_records=1)

    # Manual acks: Faust acks the in-flight event in a `finally` when an agent is cancelled
    # (graceful shutdown, SIGTERM), committing the offset of a record whose outputs and state
    # were never written. Acking only once a record's effects are durable (its checkpoint, or
    # `handle_command` returning) makes SIGTERM as safe as SIGKILL: an unfinished record is
    # processed again after the restart.
    frames_agent = app.agent(topics.raw, name="frames")(
        consume("frames", process_frame, checkpoints["frames"])
    )
    commands_agent = app.agent(topics.alert_commands, name="commands")(
        consume("commands", handle_command, command_checkpoint)
    )

    async def tick() -> None:
        """Advance idle stacks: close windows, detect offline loggers, clear alerts."""
        recovery = cast(Any, app.tables).recovery
        if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
            return  # mid-recovery the table holds intermediate states: never cache those
        raw = topics.raw.get_topic_name()
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == raw}
        await pipeline.tick(active)
        sources = {
            name: {tp for tp in app.assignor.assigned_actives() if tp.topic == topic}
            for name, topic in source_topics.items()
        }
        for name, guard in guards.items():
            sought = await guard.check_tails(
                log_starts.end_of, idle_s=TAIL_IDLE_S, assigned=sources[name]
            )
            if sought:  # the consumer's state says why the records were not delivered
                log.warning("tail sought", extra={"consumer": consumer_state(app, sought)})
        await stall_watch.check(sources, log_starts.end_of)

    app.timer(settings.streams.tick_interval_s, name="tick")(tick)

    async def checkpoint() -> None:
        """Complete the checkpoints that are due when their agent has no record to trigger
        them (the input is idle), and raise a background completion's failure."""
        for pending in checkpoints.values():
            if pending.due():
                await pending.flush()
            elif pending.settled_or_failed():
                await pending.settle()

    app.timer(settings.streams.checkpoint_interval_s, name="checkpoint")(checkpoint)

    def on_revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        states.invalidate()
        pipeline.forget_unsaved()
        for pending in checkpoints.values():
            pending.drop()
        for guard in guards.values():
            guard.reset()

    app.on_partitions_revoked.connect(on_revoked)

    # Live objects loaded before or during a recovery would shadow the recovered state (a
    # restart then "forgets" the records between that load and the changelog's end): drop
    # them whenever the table has finished recovering.
    recovered = table.on_recovery_completed

    async def on_recovery_completed(active: set[TP], standby: set[TP]) -> None:
        await recovered(active, standby)
        states.invalidate()

    table.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign,assignment]
    return WorkerApp(
        app=app,
        topics=topics,
        table=table,
        archive=archive,
        states=states,
        pipeline=pipeline,
        metrics=metrics,
        frames=frames_agent,
        commands=commands_agent,
        checkpoints=checkpoints,
    )
