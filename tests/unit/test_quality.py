"""Data-quality detectors over explicit timestamps, against hand-computed boundaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from stackwatch.alerts import AlertBook
from stackwatch.models import EventKind, Rule
from stackwatch.platform_clock import ClockReference
from stackwatch.quality import (
    ClockSkewDetector,
    Condition,
    FlatlineDetector,
    NegativeDetector,
    OfflineDetector,
    OverRangeDetector,
    QualityConfig,
    StackQuality,
    ZeroDetector,
    logger_hour_mismatch,
    zs_mismatch,
)

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SEC = timedelta(seconds=1)
CFG = QualityConfig()
ONE_FRAME = QualityConfig(clock_skew_confirm_frames=1)
"""Clock-skew decisions on a single frame (the default confirms over three)."""


def states(conds: list[Condition]) -> list[tuple[Rule, bool]]:
    return [(c.rule, c.active) for c in conds]


# ----------------------------------------------------------------------------- offline


def test_offline_after_20_minutes_by_timer() -> None:
    # 30 s interval × 40 missed intervals = 1200 s = 20 min.
    cfg = QualityConfig(upload_interval=timedelta(seconds=30), offline_missed_intervals=40)
    assert cfg.offline_timeout == timedelta(minutes=20)
    det = OfflineDetector(stack_id="s")
    assert det.frame(T0, cfg) == []
    assert det.check(T0 + 20 * MIN - SEC, cfg) == []
    down = det.check(T0 + 20 * MIN, cfg)
    assert states(down) == [(Rule.OFFLINE, True)]
    assert down[0].value == 1200.0
    assert down[0].at == T0 + 20 * MIN
    assert det.check(T0 + 25 * MIN, cfg) == []  # reported once
    up = det.frame(T0 + 26 * MIN, cfg)
    assert states(up) == [(Rule.OFFLINE, False)]
    assert up[0].value == 1560.0  # 26 min gap


def test_offline_default_is_two_intervals() -> None:
    # Default 2 × 30 s = 60 s (a proposal: docs/alarms.md#default-thresholds).
    det = OfflineDetector(stack_id="s")
    det.frame(T0, CFG)
    assert det.check(T0 + 59 * SEC, CFG) == []
    assert states(det.check(T0 + 60 * SEC, CFG)) == [(Rule.OFFLINE, True)]


def test_logger_that_never_connects_is_offline() -> None:
    det = OfflineDetector(stack_id="s")
    assert det.check(T0, CFG) == []  # starts watching
    assert states(det.check(T0 + 60 * SEC, CFG)) == [(Rule.OFFLINE, True)]


# ----------------------------------------------------------------------------- flat-line


def test_flatline_after_60_identical_minutes_and_cleared_on_change() -> None:
    det = FlatlineDetector(stack_id="s", factor="a21026")
    for i in range(59):  # 10:00 … 10:58: 59 minutes
        assert det.observe(T0 + i * MIN, 50.0, "N", CFG) == []
    out = det.observe(T0 + 59 * MIN, 50.0, "N", CFG)  # 10:59: the 60th identical minute
    assert states(out) == [(Rule.FLATLINE, True)]
    assert out[0].value == 50.0
    assert out[0].period_start == T0
    assert out[0].evidence["run_minutes"] == 60
    assert det.observe(T0 + 60 * MIN, 50.0, "N", CFG) == []  # still flat: no repeat
    cleared = det.observe(T0 + 61 * MIN, 50.001, "N", CFG)
    assert states(cleared) == [(Rule.FLATLINE, False)]
    assert cleared[0].evidence["new_value"] == 50.001


def test_flatline_ignores_invalid_flags_and_restarts_after_a_gap() -> None:
    det = FlatlineDetector(stack_id="s", factor="a21026")
    for i in range(30):
        det.observe(T0 + i * MIN, 7.0, "N", CFG)
    # Calibration minutes (flag C) are skipped, neither extending nor breaking the run.
    for i in range(30, 33):
        assert det.observe(T0 + i * MIN, 0.0, "C", CFG) == []
    # A gap of 6 min > 5 min restarts the run at 10:36 …
    for i in range(36, 95):  # 10:36 … 11:34 = 59 minutes
        assert det.observe(T0 + i * MIN, 7.0, "N", CFG) == []
    # … so the 60th minute of the new run (11:35) is the first flat-line.
    assert states(det.observe(T0 + 95 * MIN, 7.0, "N", CFG)) == [(Rule.FLATLINE, True)]


def test_zero_after_configured_minutes() -> None:
    cfg = QualityConfig(zero_window=timedelta(minutes=30))
    det = ZeroDetector(stack_id="s", factor="a34013")
    for i in range(29):
        assert det.observe(T0 + i * MIN, 0.0, "N", cfg) == []
    assert states(det.observe(T0 + 29 * MIN, 0.0, "N", cfg)) == [(Rule.ZERO, True)]
    assert states(det.observe(T0 + 30 * MIN, 0.2, "N", cfg)) == [(Rule.ZERO, False)]


# ----------------------------------------------------------------------------- value checks


def test_negative_with_tolerance() -> None:
    cfg = QualityConfig(negative_tolerance=0.1)
    det = NegativeDetector(stack_id="s", factor="a21026")
    assert det.observe(T0, -0.1, "N", cfg) == []  # −0.1 is not below −0.1
    assert states(det.observe(T0 + MIN, -0.2, "N", cfg)) == [(Rule.NEGATIVE, True)]
    assert det.observe(T0 + 2 * MIN, -5.0, "N", cfg) == []
    assert states(det.observe(T0 + 3 * MIN, 0.0, "N", cfg)) == [(Rule.NEGATIVE, False)]


def test_over_range_by_flag_t_or_configured_range() -> None:
    cfg = QualityConfig(ranges={"a21026": 200.0})
    det = OverRangeDetector(stack_id="s", factor="a21026")
    assert det.observe(T0, 200.0, "N", cfg) == []  # equal to the range is in range
    assert states(det.observe(T0 + MIN, 200.1, "N", cfg)) == [(Rule.OVER_RANGE, True)]
    assert states(det.observe(T0 + 2 * MIN, 150.0, "N", cfg)) == [(Rule.OVER_RANGE, False)]
    flagged = det.observe(T0 + 3 * MIN, 150.0, "T", cfg)
    assert states(flagged) == [(Rule.OVER_RANGE, True)]
    assert flagged[0].flag == "T"


def test_clock_skew_tolerance_boundary_and_the_year_2000_logger() -> None:
    det = ClockSkewDetector(stack_id="s")
    # Receipt 5 min after DataTime: |5 min| is not > 5 min.
    assert det.frame(T0, T0 + 5 * MIN, ONE_FRAME) == []
    out = det.frame(T0, T0 + 5 * MIN + SEC, ONE_FRAME)
    assert states(out) == [(Rule.CLOCK_SKEW, True)]
    assert out[0].value == 301.0
    # A minute record is judged by its interval's end: 10:10–10:11 arriving at 10:11 is on time.
    on_time = det.frame(T0 + 11 * MIN, T0 + 11 * MIN, ONE_FRAME)
    assert states(on_time) == [(Rule.CLOCK_SKEW, False)]
    # A receipt older than the last one is out of order: ignored.
    assert det.frame(datetime(2000, 1, 1, tzinfo=UTC), T0 + 2 * MIN, ONE_FRAME) == []
    # A logger whose clock reads year 2000 (seen in real 2016 traffic).
    y2k = det.frame(datetime(2000, 1, 1, tzinfo=UTC), T0 + 12 * MIN, ONE_FRAME)
    assert states(y2k) == [(Rule.CLOCK_SKEW, True)]


def test_clock_skew_is_confirmed_over_frames_and_recovers_with_hysteresis() -> None:
    # Tolerance 5 min, three frames to confirm. Two frames 6 min off, one on time: nothing.
    det = ClockSkewDetector(stack_id="s")
    frames = [(6, False), (6, False), (0, False), (6, False), (6, False), (6, True)]
    for i, (off, raises) in enumerate(frames):
        rx = T0 + i * MIN
        out = det.frame(rx - off * MIN, rx, CFG)
        assert (states(out) == [(Rule.CLOCK_SKEW, True)]) is raises, i
    # 4 min off is within 5 min but not below 3/4 × 5 = 3.75 min: still skewed.
    for i in range(6, 12):
        rx = T0 + i * MIN
        assert det.frame(rx - 4 * MIN, rx, CFG) == [], i
    # 3 min off, three frames in a row: recovered.
    outs = [det.frame(T0 + i * MIN - 3 * MIN, T0 + i * MIN, CFG) for i in range(12, 15)]
    assert [states(o) for o in outs] == [[], [], [(Rule.CLOCK_SKEW, False)]]


def test_clock_skew_against_the_platform_reference_of_a_replay() -> None:
    # History replayed in 2026: every logger's data is ~10 years old on arrival. Judged
    # against its peers' consensus offset (platform_clock), a logger whose clock was right at
    # the time is on time, and only the year-2000 logger is skewed.
    replay = ClockReference(offset=timedelta(days=3652), spread=timedelta(0), stacks=100)
    received = T0 + timedelta(days=3652, minutes=1)
    right = ClockSkewDetector(stack_id="right")
    assert right.frame(T0, received, ONE_FRAME, replay) == []
    y2k = ClockSkewDetector(stack_id="y2k")
    out = y2k.frame(datetime(2000, 2, 2, 5, tzinfo=UTC), received, ONE_FRAME, replay)
    assert states(out) == [(Rule.CLOCK_SKEW, True)]
    # Peers scattered by a fast replay (spread 2 h): tolerance 5 × 2 h = 10 h, so a logger
    # 3 h off its peers is not called skewed, one 11 h off is.
    fast = ClockReference(offset=timedelta(days=3652), spread=timedelta(hours=2), stacks=100)
    assert ClockSkewDetector(stack_id="a").frame(
        T0 - timedelta(hours=3), received, ONE_FRAME, fast
    ) == []
    far = ClockSkewDetector(stack_id="b").frame(
        T0 - timedelta(hours=11), received, ONE_FRAME, fast
    )
    assert states(far) == [(Rule.CLOCK_SKEW, True)]
    assert far[0].evidence["tolerance_s"] == 10 * 3600.0
    # A replay sent 60× faster than real time: only errors beyond a day can be told.
    sixty = ClockReference(offset=timedelta(days=3652), stacks=100, speed=60.0)
    assert ClockSkewDetector(stack_id="c").frame(
        T0 - timedelta(hours=20), received, ONE_FRAME, sixty
    ) == []
    y2k_fast = ClockSkewDetector(stack_id="d").frame(
        datetime(2000, 2, 2, 5, tzinfo=UTC), received, ONE_FRAME, sixty
    )
    assert states(y2k_fast) == [(Rule.CLOCK_SKEW, True)]


def test_logger_hour_and_zs_mismatch() -> None:
    # Tolerance = max(0.5, 5 % × 35 = 1.75) = 1.75 mg/m³.
    ok = logger_hour_mismatch("s", "a21026", T0, 36.0, 35.0, CFG)  # |36 − 35| = 1 ≤ 1.75
    assert ok.active is False and ok.at == T0 + timedelta(hours=1)
    bad = logger_hour_mismatch("s", "a21026", T0, 37.0, 35.0, CFG)  # 2 > 1.75
    assert bad.active is True and bad.rule is Rule.LOGGER_HOUR_MISMATCH
    assert bad.evidence["tolerance"] == 1.75
    # Near zero the absolute tolerance rules: |0.9 − 0.2| = 0.7 > max(0.5, 0.01).
    assert zs_mismatch("s", "a34013", T0, 0.9, 0.2, CFG).active is True
    assert zs_mismatch("s", "a34013", T0, 0.6, 0.2, CFG).active is False  # 0.4 ≤ 0.5


# ----------------------------------------------------------------------------- composite


def test_stack_quality_applies_value_checks_to_concentrations_only() -> None:
    sq = StackQuality.create("s")
    # Negative flue-gas pressure (a01013) is normal, negative SO2 is not.
    assert sq.on_value("a01013", T0, -0.5, "N", CFG) == []
    assert states(sq.on_value("a21026", T0, -0.5, "N", CFG)) == [(Rule.NEGATIVE, True)]


def test_stack_quality_state_round_trip_mid_flatline() -> None:
    def run(split: bool) -> list[Condition]:
        sq = StackQuality.create("s")
        out: list[Condition] = []
        for i in range(70):
            if split and i == 30:
                sq = StackQuality.from_state(json.loads(json.dumps(sq.to_state())))
            out += sq.on_value("a21026", T0 + i * MIN, 12.5, "N", CFG)
        return out

    uninterrupted = run(split=False)
    assert [(c.rule, c.active, c.at) for c in uninterrupted] == [
        (Rule.FLATLINE, True, T0 + 59 * MIN)
    ]
    assert run(split=True) == uninterrupted


def test_stack_quality_offline_and_clock_skew_on_frames() -> None:
    sq = StackQuality.create("s", watch_since=T0)
    assert states(sq.check(T0 + MIN, CFG)) == [(Rule.OFFLINE, True)]
    out = sq.on_frame(T0 + 2 * MIN, ONE_FRAME, event_time=T0 - timedelta(hours=1))
    assert states(out) == [(Rule.OFFLINE, False), (Rule.CLOCK_SKEW, True)]


def test_detector_conditions_drive_the_alert_book() -> None:
    book = AlertBook()
    det = FlatlineDetector(stack_id="s", factor="a21026")
    events = []
    for i in range(61):
        value = 50.0 if i < 60 else 51.0
        for cond in det.observe(T0 + i * MIN, value, "N", CFG):
            events += book.observe(cond)
    assert [(e.kind, e.title_zh, e.title_en) for e in events] == [
        (EventKind.RAISE, "恒值", "flat-line"),
        (EventKind.CLEAR, "恒值", "flat-line"),
    ]
    assert events[1].cleared_at == T0 + 60 * MIN  # flat-line hold is 0 by default


def test_bad_input_yields_clear_errors() -> None:
    det = NegativeDetector(stack_id="s", factor="a21026")
    with pytest.raises(ValueError, match="no timezone"):
        det.observe(datetime(2026, 1, 5, 10, 0), -1.0, "N", CFG)
    with pytest.raises(ValueError, match="finite"):
        det.observe(T0, float("nan"), "N", CFG)
    with pytest.raises(ValidationError):
        QualityConfig(offline_missed_intervals=0)
    with pytest.raises(ValidationError):
        StackQuality.from_state({"stack_id": "s"})
