"""A simulated day of three cement kilns through a real worker on Tansu.

Design (deterministic, so every expected number is hand arithmetic): three kiln tails
(reference O2 10 %, SO2 ultra-low 35 mg/m³, warning at 80 % = 28). Every minute (CN 2051) the
logger reports O2 = 10.0 % (so the converted SO2 equals the measured one: (21−10)/(21−10) = 1)
and SO2 alternating by minute parity, so no value repeats long enough to be a flat-line:

* normal minute: even minute 20, odd minute 22 → hour mean (30·20 + 30·22)/60 = 21.0;
* stack A, 08:00–10:59 (SO2 exceedance, 3 h): even 50, odd 52 → hour mean 51.0;
* stack B, 10:00–10:59 calibration: flag C on every factor, SO2 = 80 (span gas);
* stack B, 16:00–17:29 flat-line: SO2 = 25 constant → hour 16 mean 25.0,
  hour 17 = (30·25 + 15·20 + 15·22)/60 = (750 + 630)/60 = 23.0;
* stack C, comm loss: no frame with DataTime 14:00–14:19 (and no 2061 for hours 13, 14) →
  hour 14 has 40 minutes (14:20–14:59): invalid (< 45).

Every hour the logger also sends its 2061 with our mean (no logger/platform mismatch). Frames
have received_at = DataTime + the normal upload lag (1 min / 1 h), as a replay of a recorded
log; the next day's first two hours close the last hour and the day (see NEXT_DAY_MINUTES).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from embedded.ports import free_port
from embedded.process import terminate
from stackwatch.beijing_time import CST
from stackwatch.hj212 import build_frames
from stackwatch.models import AggregateRecord, AlertEvent, RawFrame, Verdict
from stackwatch.registry import StackInfo, StackRegistry
from tests.kafka_topics import create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SO2, O2 = "a21026", "a19001"
DAY = datetime(2026, 11, 2, tzinfo=CST)
STACKS = {
    "A": StackInfo(stack_id="kiln-a", mn="MNKILNA0000001", password="pa", sector="cement",
                   process="kiln_tail"),
    "B": StackInfo(stack_id="kiln-b", mn="MNKILNB0000001", password="pb", sector="cement",
                   process="kiln_tail"),
    "C": StackInfo(stack_id="kiln-c", mn="MNKILNC0000001", password="pc", sector="cement",
                   process="kiln_tail"),
}
PARTITIONS = 2
#: Minutes of the next day sent at the end. The day window's watermark is the start of the
#: newest *closed hour*, so the day (24:00 + 15 min grace) closes once the next day's 01:00
#: hour has closed (01:00 hour end 02:00 + 3 min grace): frames up to 02:04.
NEXT_DAY_MINUTES = 125


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def minute_value(stack: str, t: datetime) -> tuple[float, str] | None:
    """(SO2, flag) of the stack's minute starting at t; None = no frame (comm loss)."""
    h, m = t.hour if t.date() == DAY.date() else 24 + t.hour, t.minute
    if stack == "C" and h == 14 and m < 20:
        return None
    if stack == "B" and h == 10:
        return 80.0, "C"
    if stack == "B" and (h == 16 or (h == 17 and m < 30)):
        return 25.0, "N"
    exceed = stack == "A" and 8 <= h <= 10
    if m % 2 == 0:
        return (50.0 if exceed else 20.0), "N"
    return (52.0 if exceed else 22.0), "N"


#: Hand-computed hourly SO2 means (see the module docstring); every other hour is 21.0.
SPECIAL_HOURS = {
    ("A", 8): 51.0, ("A", 9): 51.0, ("A", 10): 51.0,
    ("B", 16): 25.0, ("B", 17): 23.0,
}
INVALID_HOURS = {("B", 10): ("C", 0), ("C", 14): ("N", 40)}  # (flag/dominant flag, valid minutes)


def expected_hour_means() -> dict[tuple[str, int], float]:
    return {
        (s, h): SPECIAL_HOURS.get((s, h), 21.0)
        for s in STACKS for h in range(24) if (s, h) not in INVALID_HOURS
    }


