"""The replay benchmark times the loggers' logins apart from the rest of the capture, and
extrapolates a province-day from both (hand-computed answers)."""

from __future__ import annotations

from bench.bench_replay import PROVINCE_DAY_FRAMES, Run, split_logins
from bench.pipeline_watch import CpuUse
from simulators.replay import ReplayFrame


def frame(seq: int, mn: str | None) -> ReplayFrame:
    return ReplayFrame(seq=seq, wire=b"##\r\n", ok=mn is not None, mn=mn)


def test_each_loggers_first_frame_is_its_login_and_the_order_is_kept() -> None:
    frames = [frame(1, "A"), frame(2, "B"), frame(3, "A"), frame(4, None), frame(5, "C"),
              frame(6, "B"), frame(7, None)]
    logins, rest = split_logins(frames)
    assert [f.seq for f in logins] == [1, 2, 4, 5]  # A, B, the unreadable ones' line, C
    assert [f.seq for f in rest] == [3, 6, 7]


def test_a_province_day_pays_the_logins_once() -> None:
    # 300 logins in 10 s, then 34,000 frames in 34 s (1,000 frames/s): a province-day is
    # 10 s + (190,000 − 300) / 1,000 = 199.7 s = 3.328 min; over the capture, 34,300 frames
    # in 44 s = 779.5 frames/s.
    run = Run(login_frames=300, login_s=10.0, frames=34_000, sent_s=20.0, end_to_end_s=34.0,
              cpu=CpuUse(used={}, waiting={}, pressure=None), worker_rss_mb=100.0)
    assert PROVINCE_DAY_FRAMES == 190_000
    assert run.fps == 1000.0
    assert abs(run.province_day_min - 199.7 / 60) < 1e-12
    assert abs(run.all_in_fps - 34_300 / 44) < 1e-9
