"""The pipeline benchmark's choice of the step where the latency target is judged."""

from __future__ import annotations

from bench.pipeline_report import Latency, Phase, Step, half_rate_step, summarise
from bench.pipeline_watch import rss_mb


def step(offered: float, sustained: bool = True) -> Step:
    return Step(offered_fps=offered, accepted_fps=offered, processed_fps=offered,
                stored_fps=offered, readings_rows_per_s=offered, worker_backlog_mid=0,
                worker_backlog=0, sinks_backlog_mid=0, sinks_backlog=0, worker_group_lag=None,
                sinks_group_lag=None, worker_rss_mb=[100.0], latency=Latency(n=60),
                sustained=sustained, verdict="test")


LADDER = [step(10), step(25), step(50), step(100), step(200), step(300), step(400),
          step(500, sustained=False)]


def test_the_step_nearest_half_the_sustained_rate() -> None:
    # Sustained 398 frames/s → half 199: the 200 step (1 away), not 100 (99 away).
    chosen = half_rate_step(LADDER, 398.4)
    assert chosen is not None and chosen.offered_fps == 200


def test_a_tie_takes_the_lower_rate_and_unsustained_steps_never_count() -> None:
    # Half of 300 = 150: 100 and 200 are both 50 away → 100. The 500 step was not sustained,
    # so half of 1,000 picks 400, the highest sustained one.
    chosen = half_rate_step(LADDER, 300.0)
    assert chosen is not None and chosen.offered_fps == 100
    top = half_rate_step(LADDER, 1000.0)
    assert top is not None and top.offered_fps == 400


def test_no_sustained_step_gives_none() -> None:
    assert half_rate_step([step(10, sustained=False)], 0.0) is None
    assert half_rate_step([], 398.0) is None


def test_broker_memory_growth_is_last_step_minus_ladder_start() -> None:
    # 212.5 MB at the start, 230.0 then 480.5 at the steps' ends: it grew 268.0 MB.
    phase = Phase(workers=1, run=0, broker_rss_start_mb=212.5)
    phase.steps = [step(100).model_copy(update={"broker_rss_mb": 230.0}),
                   step(200).model_copy(update={"broker_rss_mb": 480.5})]
    summarise(phase, [(0.0, 1.0), (1.0, 2.0)], {}, {})
    assert phase.broker_rss_growth_mb == 268.0


def test_no_broker_growth_without_a_local_broker() -> None:
    phase = Phase(workers=1, run=0, broker_rss_start_mb=None)
    phase.steps = [step(100).model_copy(update={"broker_rss_mb": None})]
    summarise(phase, [(0.0, 1.0)], {}, {})
    assert phase.broker_rss_growth_mb is None
    assert rss_mb(None) is None
    assert rss_mb(2**22 + 12345) is None  # above Linux's largest PID: no such process