def build_day() -> list[tuple[str, RawFrame]]:
    """All frames of the day (+20 min of the next), in receive-time order: (MN, frame)."""
    frames: list[tuple[datetime, str, str, RawFrame]] = []
    means = expected_hour_means()
    for name, stack in STACKS.items():
        pw = stack.password.get_secret_value() if stack.password else ""
        for i in range(24 * 60 + NEXT_DAY_MINUTES):
            t = DAY + timedelta(minutes=i)
            mv = minute_value(name, t)
            if mv is None:
                continue
            so2, flag = mv
            (text,) = build_frames(
                "2051", stack.mn, pw, t, {SO2: {"Avg": so2}, O2: {"Avg": 10.0}},
                flags={SO2: flag, O2: flag}, now=t,
            )
            rx = t + timedelta(minutes=1)
            frames.append((rx, "1", name, _raw(text, rx, stack.mn, "2051")))
        for h in range(24):
            if (name, h) in INVALID_HOURS or (name == "C" and h == 13):
                continue
            t = at(h)
            (text,) = build_frames(
                "2061", stack.mn, pw, t, {SO2: {"Avg": means[(name, h)]}, O2: {"Avg": 10.0}},
                now=t,
            )
            rx = t + timedelta(hours=1)
            frames.append((rx, "2", name, _raw(text, rx, stack.mn, "2061")))
    frames.sort(key=lambda f: (f[0], f[1], f[2]))
    return [(f[3].mn or "", f[3]) for f in frames]


def _raw(text: str, rx: datetime, mn: str, cn: str) -> RawFrame:
    return RawFrame(
        text=text, received_at=rx, peer="replay:day.log", mn=mn, cn=cn, verdict=Verdict.ACCEPTED
    )


# ----------------------------------------------------------------------------- expected alerts

def expected_alerts() -> set[tuple[str, str, str, str]]:
    """(stack_id, rule, kind, at ISO) of every alert event the day must produce.

    * A hour_exceedance: hours 08, 09, 10 (mean 51 > 35) judged at their ends 09:00, 10:00,
      11:00 → raise, update, update; hour 11 (21) is false at 12:00, and the hold time (1 h)
      has passed when hour 12 is judged at 13:00 → clear at 12:00 + 1 h = 13:00.
    * A provisional_exceedance (rolling 60 min > 35): the window of minute starts 07:29–08:28
      sums 15·50 + 14·52 + 16·22 + 15·20 = 750 + 728 + 352 + 300 = 2130 → 35.5 > 35, at 08:29
      (the end of minute 08:28); the window 07:28–08:27 sums 2100 → 35.0, not above. It stays
      above until the window 10:31–11:30 (15·52 + 14·50 + 16·20 + 15·22 = 2130 → 35.5, at
      11:31); at 11:32 the sum is 14·50 + 14·52 + 16·20 + 16·22 = 2100 → 35.0, false; after the
      15-min hold → clear at 11:47. Each minute 08:30–11:31 while active is an update (182).
    * B calibration hour 10: invalid with flag C → hour_incomplete suppressed at 11:00 (no raise).
    * B flat-line: SO2 = 25 from 16:00; the run reaches 60 min with the minute 16:59 → raise at
      16:59; 17:30 (value 20) ends it → clear at 17:30 (hold 0).
    * C offline: last frame event time 14:00 (minute 13:59 + 1 min lag); timeout 10 min →
      raise at 14:10; the next frame (minute 14:20, event time 14:21) → clear at 14:21.
    * C hour 14 (40 valid minutes, flag N): hour_incomplete raise at 15:00; hour 15 is valid
      at 16:00 → false, cleared by the hour-16 judgement at 17:00 (hold 1 h).
    """
    a, b, c = (STACKS[s].stack_id for s in "ABC")

    def iso(t: datetime) -> str:
        return t.isoformat()

    out = {
        (a, "hour_exceedance", "raise", iso(at(9))),
        (a, "hour_exceedance", "update", iso(at(10))),
        (a, "hour_exceedance", "update", iso(at(11))),
        (a, "hour_exceedance", "clear", iso(at(13))),
        (a, "provisional_exceedance", "raise", iso(at(8, 29))),
        (a, "provisional_exceedance", "clear", iso(at(11, 47))),
        (b, "hour_incomplete", "suppressed", iso(at(11))),
        (b, "flatline", "raise", iso(at(16, 59))),
        (b, "flatline", "clear", iso(at(17, 30))),
        (c, "offline", "raise", iso(at(14, 10))),
        (c, "offline", "clear", iso(at(14, 21))),
        (c, "hour_incomplete", "raise", iso(at(15))),
        (c, "hour_incomplete", "clear", iso(at(17))),
    }
    t = at(8, 30)
    while t <= at(11, 31):
        out.add((a, "provisional_exceedance", "update", iso(t)))
        t += timedelta(minutes=1)
    return out


# ----------------------------------------------------------------------------- harness

