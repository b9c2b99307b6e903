"""The load of the pipeline benchmark: national-scenario loggers and alert-latency probes.

National frames are generated before the clock starts (`simulators.scenario`, the `national`
scenario: CN 2011 every 30 s and CN 2051 every minute per stack), then offered at a fixed
wall-clock rate whatever their simulated time: each stack is one `LoggerClient` (its own TCP
connection, stop-and-wait on the 9014 answer), fed by its own queue so a stack's frames stay
in order. Probe stacks send one minute frame with SO2 above the ultra-low limit every second;
once their rolling 60-minute mean is ready (45 minutes, sent as warm-up), every probe frame
makes a `provisional_exceedance` alert event, whose arrival on the alerts topic times it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr

from simulators.client import LoggerClient
from simulators.logger import SimFrame
from simulators.scenario import load_scenario
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames, make_qn
from stackwatch.registry import StackInfo, StackRegistry

SO2, O2 = "a21026", "a19001"
PROBE_PASSWORD = "123456"
#: Warm-up minutes per probe: the rolling mean may alarm after 45 valid minutes.
PROBE_WARMUP = 46


@dataclass(frozen=True)
class Outgoing:
    """One frame to deliver: its logger, bytes and QN (9014 answers echo it)."""

    mn: str
    text: str
    qn: str | None


def national(stacks: int) -> StackRegistry:
    """The national scenario's stack registry (MN, PW, sector, process of every stack)."""
    return load_scenario("national", count=stacks).registry()


def national_frames(stacks: int, count: int, origin: datetime) -> list[Outgoing]:
    """The first `count` frames of the national scenario from `origin`, in simulated order."""
    scenario = load_scenario("national", count=stacks)
    sims = scenario.simulators(origin)
    per_stack_per_min = 3  # 2 × CN 2011 + 1 × CN 2051 (2061/2031 add a little)
    minutes = count // max(1, stacks * per_stack_per_min) + 2
    end = origin + timedelta(minutes=minutes)
    streams = [sim.frames_between(origin, end) for sim in sims]
    merged: list[SimFrame] = list(heapq.merge(*streams, key=lambda f: (f.at, f.stack_id)))
    return [Outgoing(f.mn, f.text, f.qn if f.ack else None) for f in merged[:count]]


def probe_stacks(n: int) -> list[StackInfo]:
    """Cement kiln stacks (ultra-low SO2 limit 35 mg/m³ at 10 % O2) used as latency probes."""
    return [StackInfo(stack_id=f"probe-{i:02d}", mn=f"PROBE{i:09d}",
                      password=SecretStr(PROBE_PASSWORD), sector="cement", process="kiln_tail")
            for i in range(n)]


def probe_frame(stack: StackInfo, origin: datetime, minute: int) -> tuple[Outgoing, str]:
    """Minute `minute` of a probe (SO2 50/52 mg/m³) and the `at` of the alert event it makes."""
    t = origin + timedelta(minutes=minute)
    so2 = 50.0 if minute % 2 == 0 else 52.0
    qn = make_qn(t + timedelta(seconds=61))
    (text,) = build_frames("2051", stack.mn, PROBE_PASSWORD, t, {SO2: {"Avg": so2},
                                                                  O2: {"Avg": 10.0}},
                           flags={SO2: "N", O2: "N"}, qn=qn, ack=True)
    at = (t + timedelta(minutes=1)).astimezone(CST).isoformat()
    return Outgoing(stack.mn, text, qn), at


class Feeder:
    """Delivers frames through one `LoggerClient` per MN; counts acknowledged frames."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked = 0
        self.failed = 0
        self._queues: dict[str, asyncio.Queue[tuple[Outgoing, asyncio.Future[float] | None]]] = {}
        self._clients: dict[str, LoggerClient] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def _queue(self, mn: str) -> asyncio.Queue[tuple[Outgoing, asyncio.Future[float] | None]]:
        queue = self._queues.get(mn)
        if queue is None:
            queue = self._queues[mn] = asyncio.Queue()
            client = LoggerClient("127.0.0.1", self.port, mn=mn, ack_timeout=60.0)
            self._clients[mn] = client
            self._tasks.append(asyncio.create_task(self._send_loop(client, queue)))
        return queue

    async def _send_loop(self, client: LoggerClient,
                         queue: asyncio.Queue[tuple[Outgoing, asyncio.Future[float] | None]]
                         ) -> None:
        while True:
            item, done = await queue.get()
            gave_up = client.stats.gave_up
            await client.send(item.text, ack=item.qn is not None, qn=item.qn)
            if client.stats.gave_up > gave_up:
                self.failed += 1
            else:
                self.acked += 1
            if done is not None and not done.done():
                done.set_result(time.perf_counter())

    def offer(self, item: Outgoing) -> asyncio.Future[float]:
        """Queue a frame on its logger; the future resolves when it is acknowledged."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue(item.mn).put_nowait((item, done))
        return done

    def offer_nowait(self, item: Outgoing) -> None:
        """Queue a frame without tracking it."""
        self._queue(item.mn).put_nowait((item, None))

    async def deliver_all(self, items: list[Outgoing]) -> None:
        """Send `items` as fast as the loggers go and wait for every answer."""
        await asyncio.gather(*(self.offer(i) for i in items))

    async def paced(self, items: list[Outgoing], rate: float, seconds: float) -> int:
        """Offer `items` at `rate` per second for `seconds`; returns how many were offered."""
        started = time.perf_counter()
        offered = 0
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return offered
            due = min(len(items), int(elapsed * rate) + 1)
            while offered < due:
                self.offer_nowait(items[offered])
                offered += 1
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop sending (queued frames are dropped) and close every connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(c.close() for c in self._clients.values()),
                             return_exceptions=True)


class Probes:
    """Alert-latency probes: one frame per second round-robin over the probe stacks."""

    def __init__(self, stacks: list[StackInfo], origin: datetime, feeder: Feeder) -> None:
        self.stacks = stacks
        self.origin = origin
        self.feeder = feeder
        self.minute = 0
        #: (stack_id, alert at) → perf_counter when the frame was handed to its logger.
        self.sent: dict[tuple[str, str], float] = {}

    def warmup(self) -> list[Outgoing]:
        """The minutes that make every probe's rolling mean ready."""
        items = [probe_frame(s, self.origin, m)[0] for m in range(PROBE_WARMUP)
                 for s in self.stacks]
        self.minute = PROBE_WARMUP
        return items

    async def run(self, per_second: float) -> None:
        """Send probe frames until cancelled (each probe advances one minute per frame)."""
        k = 0
        while True:
            stack = self.stacks[k % len(self.stacks)]
            item, at = probe_frame(stack, self.origin, self.minute)
            self.sent[(stack.stack_id, at)] = time.perf_counter()
            self.feeder.offer_nowait(item)
            k += 1
            if k % len(self.stacks) == 0:
                self.minute += 1
            await asyncio.sleep(1.0 / per_second)


def origin_minutes_ago(minutes: int) -> datetime:
    """The current minute (Beijing time) minus `minutes`."""
    now = datetime.now(CST).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes)
