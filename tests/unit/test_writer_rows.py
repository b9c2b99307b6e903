"""Row mapping of the storage writer: topic contracts → table rows (pure, no database).

Expected rows are written out by hand from the contract fields and the column lists of
sinks/migrations/0001_core.sql.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from sinks.records import SinkKind, SourceRecord, parse_records
from sinks.registry_sync import STACK_COLUMNS, stack_row
from sinks.rows import (
    AGGREGATE_COLUMNS,
    ALERT_COLUMNS,
    ALERT_EVENT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    HOUR_EXTRA_COLUMNS,
    RAW_FRAME_COLUMNS,
    READING_COLUMNS,
    MappingError,
    aggregate_row,
    alert_row,
    dead_letter_row,
    raw_frame_row,
    reading_rows,
)
from stackwatch.compliance import Severity
from stackwatch.models import (
    AggregateRecord,
    AlertEvent,
    AlertState,
    DeadLetter,
    EventKind,
    FactorReading,
    RawFrame,
    Reading,
    ReadingKind,
    Rule,
    Verdict,
)
from stackwatch.registry import StackInfo

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def as_dict(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    assert len(columns) == len(row)
    return dict(zip(columns, row, strict=True))


def test_raw_frame_row_keeps_text_verbatim_and_escapes_nul() -> None:
    frame = RawFrame(
        text="##0010QN=1\x00;CP=&&&&\r\n",
        received_at=T0,
        peer="10.0.0.5:4100",
        verdict=Verdict.REJECTED,
        reasons=["crc mismatch", "bad length"],
        sha256="ab" * 32,
    )
    assert as_dict(RAW_FRAME_COLUMNS, raw_frame_row(frame)) == {
        "received_at": T0,
        "peer": "10.0.0.5:4100",
        "mn": None,
        "cn": None,
        "verdict": "rejected",
        "reasons": ["crc mismatch", "bad length"],
        "text": "##0010QN=1\\x00;CP=&&&&\r\n",  # NUL cannot be stored in text: made visible
        "gateway": "gateway",
        "sha256": "ab" * 32,
    }


def _reading(**update: Any) -> Reading:
    base = Reading(
        stack_id="S1",
        mn="MN0001",
        cn="2011",
        kind=ReadingKind.REALTIME,
        sector="power",
        process="coal_boiler",
        st="31",
        data_time=T0,
        received_at=T0 + timedelta(seconds=3),
        values={
            "a21026": FactorReading(value=12.5, flag="N", zs=14.1, logger_zs=14.0),
            "a01014": FactorReading(value=None, flag="F", cou=3.5, min=1.0, max=2.0),
        },
    )
    return base.model_copy(update=update)


def test_reading_rows_one_long_row_per_factor_sorted() -> None:
    rows = [as_dict(READING_COLUMNS, r) for r in reading_rows(_reading())]
    common = {
        "stack_id": "S1",
        "cn": "2011",
        "data_time": T0,
        "zs_min": None,
        "zs_max": None,
        "eflag": None,
        "mn": "MN0001",
        "qn": None,
        "resent": False,
        "received_at": T0 + timedelta(seconds=3),
        "st": "31",
    }
    assert rows == [
        common
        | {
            "factor": "a01014",
            "value": None,
            "min_value": 1.0,
            "max_value": 2.0,
            "cou": 3.5,
            "zs_value": None,
            "flag": "F",
        },
        # zs_value is the logger's -ZsRtd (14.0), not the platform's conversion (14.1).
        common
        | {
            "factor": "a21026",
            "value": 12.5,
            "min_value": None,
            "max_value": None,
            "cou": None,
            "zs_value": 14.0,
            "flag": "N",
        },
    ]


def test_reading_rows_carry_the_resend_mark() -> None:
    # HJ 212-2025 RF=1 (补传) is stored, so a back-filled value can be told from a live one.
    assert {as_dict(READING_COLUMNS, r)["resent"] for r in reading_rows(_reading(resent=True))} == {
        True
    }


def test_event_reading_without_data_time_has_no_row() -> None:
    assert reading_rows(_reading(cn="8013", kind=ReadingKind.EVENT, data_time=None)) == []


def test_reading_with_malformed_cn_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="4-digit"):
        reading_rows(_reading(cn="20x1"))


def _aggregate(period: str, **update: Any) -> AggregateRecord:
    return AggregateRecord(
        stack_id="S1",
        factor="a21026",
        period=period,
        period_start=T0,
        period_end=T0 + H,
        mean=30.0,
        zs_mean=33.0,
        min=28.0,
        max=32.0,
        valid=True,
        flag="N",
        valid_count=58,
        total_count=60,
        mass_kg=0.4,
        mass_valid=True,
        ref_o2=6.0,
        limit_mg_m3=35.0,
        source="platform",
        revision=2,
    ).model_copy(update=update)


def test_hour_aggregate_row_carries_the_limit() -> None:
    table, row = aggregate_row(_aggregate("hour"))
    assert table == "hour_aggregates"
    assert as_dict(AGGREGATE_COLUMNS + HOUR_EXTRA_COLUMNS, row) == {
        "stack_id": "S1",
        "factor": "a21026",
        "period_start": T0,
        "mean": 30.0,
        "zs_mean": 33.0,
        "min": 28.0,
        "max": 32.0,
        "valid_count": 58,
        "total_count": 60,
        "flag": "N",
        "valid": True,
        "invalid_reason": None,
        "mass_kg": 0.4,
        "ref_o2": 6.0,
        "source": "platform",
        "revision": 2,
        "stopped": False,
        "coverage_minutes": None,
        "limit_mg_m3": 35.0,
        "limit_program": None,
        "logger_mean": None,
        "mass_valid": True,
    }


@pytest.mark.parametrize(
    ("period", "table", "extra"),
    [("minute", "minute_aggregates", 0), ("day", "day_aggregates", 2)],
)
def test_minute_and_day_rows_have_no_limit_columns(period: str, table: str, extra: int) -> None:
    got_table, row = aggregate_row(_aggregate(period))
    assert got_table == table
    assert len(row) == len(AGGREGATE_COLUMNS) + extra == 18 + extra


def test_unknown_period_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match="'week'"):
        aggregate_row(_aggregate("week"))


def _event(**update: Any) -> AlertEvent:
    return AlertEvent(
        alert_id="a-1",
        seq=3,
        kind=EventKind.UPDATE,
        at=T0 + 3 * H,
        stack_id="S1",
        factor="a21026",
        rule=Rule.HOUR_EXCEEDANCE,
        severity=Severity.ALARM,
        state=AlertState.RECOVERING,
        title_zh="小时均值超标",
        title_en="hourly mean exceedance",
        first_seen=T0 + H,
        last_seen=T0 + 2 * H,
        count=2,
        peak_value=41.0,
        value=36.0,
        limit=35.0,
        ref_o2=6.0,
        evidence={"hour_mean": 36.0, "note": "a\x00b"},
    ).model_copy(update=update)


def test_alert_row_recovering_is_still_open() -> None:
    row = as_dict(ALERT_COLUMNS + ALERT_EVENT_COLUMNS, alert_row(_event()))
    payload = row.pop("payload")
    assert row == {
        "alert_id": "a-1",
        "stack_id": "S1",
        "factor": "a21026",
        "rule": "hour_exceedance",
        "severity": "alarm",
        "state": "active",  # recovering = condition false but inside its hold time
        "first_seen": T0 + H,
        "last_seen": T0 + 2 * H,
        "cleared_at": None,
        "peak_value": 41.0,
        "count": 2,
        "limit_value": 35.0,
        "ref_o2": 6.0,
        "evidence": '{"hour_mean": 36.0, "note": "a\\\\x00b"}',  # jsonb cannot hold \u0000
        "acked_by": None,
        "acked_at": None,
        "ack_reason": None,
        "seq": 3,
        "event": "update",
        "at": T0 + 3 * H,
    }
    assert '"alert_id": "a-1"' in payload and '"seq": 3' in payload


def test_alert_row_acknowledged_and_cleared_states() -> None:
    acked = as_dict(
        ALERT_COLUMNS,
        alert_row(
            _event(
                state=AlertState.ACTIVE,
                kind=EventKind.ACK,
                acknowledged=True,
                ack_by="li.wei",
                ack_reason="called the plant",
                ack_at=T0 + 4 * H,
            )
        )[: len(ALERT_COLUMNS)],
    )
    assert (acked["state"], acked["acked_by"], acked["acked_at"], acked["ack_reason"]) == (
        "acknowledged",
        "li.wei",
        T0 + 4 * H,
        "called the plant",
    )
    cleared = as_dict(
        ALERT_COLUMNS,
        alert_row(_event(state=AlertState.CLEARED, cleared_at=T0 + 5 * H))[: len(ALERT_COLUMNS)],
    )
    assert (cleared["state"], cleared["cleared_at"]) == ("cleared", T0 + 5 * H)


def test_suppressed_alert_is_stored_closed_at_its_event_time() -> None:
    row = as_dict(
        ALERT_COLUMNS + ALERT_EVENT_COLUMNS,
        alert_row(_event(state=AlertState.SUPPRESSED, kind=EventKind.SUPPRESSED, seq=1)),
    )
    assert (row["state"], row["cleared_at"], row["event"]) == ("cleared", T0 + 3 * H, "suppressed")


def test_dead_letter_row() -> None:
    letter = DeadLetter(
        stage="decode",
        reason="bad CRC",
        payload="##bad",
        key="MN0001",
        occurred_at=T0,
        details={"peer": "10.0.0.5:4100"},
    )
    assert as_dict(DEAD_LETTER_COLUMNS, dead_letter_row(letter)) == {
        "stage": "decode",
        "reason": "bad CRC",
        "payload": "##bad",
        "key": "MN0001",
        "occurred_at": T0,
        "details": '{"peer": "10.0.0.5:4100"}',
    }


def test_parse_records_rejects_bad_input_with_reasons_and_keeps_good_rows() -> None:
    stamp = T0 + timedelta(minutes=5)
    good = SourceRecord(value=_aggregate("hour").model_dump_json().encode())
    records = [
        good,
        SourceRecord(
            value=b"{oops", key=b"S1", topic="hour", partition=1, offset=41, timestamp=stamp
        ),
        SourceRecord(value=None, topic="hour", partition=1, offset=42),
        SourceRecord(value=_aggregate("week").model_dump_json().encode()),
    ]
    items, rejected, skipped = parse_records(SinkKind.HOUR, records)
    assert len(items) == 1 and skipped == 0
    assert [r.reason.split(":")[0] for r in rejected] == [
        "invalid AggregateRecord",
        "empty record value (tombstone)",
        "aggregate period 'week' is not one of minute, hour, day",
    ]
    first = rejected[0]
    # The broker timestamp makes a redelivered bad record the same dead letter (idempotent).
    assert (first.payload, first.key, first.occurred_at) == ("{oops", "S1", stamp)
    assert first.details == {
        "table": "hour_aggregates",
        "topic": "hour",
        "partition": "1",
        "offset": "41",
    }


def test_stack_row_keeps_passwords_out_and_nulls_blank_city() -> None:
    stack = StackInfo(
        stack_id="S9",
        mn="88888880000009",
        password=SecretStr("123456"),
        plant="Demo Cement",
        sector="cement",
        process="kiln_tail",
        lat=30.5,
        lon=114.3,
        rtd_interval_s=60,
        min_interval_min=1,
    )
    row = as_dict(STACK_COLUMNS, stack_row(stack))
    assert row == {
        "stack_id": "S9",
        "mn": "88888880000009",
        "password_sha256": None,  # no password, in any form, in the database
        "name": "S9",  # no name given: the id is shown
        "plant": "Demo Cement",
        "city": None,
        "province": None,
        "sector": "cement",
        "process": "kiln_tail",
        "lat": 30.5,
        "lon": 114.3,
        "program": None,
        "rtd_interval_s": 60,
        "min_interval_min": 1,
    }