@dataclass
class Run:
    """Topic names, env and subprocesses of one pipeline run."""

    bootstrap: str
    prefix: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def topics(self) -> dict[str, str]:
        names = ["raw", "readings", "minute", "hour", "day", "alerts", "alert_commands",
                 "deadletter"]
        return {n: f"{self.prefix}.{n}" for n in names}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
        env.update({f"STACKWATCH_TOPICS__{n.upper()}": t for n, t in self.topics.items()})
        env.update({
            "STACKWATCH_TOPICS__PARTITIONS": str(PARTITIONS),
            "STACKWATCH_STREAMS__TICK_INTERVAL_S": "1",
            # The expected day is exact; the end-of-input flush is a wall-clock event and is
            # exercised by tests/e2e/test_real_hours.py.
            "STACKWATCH_STREAMS__IDLE_FLUSH_S": "86400",
            "STACKWATCH_DATA_DIR": str(self.tmp / "data"),
            "STACKWATCH_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        })
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        registry = self.tmp / "registry.yaml"
        if not registry.exists():
            StackRegistry(stacks=list(STACKS.values())).dump(registry)
        log = (self.tmp / "worker.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from commands import main; main()", "worker", "run",
             "--bootstrap", self.bootstrap, "--web-port", str(free_port()),
             "--metrics-port", str(free_port()), "--app-id", self.prefix.replace(".", "-"),
             "--registry", str(registry), "--data-dir", str(self.tmp / "faust"),
             "--log-level", "info"],
            cwd=REPO, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def log_tail(self) -> str:
        path = self.tmp / "worker.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def create_topics(self) -> None:
        await create_topics(self.bootstrap, self.topics.values(), PARTITIONS)


async def produce(run: Run, frames: list[tuple[str, RawFrame]], *, chunk: int = 0,
                  pause: float = 0.0) -> None:
    # One record per batch, like every producer in the tansu profile: Tansu serves a fetch
    # from a mid-batch committed offset from the next batch on, so a consumer restarting
    # inside a multi-record batch would skip the rest of it.
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, max_batch_size=1)
    await producer.start()
    try:
        for i, (mn, frame) in enumerate(frames):
            value = frame.model_dump_json().encode()
            await producer.send(run.topics["raw"], value, key=mn.encode())
            if chunk and i % chunk == chunk - 1:
                await producer.flush()
                await asyncio.sleep(pause)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class Collected:
    hours: dict[tuple[Any, ...], str] = field(default_factory=dict)
    days: dict[tuple[Any, ...], str] = field(default_factory=dict)
    alerts: dict[tuple[str, int], str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def add(self, where: dict[Any, str], key: Any, value: str) -> None:
        old = where.setdefault(key, value)
        if old != value:
            self.conflicts.append(f"{key}: {old} != {value}")


def _agg_key(rec: AggregateRecord) -> tuple[Any, ...]:
    return (rec.stack_id, rec.factor, rec.period, rec.period_start.isoformat(), rec.revision)


async def collect(
    run: Run, done: Callable[[Collected], bool], limit_s: float = 150.0
) -> Collected:
    """Read hour/day/alerts from the start until `done(collected)` or the timeout."""
    out = Collected()
    consumer = AIOKafkaConsumer(
        run.topics["hour"], run.topics["day"], run.topics["alerts"],
        bootstrap_servers=run.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    try:
        started = time.monotonic()
        deadline = started + limit_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    text = (r.value or b"").decode()
                    if tp.topic == run.topics["alerts"]:
                        ev = AlertEvent.model_validate_json(text)
                        out.add(out.alerts, (ev.alert_id, ev.seq), _canon(text))
                    else:
                        rec = AggregateRecord.model_validate_json(text)
                        where = out.hours if rec.period == "hour" else out.days
                        out.add(where, _agg_key(rec), _canon(text))
            if done(out):
                print(f"collected in {time.monotonic() - started:.1f} s")
                break
            if any(p.poll() is not None for p in run.procs[-1:]):
                break
    finally:
        await consumer.stop()
    return out


def _of_day(hours: dict[tuple[Any, ...], str]) -> dict[tuple[Any, ...], str]:
    return {k: v for k, v in hours.items() if str(k[3]).startswith(DAY.date().isoformat())}


def _canon(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True)


def finished(out: Collected) -> bool:
    """All 3 stacks' day aggregates for both factors arrived (the last thing a day emits)."""
    return len(out.days) >= 6


def so2_hours(out: Collected) -> dict[tuple[str, int], AggregateRecord]:
    names = {s.stack_id: n for n, s in STACKS.items()}
    result = {}
    for text in out.hours.values():
        rec = AggregateRecord.model_validate_json(text)
        if rec.factor == SO2 and rec.period_start.astimezone(CST).date() == DAY.date():
            result[(names[rec.stack_id], rec.period_start.astimezone(CST).hour)] = rec
    return result


def alert_summary(out: Collected) -> set[tuple[str, str, str, str]]:
    events = [AlertEvent.model_validate_json(t) for t in out.alerts.values()]
    return {(e.stack_id, e.rule.value, e.kind.value, e.at.astimezone(CST).isoformat())
            for e in events}


def assert_day(out: Collected, run: Run) -> None:
    assert out.conflicts == [], out.conflicts[:5]
    progress = sorted(so2_hours(out))[-3:]
    assert finished(out), f"not finished: {progress}, {len(out.days)} days\n{run.log_tail()}"
    hours = so2_hours(out)
    valid = {k: v.mean for k, v in hours.items() if v.valid}
    assert valid == expected_hour_means()
    for key, (_flag, count) in INVALID_HOURS.items():
        assert not hours[key].valid and hours[key].valid_count == count, hours[key]
    assert all(v.revision == 0 for v in hours.values())
    days = {AggregateRecord.model_validate_json(t) for t in out.days.values()}
    day_so2 = {d.stack_id: d.mean for d in days if d.factor == SO2}
    # A: (21·21 + 3·51)/24 = 594/24 = 24.75; C: 23 valid hours of 21 → 21.0;
    # B: (21·21 + 25 + 23)/23 = 489/23.
    assert day_so2["kiln-a"] == pytest.approx(24.75)
    assert day_so2["kiln-c"] == pytest.approx(21.0)
    assert day_so2["kiln-b"] == pytest.approx(489 / 23)
    assert alert_summary(out) == expected_alerts()


@pytest.fixture
def runs(kafka_bootstrap: str, tmp_path: Path) -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for run in made:
        for proc in run.procs:
            if proc.poll() is None:
                terminate(proc.pid, grace=5.0)
                proc.wait(timeout=10)


def new_run(runs: list[Run], bootstrap: str, prefix: str, tmp: Path) -> Run:
    run = Run(bootstrap, prefix, tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    runs.append(run)
    return run


@pytest.fixture(scope="module")
def day_frames() -> list[tuple[str, RawFrame]]:
    return build_day()


@pytest.mark.timeout(900)
async def test_day_live_then_replay_gives_identical_results(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, runs: list[Run],
    day_frames: list[tuple[str, RawFrame]],
) -> None:
    live = new_run(runs, kafka_bootstrap, f"{unique_topic}.live", tmp_path / "live")
    await live.create_topics()
    live.start_worker()
    await produce(live, day_frames)
    live_out = await collect(live, finished, limit_s=360.0)
    assert_day(live_out, live)
    assert live.procs[0].poll() is None
    live.procs[0].terminate()
    assert live.procs[0].wait(timeout=30) == 0

    # Replay: fresh topics and app, frames sent stack by stack (another interleaving) in
    # paced chunks. Same per-stack order, so identical aggregates and alert ids/seqs.
    replay = new_run(runs, kafka_bootstrap, f"{unique_topic}.replay", tmp_path / "replay")
    await replay.create_topics()
    by_stack = sorted(day_frames, key=lambda f: f[0])  # stable: keeps each stack's order
    await produce(replay, by_stack, chunk=500, pause=0.2)
    replay.start_worker()
    # The replay worker starts on a full backlog (~4 500 frames): give it time on a busy machine.
    replay_out = await collect(replay, finished, limit_s=360.0)
    assert finished(replay_out), replay.log_tail()
    # Hours of the day itself (the next day's early hours arrive or not before collection
    # stops, depending on timing).
    assert _of_day(replay_out.hours) == _of_day(live_out.hours)
    assert replay_out.days == live_out.days
    assert replay_out.alerts == live_out.alerts


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_restart_mid_day_changes_nothing(
    how: str, kafka_bootstrap: str, unique_topic: str, tmp_path: Path, runs: list[Run],
    day_frames: list[tuple[str, RawFrame]],
) -> None:
    run = new_run(runs, kafka_bootstrap, f"{unique_topic}.{how}", tmp_path / how)
    await run.create_topics()
    first = run.start_worker()
    await produce(run, day_frames)
    # Let about a third of the day through (hour 8 closed everywhere), then stop the worker.
    partial = await collect(run, lambda o: len(so2_hours(o)) >= 24, limit_s=120)
    assert len(so2_hours(partial)) >= 24, run.log_tail()
    if how == "sigterm":
        first.terminate()
        assert first.wait(timeout=30) == 0
    else:
        first.kill()
        first.wait(timeout=10)
    run.start_worker()
    out = await collect(run, finished)
    assert_day(out, run)  # same hand-computed means and alert events as uninterrupted
    assert "ConsistencyError" not in (run.tmp / "worker.log").read_text(errors="replace")

