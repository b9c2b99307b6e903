"""Simulated-time pacing arithmetic (no sleeping: the wall clock is injected)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from simulators.client import parse_hostport
from simulators.clock import SimClock
from stackwatch.beijing_time import CST

T0 = datetime(2026, 1, 5, tzinfo=CST)


class FakeWall:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_speed_60_maps_a_simulated_hour_to_a_wall_minute() -> None:
    wall = FakeWall()
    clock = SimClock(T0, 60.0, monotonic=wall)
    # 1 h simulated at 60× is due 60 s of wall time after the start.
    assert clock.wall_delay(T0 + timedelta(hours=1)) == pytest.approx(60.0)
    wall.t += 30.0  # 30 wall seconds later: 30 × 60 = 1800 simulated seconds have passed
    assert clock.now() == T0 + timedelta(minutes=30)
    assert clock.wall_delay(T0 + timedelta(minutes=20)) == pytest.approx(-10.0)


def test_fast_mode_never_waits() -> None:
    clock = SimClock(T0, None, monotonic=FakeWall())
    assert clock.fast and clock.wall_delay(T0 + timedelta(days=365)) == 0.0


def test_bad_clock_arguments() -> None:
    with pytest.raises(ValueError, match="aware"):
        SimClock(datetime(2026, 1, 5), 60.0)
    with pytest.raises(ValueError, match="speed"):
        SimClock(T0, 0.0)


def test_parse_hostport() -> None:
    assert parse_hostport("10.0.0.5:9212") == ("10.0.0.5", 9212)
    assert parse_hostport(":7000", default_host="gw") == ("gw", 7000)
    for bad in ("localhost", "h:0", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="host:port"):
            parse_hostport(bad)
