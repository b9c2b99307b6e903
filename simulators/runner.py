"""Real-time pacing of the pure frame generators, and where their frames go.

Each stack runs as its own task: it asks its `StackSimulator` for the next chunk of frames,
waits on the `SimClock` until each frame is due and hands it to a `FrameSink`.

Sinks: `TcpSink` (HJ 212 over TCP, one `LoggerClient` per MN, as real loggers do) and
`MemorySink` (tests, dry runs). Seam for the Kafka JSON mode (streams work, not done here):
implement `FrameSink` (or consume `StackSimulator.samples_between`) and produce the readings
contract of `stackwatch.models` instead of HJ 212 text; the runner needs no change.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from simulators.client import ClientStats, LoggerClient
from simulators.clock import SimClock
from simulators.logger import SimFrame, StackSimulator


class FrameSink(Protocol):
    """Where simulated frames go."""

    async def send(self, frame: SimFrame) -> None:
        """Deliver one frame (returns when delivered, e.g. acknowledged)."""

    async def close(self) -> None:
        """Release connections."""


@dataclass
class MemorySink:
    """Collects frames in memory (tests and `--dry-run`)."""

    frames: list[SimFrame] = field(default_factory=list)

    async def send(self, frame: SimFrame) -> None:
        self.frames.append(frame)

    async def close(self) -> None:
        return None


class TcpSink:
    """HJ 212 over TCP to a gateway: one connection (`LoggerClient`) per data logger MN."""

    def __init__(self, host: str, port: int, **client_options: float) -> None:
        self.host, self.port = host, port
        self._options = client_options
        self._history: dict[str, StackSimulator] = {}
        self.clients: dict[str, LoggerClient] = {}

    def answer_history_for(self, simulators: list[StackSimulator]) -> TcpSink:
        """Let these loggers answer the platform's history requests from their records."""
        self._history.update({sim.mn: sim for sim in simulators})
        return self

    def client(self, mn: str) -> LoggerClient:
        """The connection of one logger (created on first use); a simulated logger answers
        the platform's history requests from its own records."""
        client = self.clients.get(mn)
        if client is None:
            sim = self._history.get(mn)
            client = LoggerClient(
                self.host, self.port, mn=mn,
                on_history_request=sim.serve_history if sim is not None else None,
                **self._options,  # type: ignore[arg-type]
            )
            self.clients[mn] = client
        return client

    async def send(self, frame: SimFrame) -> None:
        await self.client(frame.mn).send(frame.text, ack=frame.ack, qn=frame.qn)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()))

    def stats(self) -> ClientStats:
        """Counters summed over every connection."""
        total = ClientStats()
        for client in self.clients.values():
            for name in total.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(client.stats, name))
        return total


@dataclass
class RunStats:
    """What a run produced."""

    frames: int = 0
    by_cn: Counter[str] = field(default_factory=Counter)
    by_tag: Counter[str] = field(default_factory=Counter)
    sim_time: datetime | None = None


async def run_simulators(
    simulators: list[StackSimulator],
    sink: FrameSink,
    *,
    start: datetime,
    end: datetime | None,
    clock: SimClock,
    chunk: timedelta = timedelta(minutes=1),
    on_frame: Callable[[SimFrame], None] | None = None,
) -> RunStats:
    """Run every stack from `start` to `end` (None = until cancelled), paced by `clock`."""
    stats = RunStats()

    async def one(sim: StackSimulator) -> None:
        t = start
        while end is None or t < end:
            t1 = t + chunk if end is None else min(t + chunk, end)
            for frame in sim.frames_between(t, t1):
                await clock.sleep_until(frame.at)
                await sink.send(frame)
                stats.frames += 1
                stats.by_cn[frame.cn] += 1
                stats.by_tag.update(frame.tags)
                if stats.sim_time is None or frame.at > stats.sim_time:
                    stats.sim_time = frame.at
                if on_frame is not None:
                    on_frame(frame)
            t = t1
            if clock.fast:
                await asyncio.sleep(0)

    await asyncio.gather(*(one(sim) for sim in simulators))
    return stats
