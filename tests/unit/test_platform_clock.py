"""The platform's time as the loggers show it (stackwatch.platform_clock), by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stackwatch.platform_clock import MAD_TO_SIGMA, PlatformClock

T0 = datetime(2016, 8, 24, 4, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_no_reference_until_enough_peers_have_been_heard_for_ten_minutes() -> None:
    clock = PlatformClock(min_stacks=5)
    for i in range(5):
        clock.observe(f"s{i}", T0 + 60 * i * S, T0)
    assert clock.reference() is None  # five peers, but no speed known yet
    for i in range(4):
        clock.observe(f"s{i}", T0 + (600 + 60 * i) * S, T0 + 600 * S)
    assert clock.reference() is None  # four speeds known
    clock.observe("s4", T0 + 840 * S, T0 + 600 * S)
    ref = clock.reference()
    assert ref is not None
    # Offsets (receipt − event) 0, 60, 120, 180, 240 s: median 120; deviations 120, 60, 0,
    # 60, 120 → MAD 60 s → spread 1.4826 × 60 = 88.956 s. Speeds 600/600 = 1.
    assert ref.offset == 120 * S and ref.stacks == 5
    assert ref.spread.total_seconds() == pytest.approx(MAD_TO_SIGMA * 60)
    assert ref.speed == 1.0


def test_a_replay_sent_fast_shows_its_speed() -> None:
    # Each logger's hour of data (3600 s of event time) arrives within one minute: speed 60.
    clock = PlatformClock(min_stacks=3)
    for i in range(3):
        clock.observe(f"s{i}", T0, T0 - timedelta(days=3652))
        clock.observe(f"s{i}", T0 + 60 * S, T0 - timedelta(days=3652) + 3600 * S)
    ref = clock.reference()
    assert ref is not None and ref.speed == 60.0
    assert ref.offset == timedelta(days=3652) - 3540 * S  # median of three equal offsets


def test_old_stacks_leave_the_window() -> None:
    clock = PlatformClock(window=3, min_stacks=2)
    for i in range(5):
        clock.observe(f"s{i}", T0 + 600 * S, T0)
    assert clock.reference() is None
    assert len(clock._offsets) == 3 and set(clock._first) == {"s2", "s3", "s4"}
