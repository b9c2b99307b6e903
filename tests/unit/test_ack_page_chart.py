"""The acknowledgement page's trend chart geometry (sinks.ack_page.trend_chart), by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from sinks.ack_page import AlertEvidence, MinuteFacts, TrendPoint, _nice_step, trend_chart
from stackwatch.beijing_time import CST

H7 = datetime(2026, 11, 2, 7, tzinfo=CST)


@pytest.mark.parametrize(
    ("raw", "step"), [(16.6375, 20.0), (0.3, 0.5), (2.1, 2.5), (100.0, 100.0), (7.0, 10.0),
                      (0.0, 1.0)],
)
def test_ticks_are_round_numbers(raw: float, step: float) -> None:
    assert _nice_step(raw) == pytest.approx(step)


def test_bars_limit_and_highlight() -> None:
    points = [
        TrendPoint(period_start=H7, value=16.5, valid=True),
        TrendPoint(period_start=H7 + timedelta(hours=1), value=None, valid=False),
        TrendPoint(period_start=H7 + timedelta(hours=2), value=40.0, valid=True),
        TrendPoint(period_start=H7 + timedelta(hours=3), value=60.5, valid=True),
    ]
    chart = trend_chart(points, 35.0, H7 + timedelta(hours=3))
    assert chart is not None
    # largest of values and limit 60.5 × 1.1 / 4 = 16.64 → tick 20, axis 0–80
    assert [label for _, label in chart.ticks] == ["0", "20", "40", "60", "80"]
    assert [b.css for b in chart.bars] == ["ok", "invalid", "over", "current"]
    assert [b.label for b in chart.bars] == ["07", "08", "09", "10"]  # Beijing hours
    # plot area: height 220 − top 12 − bottom 30 = 178; the limit 35 of 80 sits
    # 35/80 × 178 = 77.875 above the bottom (y 190) → y 112.125
    assert chart.bottom == 190
    assert chart.limit_y == pytest.approx(112.125, abs=0.01)
    # 60.5 of 80 → bar height 60.5/80 × 178 = 134.6125
    assert chart.bars[3].height == pytest.approx(134.61, abs=0.01)
    # 4 bars across 680 − 52 − 10 = 618 units: 154.5 each, bars 70 % wide = 108.15
    assert chart.bars[0].width == pytest.approx(108.15)
    assert chart.limit_label == "限值 limit 35"


def test_nothing_to_draw() -> None:
    assert trend_chart([], 35.0, None) is None
    only_invalid = [TrendPoint(period_start=H7, value=None, valid=False)]
    assert trend_chart(only_invalid, 35.0, None) is None


def test_flag_counts_follow_hj212_table_order() -> None:
    from stackwatch.models import AlertEvent

    minutes = [MinuteFacts(period_start=H7 + timedelta(minutes=i), mean=1.0, zs_mean=None,
                           flag=flag, valid=flag == "N")
               for i, flag in enumerate("CNNDNC")]
    event = AlertEvent.model_validate({
        "alert_id": "a", "seq": 1, "kind": "raise", "at": H7, "stack_id": "s", "factor": None,
        "rule": "offline", "severity": "alarm", "state": "active", "title_zh": "离线",
        "title_en": "offline", "first_seen": H7, "last_seen": H7, "count": 1,
    })
    ev = AlertEvidence(event=event, state="active", minutes=minutes)
    # Table 8 order N, F, M, S, D, C, T, B
    assert list(ev.flag_counts.items()) == [("N", 3), ("D", 1), ("C", 2)]
