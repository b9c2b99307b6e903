"""Injected events: what they do to readings, flags and frames, and only inside their window."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from simulators.events import Event, parse_duration
from simulators.logger import SimFrame, StackSimulator
from simulators.plants import profile_for
from stackwatch.beijing_time import CST
from stackwatch.hj212 import DecodedFrame, Framer, decode_frame

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=CST)
M = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SO2_ULTRA_LOW_SINTER = 35.0  # mg/m³ at 16 % O2, row S1 (hourly mean)


def ev(**kw: object) -> Event:
    return Event.model_validate(kw)


def sim(process: tuple[str, str], events: list[Event], ref_o2: float | None,
        seed: int = 5) -> StackSimulator:
    return StackSimulator(stack_id="s1", mn="MN0001", password="123456",
                          profile=profile_for(*process), seed=seed, origin=T0, events=events,
                          ref_o2=ref_o2)


def minutes(frames: list[SimFrame]) -> dict[datetime, DecodedFrame]:
    out = {}
    for f in frames:
        if f.cn == "2051":
            d = decode_frame(f.text)
            assert d.data_time is not None
            out[d.data_time] = d
    return out


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == timedelta(seconds=5400)
    assert parse_duration("-3m") == timedelta(seconds=-180)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration(90) == timedelta(seconds=90)
    for bad in ("10x", "", "m5", "1h 30", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_repeat_window_arithmetic() -> None:
    daily = ev(kind="calibration", start="1h", duration="10m", repeat="24h")
    # 25h05m after the origin is 5 min into the second day's occurrence (begins at 25h).
    assert daily.window(T0, T0 + timedelta(hours=25, minutes=5)) == (
        T0 + timedelta(hours=25), T0 + timedelta(hours=25, minutes=10))
    assert daily.window(T0, T0 + timedelta(hours=25, minutes=10)) is None
    assert daily.window(T0, T0 + timedelta(minutes=59)) is None


def test_exceedance_only_inside_the_window() -> None:
    trip = ev(kind="exceedance", stack="s1", factor="a21026", start="20m", duration="30m",
              ramp="5m", peak=120)
    frames = list(sim(("steel", "sinter"), [trip], 16.0).frames_between(T0, 2 * HOUR + T0))
    by_minute = minutes(frames)
    assert len(by_minute) == 120
    for start, frame in by_minute.items():
        zs = frame.values["a21026"]["ZsAvg"]
        offset = start - T0
        if 25 * M <= offset < 45 * M:  # plateau: ramp up 20–25 min, down 45–50 min
            assert zs > 100, (start, zs)
        elif offset < 20 * M or offset >= 50 * M:
            assert zs < SO2_ULTRA_LOW_SINTER, (start, zs)
    hour0 = next(decode_frame(f.text) for f in frames if f.cn == "2061")
    assert hour0.values["a21026"]["ZsAvg"] > SO2_ULTRA_LOW_SINTER


def test_calibration_flags_c_on_those_minutes_only() -> None:
    cal = ev(kind="calibration", stack="s1", start="10m", duration="10m", range_max=200)
    frames = list(sim(("coking", "coke_oven_stack"), [cal], 8.0).frames_between(T0, T0 + HOUR))
    by_minute = minutes(frames)
    for start, frame in by_minute.items():
        inside = 10 * M <= start - T0 < 20 * M
        assert frame.flags["a21026"] == ("C" if inside else "N"), start
        assert frame.flags["a19001"] == "N"  # the O2 analyser is not being calibrated
    # 50 of 60 minutes normal = 83 % > 75 % and 50 ≥ 45 valid → the hour stays N.
    hour = next(decode_frame(f.text) for f in frames if f.cn == "2061")
    assert hour.flags["a21026"] == "N"


def test_long_calibration_makes_the_hour_c() -> None:
    cal = ev(kind="calibration", stack="s1", start="0m", duration="20m")
    frames = list(sim(("coking", "coke_oven_stack"), [cal], 8.0).frames_between(T0, T0 + HOUR))
    hour = next(decode_frame(f.text) for f in frames if f.cn == "2061")
    # 40 of 60 normal = 67 % ≤ 75 % → not N; the dominant invalid flag is C.
    assert hour.flags["a21026"] == "C"


@pytest.mark.parametrize(("kind", "flag"), [("maintenance", "M"), ("fault", "D"),
                                            ("over_range", "T"), ("shutdown", "F")])
def test_flagging_events(kind: str, flag: str) -> None:
    e = ev(kind=kind, stack="s1", start="5m", duration="5m", range_max=500)
    s = sim(("steel", "sinter"), [e], 16.0)
    inside = [r for r in s.samples_between(T0, T0 + 15 * M) if 5 * M <= r.at - T0 < 10 * M]
    outside = [r for r in s.samples_between(T0, T0 + 15 * M) if r.at - T0 >= 10 * M]
    assert inside and all(r.flags["a21026"] == flag for r in inside)
    assert all(r.flags["a21026"] == "N" for r in outside)
    if kind == "over_range":
        assert all(r.values["a21026"] == 500 for r in inside)
    if kind == "fault":
        assert all(r.values["a21026"] == 0 for r in inside)


def test_startup_o2_near_21_and_flag_f() -> None:
    e = ev(kind="startup", stack="s1", start="0s", duration="30m")
    first = next(iter(sim(("cement", "kiln_tail"), [e], 10.0).samples_between(T0, T0 + M)))
    assert first.values["a19001"] >= 20.5
    assert first.flags["a19001"] == "F"


def test_flatline_zero_negative() -> None:
    events = [ev(kind="flatline", stack="s1", factor="a21026", start="5m", duration="5m"),
              ev(kind="zero", stack="s1", factor="a21002", start="5m", duration="5m"),
              ev(kind="negative", stack="s1", factor="a34013", start="5m", duration="5m")]
    s = sim(("steel", "sinter"), events, 16.0)
    inside = [r for r in s.samples_between(T0, T0 + 10 * M) if r.at - T0 >= 5 * M]
    assert len({r.values["a21026"] for r in inside}) == 1  # 恒值
    assert all(r.values["a21002"] == 0 for r in inside)
    assert all(r.values["a34013"] < 0 for r in inside)
    assert all(r.flags["a21026"] == "N" for r in inside)  # the logger does not know


def test_comm_loss_no_frames_in_window() -> None:
    loss = ev(kind="comm_loss", stack="s1", start="10m", duration="5m")
    frames = list(sim(("steel", "sinter"), [loss], 16.0).frames_between(T0, T0 + HOUR))
    assert not [f for f in frames if 10 * M <= f.at - T0 < 15 * M]
    # 181 frames per hour, minus 10 real-time (10:00…14:30) and 5 minute frames (at 10…14).
    assert len(frames) == 181 - 10 - 5


def test_corrupt_frames_fail_crc() -> None:
    bad = ev(kind="corrupt", stack="s1", start="2m", duration="1m")
    frames = list(sim(("steel", "sinter"), [bad], 16.0).frames_between(T0, T0 + 5 * M))
    for f in frames:
        decoded = decode_frame(f.text)
        corrupted = 2 * M <= f.at - T0 < 3 * M
        assert decoded.crc_ok is (not corrupted), f.text
        assert ("corrupt" in f.tags) is corrupted
    results = Framer().feed("".join(f.text for f in frames).encode())
    assert sum(1 for r in results if not r.ok) == sum(1 for f in frames if "corrupt" in f.tags)


def test_clock_skew_duplicate_out_of_order() -> None:
    events = [ev(kind="clock_skew", stack="s1", start="30m", duration="1m", skew="-3m"),
              ev(kind="duplicate", stack="s1", start="10m", duration="1m"),
              ev(kind="out_of_order", stack="s1", start="20m", duration="2m")]
    frames = list(sim(("steel", "sinter"), events, 16.0).frames_between(T0, T0 + HOUR))
    skewed = [decode_frame(f.text) for f in frames if f.cn == "2011"
              and f.at == T0 + 30 * M]
    assert skewed[0].data_time == T0 + 27 * M
    texts = [f.text for f in frames if 10 * M <= f.at - T0 < 11 * M]
    assert len(texts) == 2 * len(set(texts)) == 2 * 3  # 2 real-time + 1 minute frame, twice
    held = [f for f in frames if "out_of_order" in f.tags]
    assert len(held) == 4 + 2  # real-time at 20:00…21:30 and minute frames sent at 20, 21
    times = [decode_frame(f.text).data_time for f in held]
    assert times != sorted(t for t in times if t is not None)


def test_event_validation_errors() -> None:
    with pytest.raises(ValidationError, match="peak"):
        ev(kind="exceedance", start="1m", duration="5m")
    with pytest.raises(ValidationError, match="duration must be positive"):
        ev(kind="fault", start="1m", duration="0s")
    with pytest.raises(ValidationError, match="kind"):
        ev(kind="meteor", start="1m", duration="5m")
    with pytest.raises(ValidationError, match="skew"):
        ev(kind="clock_skew", start="1m", duration="5m")
    with pytest.raises(ValidationError, match="repeat"):
        ev(kind="calibration", start="1m", duration="10m", repeat="5m")


def test_comm_loss_with_backfill_resends_everything_when_the_link_returns() -> None:
    loss = ev(kind="comm_loss", stack="s1", start="10m", duration="5m", backfill=True)
    plain = [f.text for f in sim(("steel", "sinter"), [], 16.0).frames_between(T0, T0 + HOUR)]
    frames = list(sim(("steel", "sinter"), [loss], 16.0).frames_between(T0, T0 + HOUR))
    assert not [f for f in frames if 10 * M <= f.at - T0 < 15 * M]
    late = [f for f in frames if "backfill" in f.tags]
    assert len(late) == 10 + 5 and {f.at for f in late} == {T0 + 15 * M}
    assert sorted(f.text for f in frames) == sorted(plain)  # nothing lost, nothing extra
