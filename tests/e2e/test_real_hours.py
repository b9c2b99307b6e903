"""The four shared real hours through the whole pipeline, judged by the loggers' own records.

`stackwatch replay --write-registry` infers the registry from the capture (system, intervals,
interval labels, pressure units); the capture is then replayed over TCP, as fast as the
gateway takes it, one connection per logger, into gateway → Tansu → worker → sinks →
PostgreSQL. When the input has gone idle the worker flushes the last hour and day. The
verdicts come from tests/real_capture.py, which reads the files on its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime

import psycopg
import pytest

from simulators.replay import load_replays, replay
from stackwatch.registry import StackRegistry
from tests import real_capture as oracle
from tests.e2e.pipeline import REPO, Pipeline, fresh_database, migrate, settle

pytestmark = pytest.mark.e2e

IDLE_FLUSH_S = 15
Y2K_LOGGER = "LD130131000211"


class Result:
    """What the database holds after the replay."""

    def __init__(self, dsn: str, registry: StackRegistry) -> None:
        self.registry = registry
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'Asia/Shanghai'")  # HJ 212 time, UTC+08:00
            self.hours = conn.execute(
                "SELECT stack_id, factor, period_start, valid, mean, stopped, coverage_minutes, "
                "total_count FROM hour_aggregates"
            ).fetchall()
            self.days = conn.execute(
                "SELECT stack_id, factor, period_start, valid FROM day_aggregates"
            ).fetchall()
            self.alerts = conn.execute("SELECT stack_id, rule, factor FROM alerts").fetchall()
            self.readings_by_st: dict[str | None, int] = dict(
                conn.execute("SELECT st, count(*) FROM readings GROUP BY st").fetchall()
            )

    def mn(self, stack_id: str) -> str:
        stack = self.registry.by_id(stack_id)
        assert stack is not None, stack_id
        return stack.mn

    def raised(self, rule: str) -> list[str]:
        return [self.mn(s) for s, r, _ in self.alerts if r == rule]


@pytest.fixture(scope="module")
async def result(
    kafka_bootstrap: str, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Result]:
    tmp = tmp_path_factory.mktemp("real")
    registry_file = tmp / "inferred.yaml"
    # The operator's command: infer the registry from the capture (a dry run sends nothing).
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from commands import main; main()", "replay",
         *map(str, oracle.HOURS), "--dry-run", "--write-registry", str(registry_file)],
        cwd=REPO, check=True, capture_output=True, timeout=300,
    )
    registry = StackRegistry.load(registry_file)
    dsn = fresh_database(pg_dsn)
    migrate(dsn)
    run = Pipeline(
        bootstrap=kafka_bootstrap, dsn=dsn, prefix=f"r.{uuid.uuid4().hex[:10]}", tmp=tmp,
        registry=registry,
        extra_env={
            "STACKWATCH_STREAMS__IDLE_FLUSH_S": str(IDLE_FLUSH_S),
            # Real loggers' clocks are judged as in production (against their peers).
            "STACKWATCH_STREAMS__PROCESSOR__QUALITY__CLOCK_SKEW_TOLERANCE": "PT5M",
        },
    )
    try:
        await run.start_all()
        log = load_replays(oracle.HOURS)
        stats = await replay(log.frames, "127.0.0.1", run.gateway_port, speed=None)
        assert stats.frames == len(log.frames)
        await settle(
            dsn,
            done=lambda c: c.get("hour_aggregates", 0) > 1000,
            quiet_s=IDLE_FLUSH_S + 20.0,
            timeout_s=1500.0,
            alive=run.children.values(),
        )
        yield Result(dsn, registry)
    finally:
        run.stop_all()


def test_platform_hours_agree_with_the_loggers_own_hours(result: Result) -> None:
    labels = {s.mn: s.interval_label or "end" for s in result.registry.stacks}
    stack_of = {s.mn: s.stack_id for s in result.registry.stacks}
    platform: dict[tuple[str, str, datetime], tuple[bool, float | None]] = {
        (stack, factor, start): (valid, mean)
        for stack, factor, start, valid, mean, *_ in result.hours
    }
    got = oracle.agreement(platform, labels, stack_of)
    print(f"agreement through the pipeline: {got.agreeing}/{got.loggers} = {got.share:.1%}")
    print("alerts by rule:", dict(Counter(rule for _, rule, _ in result.alerts)))
    assert got.loggers >= 100
    assert got.share >= 0.90


def test_offline_only_for_loggers_that_fell_silent(result: Result) -> None:
    def timeout_s(mn: str) -> float:
        stack = result.registry.by_mn(mn)
        rtd = stack.rtd_interval_s if stack and stack.rtd_interval_s else 30
        return max(600.0, 3.0 * rtd)

    offline = set(result.raised("offline"))
    print(f"offline: {sorted(offline)}")
    assert all(oracle.longest_silence(mn).total_seconds() >= timeout_s(mn) for mn in offline)
    assert len(offline) < 20


def test_clock_skew_only_for_clocks_that_were_wrong(result: Result) -> None:
    skewed = result.raised("clock_skew")
    print(f"clock skew: {sorted(skewed)}")
    assert skewed.count(Y2K_LOGGER) == 1
    offsets = oracle.clock_offsets()
    assert all(abs(offsets.get(mn, 1e9)) > 30 for mn in skewed if mn != Y2K_LOGGER)


def test_wastewater_is_kept_but_never_judged_as_flue_gas(result: Result) -> None:
    assert result.readings_by_st.get("32", 0) > 10_000  # kept, with their system visible
    water = {f"auto-{mn}" for mn in oracle.wastewater_loggers()}
    assert not [h for h in result.hours if h[0] in water]
    assert not [a for a in result.alerts if a[0] in water]


def test_stopped_stacks_are_stopped_without_zero_or_flatline_alarms(result: Result) -> None:
    stopped = {f"auto-{mn}" for mn in oracle.stopped_loggers()}
    hours = [h for h in result.hours if h[0] in stopped]
    assert hours and all(h[5] for h in hours if h[7] >= 4)  # ≥ 40 min of records in the hour
    quiet = {"zero", "flatline", "negative", "hour_incomplete"}
    assert not [a for a in result.alerts if a[0] in stopped and a[1] in quiet]


def test_the_last_hour_and_day_close_when_the_input_goes_idle(result: Result) -> None:
    # The capture ends during 2016-08-24 08:xx: that hour and the day are emitted by the
    # idle flush (provisional: the day has 4 of its 24 hours).
    last_hours = {start.hour for _, _, start, *_ in result.hours}
    assert 8 in last_hours
    days = {(stack, start.date()) for stack, _, start, _ in result.days}
    assert any(day.isoformat() == "2016-08-24" for _, day in days)
