"""Event-time windows: explicit event lists and clocks, emitted windows asserted exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackwatch.averaging import Period, Sample, aggregate
from stackwatch.beijing_time import CST
from stackwatch.windows import (
    AddStatus,
    ClosedWindow,
    EventTimeWindows,
    WindowStateError,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=CST)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def t(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


Emitted = tuple[datetime, int, bool, list[Any]]


def summary(closed: list[ClosedWindow]) -> list[Emitted]:
    """(start, revision, final, item values in event-time order) of each emitted window."""
    return [(c.start, c.revision, c.final, [i.item for i in c.items]) for c in closed]


def minute_windows() -> EventTimeWindows:
    return EventTimeWindows(M, grace=10 * S, allowed_lateness=2 * M)


def feed(w: EventTimeWindows, events: list[tuple[datetime, Any]]) -> list[Emitted]:
    """Add each event then advance on the event clock, as the Faust agent does."""
    out: list[Emitted] = []
    for ts, value in events:
        w.add(ts, value)
        out += summary(w.advance())
    return out


def test_window_closes_at_end_plus_grace() -> None:
    w = minute_windows()
    out = feed(w, [(t(0, 0), 1.0), (t(0, 30), 2.0), (t(1, 5), 3.0)])
    assert out == []  # watermark 08:01:05 < 08:01:00 + 10 s
    out = feed(w, [(t(1, 10), 4.0)])  # watermark 08:01:10 = end + grace
    assert out == [(t(0), 0, False, [1.0, 2.0])]
    assert w.watermark == t(1, 10)


def test_late_within_lateness_reemits_corrected_window() -> None:
    w = minute_windows()
    feed(w, [(t(0, 0), 1.0), (t(0, 30), 2.0), (t(1, 10), 4.0)])
    r = w.add(t(0, 45), 5.0)
    assert r.status is AddStatus.LATE and r.revision == 1 and r.accepted
    assert r.window_start == t(0)
    assert summary(w.advance()) == [(t(0), 1, False, [1.0, 2.0, 5.0])]


def test_duplicate_datetime_replaces_and_identical_is_idempotent() -> None:
    w = minute_windows()
    feed(w, [(t(0, 0), 1.0), (t(0, 30), 2.0)])
    r = w.add(t(0, 30), 2.5)  # same DataTime, corrected value, window still open
    assert r.status is AddStatus.ACCEPTED and r.replaced
    assert w.add(t(0, 30), 2.5).status is AddStatus.DUPLICATE
    assert feed(w, [(t(1, 10), 9.0)]) == [(t(0), 0, False, [1.0, 2.5])]
    # replaying the same reading after the close changes nothing and emits nothing
    assert w.add(t(0, 30), 2.5).status is AddStatus.DUPLICATE
    assert w.advance() == []
    # a corrected value after the close re-opens the window (revision 1)
    r = w.add(t(0, 30), 3.5)
    assert r.status is AddStatus.LATE and r.replaced
    assert summary(w.advance()) == [(t(0), 1, False, [1.0, 3.5])]


def test_same_instant_in_another_offset_is_the_same_key() -> None:
    w = minute_windows()
    w.add(t(0, 30), 2.0)
    utc_same_instant = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)
    r = w.add(utc_same_instant, 2.0)
    assert r.status is AddStatus.DUPLICATE


def test_too_late_is_reported_not_dropped_silently() -> None:
    w = minute_windows()
    w.add(t(0, 0), 1.0)
    assert summary(w.advance(t(1, 10))) == [(t(0), 0, False, [1.0])]
    # 08:00 window: end 08:01 + grace 10 s + lateness 2 min = 08:03:10
    assert w.advance(t(3, 9)) == []
    assert w.add(t(0, 50), 7.0).status is AddStatus.LATE  # 08:03:09 < 08:03:10: correctable
    assert summary(w.advance(t(3, 10))) == [(t(0), 1, True, [1.0, 7.0])]
    r = w.add(t(0, 55), 8.0)
    assert r.status is AddStatus.TOO_LATE and not r.accepted
    assert r.window_start == t(0) and r.reason is not None and "finalised" in r.reason
    assert t(0) not in w.open_windows


def test_late_event_for_a_never_opened_window_is_emitted_as_revision_0() -> None:
    w = minute_windows()
    feed(w, [(t(2, 0), 1.0), (t(3, 20), 2.0)])  # emits 08:02 window
    r = w.add(t(1, 30), 9.0)  # 08:01 window never had data, 08:03:20 < 08:04:10
    assert r.status is AddStatus.LATE and r.revision == 0
    assert summary(w.advance()) == [(t(1), 0, False, [9.0])]


def test_jump_closes_several_windows_in_order() -> None:
    w = minute_windows()
    for ts, value in [(t(0, 1), "a"), (t(1, 1), "b"), (t(2, 1), "c")]:
        assert w.add(ts, value).status is AddStatus.ACCEPTED  # no advance() in between
    # watermark 08:10 is past every drop time (08:03:10, 08:04:10, 08:05:10): all final
    assert feed(w, [(t(10), "z")]) == [
        (t(0), 0, True, ["a"]),
        (t(1), 0, True, ["b"]),
        (t(2), 0, True, ["c"]),
    ]
    assert w.open_windows == [t(10)]


def test_watermark_never_goes_back() -> None:
    w = minute_windows()
    w.add(t(5), 1.0)
    assert w.advance(t(1)) == []
    assert w.watermark == t(5)
    # out of order but its window (08:04, closes 08:05:10) is still open → plainly accepted
    assert w.add(t(4, 58), 0.5).status is AddStatus.ACCEPTED


def test_idle_key_is_closed_by_timer_watermark() -> None:
    w = EventTimeWindows(H, grace=5 * M)
    # one minute value per minute 08:10–08:59, each arriving 2 s after its DataTime
    for m in range(10, 60):
        w.add(t(m), float(m), arrival=t(m, 2))
        assert w.advance() == []
    # the logger goes silent; the timer derives the watermark from the wall clock
    wall = datetime(2026, 3, 1, 1, 3, tzinfo=UTC)  # 09:03 +08:00
    assert w.idle_watermark(wall) == t(62, 58)  # 08:59:00 + (09:03:00 − 08:59:02)
    assert w.advance(w.idle_watermark(wall)) == []  # 09:02:58 < 09:05
    wall = datetime(2026, 3, 1, 1, 6, tzinfo=UTC)  # 09:06 +08:00 → watermark 09:05:58
    closed = w.advance(w.idle_watermark(wall))
    assert summary(closed) == [(t(0), 0, True, [float(m) for m in range(10, 60)])]


def test_idle_watermark_needs_arrival_times() -> None:
    w = minute_windows()
    w.add(t(0), 1.0)
    assert w.idle_watermark(t(10)) is None


def test_future_dated_event_is_rejected_and_does_not_move_the_watermark() -> None:
    w = EventTimeWindows(M, grace=10 * S, max_clock_skew=5 * M)
    w.add(t(0), 1.0, arrival=t(0, 1))
    r = w.add(t(60), 2.0, arrival=t(0, 2))  # logger clock an hour ahead
    assert r.status is AddStatus.REJECTED and r.reason is not None and "ahead" in r.reason
    assert w.watermark == t(0)


def test_bad_input_is_rejected_with_a_reason() -> None:
    w = minute_windows()
    naive = w.add(datetime(2026, 3, 1, 8, 0), 1.0)
    assert naive.status is AddStatus.REJECTED and naive.reason is not None
    assert "timezone" in naive.reason
    obj = w.add(t(0), object())  # type: ignore[arg-type]
    assert obj.status is AddStatus.REJECTED and obj.reason is not None
    assert w.add(datetime(9999, 12, 31, 23, 59, tzinfo=CST), 1.0).status is AddStatus.REJECTED
    assert w.watermark is None and w.open_windows == []


def test_day_windows_split_at_16_utc() -> None:
    w = EventTimeWindows(timedelta(days=1), grace=timedelta(0))
    w.add(datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC), "last of 03-01")
    w.add(datetime(2026, 3, 1, 16, 0, 0, tzinfo=UTC), "first of 03-02")
    closed = w.advance()
    assert summary(closed) == [
        (datetime(2026, 2, 28, 16, 0, tzinfo=UTC), 0, True, ["last of 03-01"])
    ]
    assert w.open_windows == [datetime(2026, 3, 2, 0, 0, tzinfo=CST)]


EVENTS: list[tuple[datetime, Any]] = [
    (t(0, 0), 1.0),
    (t(0, 20), 2.0),
    (t(0, 40), 3.0),
    (t(1, 0), 4.0),
    (t(1, 15), 5.0),  # closes 08:00 → [1, 2, 3]
    (t(0, 50), 6.0),  # late → 08:00 rev 1 [1, 2, 3, 6]
    (t(1, 15), 5.5),  # same DataTime corrected, 08:01 still open
    (t(2, 30), 7.0),  # closes 08:01 → [4, 5.5]
    (t(3, 30), 8.0),  # 08:00 dropped (08:03:10 ≤ 08:03:30); closes 08:02 → [7]
    (t(0, 55), 9.0),  # too late
    (t(1, 30), 10.0),  # late → 08:01 rev 1 [4, 5.5, 10]
]
EXPECTED: list[Emitted] = [
    (t(0), 0, False, [1.0, 2.0, 3.0]),
    (t(0), 1, False, [1.0, 2.0, 3.0, 6.0]),
    (t(1), 0, False, [4.0, 5.5]),
    (t(2), 0, False, [7.0]),
    (t(1), 1, False, [4.0, 5.5, 10.0]),
]


def test_event_list_gives_exactly_the_expected_windows() -> None:
    w = minute_windows()
    statuses = []
    out: list[Emitted] = []
    for ts, value in EVENTS:
        statuses.append(w.add(ts, value).status)
        out += summary(w.advance())
    assert out == EXPECTED
    assert statuses == [
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.LATE,
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.ACCEPTED,
        AddStatus.TOO_LATE,
        AddStatus.LATE,
    ]


@pytest.mark.parametrize("split", range(len(EVENTS) + 1))
def test_state_round_trip_at_any_point_gives_identical_results(split: int) -> None:
    w = minute_windows()
    out = feed(w, EVENTS[:split])
    state = json.loads(json.dumps(w.to_state()))  # what a Faust table would store
    restored = EventTimeWindows.from_state(state)
    out += feed(restored, EVENTS[split:])
    assert out == EXPECTED
    assert restored.to_state() == feed_state(EVENTS)


def feed_state(events: list[tuple[datetime, Any]]) -> dict[str, Any]:
    w = minute_windows()
    feed(w, events)
    return w.to_state()


@pytest.mark.parametrize(
    "state",
    [
        None,
        {},
        {
            "version": 99,
            "period_s": 60,
            "grace_s": 0,
            "lateness_s": 0,
            "tz_offset_s": 0,
            "max_skew_s": None,
        },
        {
            "version": 1,
            "period_s": 7 * 60,
            "grace_s": 0,
            "lateness_s": 0,
            "tz_offset_s": 0,
            "max_skew_s": None,
        },
        {
            "version": 1,
            "period_s": 60,
            "grace_s": 0,
            "lateness_s": 0,
            "tz_offset_s": 0,
            "max_skew_s": None,
            "windows": [{"start": "2026-03-01T08:00:30+08:00"}],
        },
    ],
)
def test_unusable_state_raises_window_state_error(state: object) -> None:
    with pytest.raises(WindowStateError):
        EventTimeWindows.from_state(state)


def test_hour_window_feeds_averaging_and_late_minute_corrects_the_mean() -> None:
    # 45 minute values of 10.0 (08:00–08:44) → hour mean 10.0 (45 × 10/45)
    w = EventTimeWindows(H, grace=2 * M, allowed_lateness=H)
    for m in range(45):
        w.add(t(m), Sample(ts=t(m), value=10.0, flag="N").model_dump(mode="json"))
    w.add(t(62), Sample(ts=t(62), value=1.0).model_dump(mode="json"))
    (first,) = w.advance()
    hour = aggregate([Sample.model_validate(i.item) for i in first.items], first.start, Period.HOUR)
    assert first.revision == 0 and hour.valid
    assert hour.mean == pytest.approx(10.0)
    # a late minute at 55.0 arrives: (45 × 10 + 55)/46 = 505/46 = 10.978
    late = w.add(t(50), Sample(ts=t(50), value=55.0).model_dump(mode="json"))
    assert late.status is AddStatus.LATE
    (second,) = w.advance()
    samples = [Sample.model_validate(i.item) for i in second.items]
    hour = aggregate(samples, second.start, Period.HOUR)
    assert second.revision == 1 and hour.count_valid == 46
    assert hour.mean == pytest.approx(10.978, abs=5e-4)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=9)),
        max_size=60,
    )
)
def test_any_arrival_order_ends_with_last_value_per_datetime(events: list[tuple[int, int]]) -> None:
    # With lateness covering the whole run, nothing is too late: the last emission of each
    # window must hold, per DataTime, the value written last — computed here with a dict.
    w = EventTimeWindows(M, grace=10 * S, allowed_lateness=timedelta(days=1))
    expected: dict[datetime, dict[datetime, int]] = {}
    latest: dict[datetime, ClosedWindow] = {}
    for second, value in events:
        ts = t(0, second)
        assert w.add(ts, value).accepted
        latest.update((c.start, c) for c in w.advance())
        start = T0 + M * (second // 60)
        expected.setdefault(start, {})[ts] = value
    latest.update((c.start, c) for c in w.advance(t(0, 600) + timedelta(days=2)))
    assert w.open_windows == []
    assert set(latest) == set(expected)
    for start, closed in latest.items():
        assert [(i.event_time, i.item) for i in closed.items] == sorted(expected[start].items())


def test_state_is_the_documented_json_shape_and_follows_replaced_items() -> None:
    """The changelog format, written out by hand: a worker restarted on a new version must
    read what an old one saved. Times in the pydantic JSON style (UTC as `Z`, CST as
    `+08:00`); a replaced item shows its new value (item dumps are cached per item)."""
    w = EventTimeWindows(H, grace=5 * M, allowed_lateness=H)
    utc_t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    w.add(utc_t0 + 10 * M, {"v": 1.5}, arrival=utc_t0 + 10 * M + 2 * S)
    w.add(utc_t0 + 20 * M, [1, "N"], key="k2")
    first = w.to_state()
    w.add(utc_t0 + 20 * M, [2, "D"], key="k2")
    assert first["windows"][0]["items"]["k2"]["item"] == [1, "N"]
    assert w.to_state() == {
        "version": 1,
        "period_s": 3600,
        "grace_s": 300.0,
        "lateness_s": 3600.0,
        "tz_offset_s": 28800,
        "max_skew_s": None,
        "items_move_watermark": True,
        "watermark": "2026-03-01T00:20:00Z",
        "max_event_time": "2026-03-01T00:20:00Z",
        "last_arrival": "2026-03-01T00:10:02Z",
        "windows": [
            {
                "start": "2026-03-01T08:00:00+08:00",
                "items": {
                    "2026-03-01T08:10:00+08:00": {
                        "key": "2026-03-01T08:10:00+08:00",
                        "event_time": "2026-03-01T00:10:00Z",
                        "item": {"v": 1.5},
                    },
                    "k2": {"key": "k2", "event_time": "2026-03-01T00:20:00Z", "item": [2, "D"]},
                },
                "emissions": 0,
                "dirty": True,
            }
        ],
    }


def test_a_resent_item_is_a_duplicate_after_the_state_was_saved() -> None:
    """A restart re-delivers records the saved state already holds: each must stay a
    DUPLICATE (no re-opened window, no revision 1), however often the state was saved."""
    w = minute_windows()
    assert w.add(t(0, 10), {"v": 1.0}).status is AddStatus.ACCEPTED
    w.to_state()
    w.to_state()
    assert w.add(t(0, 10), {"v": 1.0}).status is AddStatus.DUPLICATE
    restored = EventTimeWindows.from_state(json.loads(json.dumps(w.to_state())))
    restored.to_state()
    assert restored.add(t(0, 10), {"v": 1.0}).status is AddStatus.DUPLICATE
    assert restored.add(t(0, 10), {"v": 2.0}).status is AddStatus.ACCEPTED
