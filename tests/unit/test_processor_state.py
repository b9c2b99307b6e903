"""A worker restarted on a newer version restores the stack states the older one saved.

The Faust table's changelog holds `StackProcessor.to_state()` JSON written by whatever version
ran before; the window items in it (`stackwatch.window_items`) must read back. The states
below are hand-written in the JSON shape of the version before the items were typed (plain
dicts: minutes `{"src", "t", "lbl", "len", "f", "flow", "stop"}`, a day's hours
`{"v", "flag", "ok", "zs", "kg", "src", "stop"}`, real-time samples
`{code: [value, flag, zs], "_flow": …, "_stop": …}`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stackwatch.beijing_time import CST
from stackwatch.models import AggregateRecord, FactorReading, Reading, ReadingKind
from stackwatch.processor import StackProcessor
from stackwatch.stack_limits import StackLimits
from stackwatch.window_items import RealtimeSample

SO2 = "a21026"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
NO_LIMITS = StackLimits(ref_o2=None, by_factor={})


def _windows(period_s: int, grace_s: float, lateness_s: float, windows: list[Any]) -> Any:
    return {
        "version": 1,
        "period_s": period_s,
        "grace_s": grace_s,
        "lateness_s": lateness_s,
        "tz_offset_s": 28800,
        "max_skew_s": 86400.0,
        "items_move_watermark": False,
        "watermark": "2026-11-02T10:50:00+08:00",
        "max_event_time": "2026-11-02T10:40:00+08:00",
        "last_arrival": "2026-11-02T10:50:20+08:00",
        "windows": windows,
    }


def _minute(start: str, so2: float) -> Any:
    item = {
        "src": "logger",
        "t": start,
        "lbl": "start",
        "len": 600,
        "f": {SO2: [so2, "N", so2]},
        "flow": None,
        "stop": False,
    }
    return {"key": start, "event_time": start, "item": item}


def _state(rt: Any, hours: Any, days: Any, **extra: Any) -> dict[str, Any]:
    return {
        "v": 2,
        "stack_id": "kiln-1",
        "rt": rt,
        "hours": hours,
        "days": days,
        "quality": {
            "stack_id": "kiln-1",
            "offline": {
                "stack_id": "kiln-1",
                "last_frame_at": "2026-11-02T10:50:00+08:00",
                "watch_since": None,
                "active": False,
            },
            "clock": {"stack_id": "kiln-1", "active": False, "last": None, "streak": 0},
        },
        "book": {"version": 1, "open": [], "watermarks": [], "late": []},
        "rolling": {},
        "clock_event": "2026-11-02T10:50:00+08:00",
        "clock_arrival": "2026-11-02T10:50:20+08:00",
        "pending_jump": None,
        "pending_from_start": False,
        "flue_gas": True,
        "mismatch": {},
        "archived": {},
        "totals": {"days": {}, "hours": {}},
        **extra,
    }


OLD_STATE: dict[str, Any] = _state(
    rt=_windows(60, 90.0, 0.0, []),
    # Five 10-minute logger records of the 10:00 hour (the sixth arrives after the restart).
    hours=_windows(
        3600,
        180.0,
        1800.0,
        [
            {
                "start": "2026-11-02T10:00:00+08:00",
                "items": {
                    m["key"]: m
                    for m in (
                        _minute("2026-11-02T10:00:00+08:00", 30.0),
                        _minute("2026-11-02T10:10:00+08:00", 30.0),
                        _minute("2026-11-02T10:20:00+08:00", 30.0),
                        _minute("2026-11-02T10:30:00+08:00", 50.0),
                        _minute("2026-11-02T10:40:00+08:00", 50.0),
                    )
                },
                "emissions": 0,
                "dirty": True,
            }
        ],
    ),
    # The day already holds the closed 09:00 hour (SO2 20.0, valid).
    days=_windows(
        86400,
        900.0,
        7200.0,
        [
            {
                "start": "2026-11-02T00:00:00+08:00",
                "items": {
                    f"2026-11-02T09:00:00+08:00|{SO2}": {
                        "key": f"2026-11-02T09:00:00+08:00|{SO2}",
                        "event_time": "2026-11-02T09:00:00+08:00",
                        "item": {
                            "v": 20.0,
                            "flag": "N",
                            "ok": True,
                            "zs": 20.0,
                            "kg": None,
                            "src": "platform",
                            "stop": False,
                        },
                    }
                },
                "emissions": 0,
                "dirty": True,
            }
        ],
    ),
    last_logger_minute="2026-11-02T10:40:00+08:00",
    cadence_min={"last": "2026-11-02T10:40:00+08:00", "gaps": [600, 600, 600, 600]},
    cadence_rt={"last": None, "gaps": []},
    declared_min_s=600,
    declared_rt_s=None,
)


def _of(aggs: list[AggregateRecord], period: str) -> list[AggregateRecord]:
    return [a for a in aggs if a.period == period and a.factor == SO2]


def test_restores_a_state_saved_in_the_old_json_shape() -> None:
    proc = StackProcessor.from_state(OLD_STATE)
    last = Reading(
        stack_id="kiln-1",
        mn="MN-KILN-1",
        cn="2051",
        kind=ReadingKind.MINUTE,
        sector="cement",
        process="kiln_tail",
        data_time=T0 + timedelta(minutes=50),
        interval_s=600,
        received_at=T0 + timedelta(hours=1, seconds=20),
        values={SO2: FactorReading(value=50.0, flag="N", zs=50.0)},
    )
    aggs = proc.on_reading(last, NO_LIMITS).aggregates
    aggs += proc.tick(T0 + timedelta(hours=1, minutes=5), NO_LIMITS).aggregates
    # Six 10-minute records cover the hour: (3 × 30 + 3 × 50) / 6 = 40.
    (hour,) = _of(aggs, "hour")
    assert hour.period_start == T0 and hour.revision == 0 and hour.source == "platform"
    assert hour.valid and hour.mean == 40.0 and hour.zs_mean == 40.0
    assert hour.valid_count == 6 and hour.coverage_minutes == 60.0
    # The day holds the restored 09:00 hour and the new 10:00 one (2 of the 20 it needs).
    (day,) = _of(proc.flush(T0 + timedelta(hours=1, minutes=6), NO_LIMITS).aggregates, "day")
    assert day.period_start == T0.replace(hour=0)
    assert (day.valid, day.valid_count, day.total_count) == (False, 2, 2)


def test_restores_real_time_samples_saved_in_the_old_json_shape() -> None:
    """A stack without minute data: its minutes are derived from the restored samples."""

    def sample(at: str, so2: float, flow: float | None, stop: bool = False) -> Any:
        item: dict[str, Any] = {SO2: [so2, "N", so2 + 1.0]}
        if flow is not None:
            item["_flow"] = flow
        if stop:
            item["_stop"] = True
        return {"key": at, "event_time": at, "item": item}

    samples = [
        sample("2026-11-02T10:49:00+08:00", 10.0, 1000.0),
        sample("2026-11-02T10:49:20+08:00", 20.0, None),
        sample("2026-11-02T10:49:40+08:00", 30.0, 2000.0, stop=True),
    ]
    rt = _windows(
        60,
        90.0,
        0.0,
        [
            {
                "start": "2026-11-02T10:49:00+08:00",
                "items": {s["key"]: s for s in samples},
                "emissions": 0,
                "dirty": True,
            }
        ],
    )
    state = _state(
        rt=rt,
        hours=_windows(3600, 180.0, 1800.0, []),
        days=_windows(86400, 900.0, 7200.0, []),
        cadence_rt={"last": "2026-11-02T10:49:40+08:00", "gaps": [20, 20]},
    )
    proc = StackProcessor.from_state(state)
    aggs = proc.tick(T0 + timedelta(minutes=52), NO_LIMITS).aggregates
    (minute,) = _of(aggs, "minute")
    assert minute.period_start == T0 + timedelta(minutes=49) and minute.source == "platform"
    assert minute.mean == 20.0 and minute.zs_mean == 21.0
    # …and the derived minute is in the hour window as a platform minute with the mean flow,
    # not stopped (one stopped sample of three).
    (window,) = proc.to_state()["hours"]["windows"]
    (item,) = [i["item"] for i in window["items"].values()]
    assert item["src"] == "platform" and item["flow"] == 1500.0 and item["stop"] is False
    assert item["f"][SO2] == [20.0, "N", 21.0]


def test_a_real_time_sample_is_written_in_the_shape_it_is_read_back_from() -> None:
    values = {
        SO2: FactorReading(value=12.5, flag="N", zs=13.0),
        "a19001": FactorReading(value=None, flag="D"),
    }
    stored = RealtimeSample.encode(values, 900.0, True)
    assert stored == {
        SO2: [12.5, "N", 13.0],
        "a19001": [None, "D", None],
        "_flow": 900.0,
        "_stop": True,
    }
    sample = RealtimeSample.from_json(stored)
    assert sample == RealtimeSample(
        factors={SO2: (12.5, "N", 13.0), "a19001": (None, "D", None)}, flow=900.0, stopped=True
    )
    assert sample.to_json() == stored
    assert RealtimeSample.encode(values, None, False) == {
        SO2: [12.5, "N", 13.0],
        "a19001": [None, "D", None],
    }
