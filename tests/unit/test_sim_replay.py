"""Replay inputs: capture cutting, time shifting with recomputed CRC, CSV exports, registry."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from simulators.replay import (
    ReplayError,
    load_replay,
    read_csv,
    read_h212,
    registry_for,
    shift_wire,
)
from stackwatch.beijing_time import CST
from stackwatch.hj212 import decode_frame

# HJ 212-2017 App. A worked example (CRC 1C80, docs/hj212.md#crc).
STD = (b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
       b"Flag=5;CP=&&RtdInterval=30&&1C80\r\n")
# Real 2005-dialect frames from the 2016 capture (17-digit DataTime, no QN/Flag).
HEARTBEAT = b"##0073ST=32;CN=8013;PW=123456;MN=ZG130182201205;Flag=0;CP=&&HeartbeatTime=120&&0500"
WATER = (b"##0121ST=32;CN=2011;PW=123456;MN=LD130104000268;CP=&&DataTime=20160824045500;"
         b"B01-Rtd=4.69,B01-Flag=N;011-Rtd=70.00,011-Flag=N&&6E80")


def test_shift_by_zero_reproduces_the_standards_frame() -> None:
    assert shift_wire(STD, timedelta(0)) == STD


def test_shift_moves_qn_and_datatime_and_recomputes_crc() -> None:
    shifted = shift_wire(STD, timedelta(days=1))
    decoded = decode_frame(shifted)
    assert decoded.ok and decoded.qn == "20160802085857223"
    water = decode_frame(shift_wire(WATER + b"\r\n", timedelta(hours=2)))
    assert water.ok
    assert water.data_time == datetime(2016, 8, 24, 6, 55, tzinfo=CST)


def test_sticky_packets_and_garbage_are_cut_and_kept_verbatim() -> None:
    blob = HEARTBEAT + WATER + b"\r\n##test garbage\r\n" + STD
    log = read_h212(blob)
    assert [f.ok for f in log.frames] == [True, True, False, True]
    assert log.frames[0].wire == HEARTBEAT + b"\r\n"
    assert log.mns == ["ZG130182201205", "LD130104000268", "010000A8900016F000169DC0"]
    assert len(log.errors) == 1
    assert log.frames[3].ack and log.frames[3].qn == "20160801085857223"  # Flag=5 → A=1


def test_timeline_ignores_a_logger_clock_years_off() -> None:
    year_2000 = (b"##0121ST=32;CN=2011;PW=123456;MN=LD130104000999;CP=&&DataTime=20000202050000;"
                 b"B01-Rtd=4.69,B01-Flag=N;011-Rtd=70.00,011-Flag=N&&")
    from stackwatch.hj212 import crc16

    seg = year_2000[6:]
    frame = b"##%04d" % len(seg) + seg + b"%04X" % crc16(seg) + b"\r\n"
    log = read_h212(WATER + b"\r\n" + frame + HEARTBEAT + b"\r\n")
    assert [f.at for f in log.frames] == [datetime(2016, 8, 24, 4, 55, tzinfo=CST)] * 3


def test_csv_export_to_frames(tmp_path: Path) -> None:
    text = (
        "mn,time,factor,value,flag\n"
        "MN0001,2026-01-05T08:00:00+08:00,a21026,12.5,N\n"
        "MN0001,2026-01-05T08:00:00+08:00,a19001,16.2,N\n"
        "MN0001,20260105080030,a21026,13,C\n"
        "MN0001,not-a-time,a21026,1,N\n"
        "MN0001,2026-01-05T08:01:00,a21026,abc,N\n"
    )
    log = read_csv(text, source="x.csv")
    assert len(log.frames) == 2
    first = decode_frame(log.frames[0].wire)
    assert first.ok and first.cn == "2011" and first.mn == "MN0001"
    assert first.values == {"a21026": {"Rtd": 12.5}, "a19001": {"Rtd": 16.2}}
    second = decode_frame(log.frames[1].wire)
    assert second.flags == {"a21026": "C"}
    assert second.data_time == datetime(2026, 1, 5, 8, 0, 30, tzinfo=CST)
    assert [e.split(":")[1] for e in log.errors] == ["5", "6"]  # line numbers
    path = tmp_path / "x.csv"
    path.write_text("mn,time,value\n")
    with pytest.raises(ReplayError, match="factor"):
        load_replay(path)


def test_registry_of_a_capture_is_auto() -> None:
    reg = registry_for(read_h212(HEARTBEAT + b"\r\n" + WATER + b"\r\n"))
    assert [s.mn for s in reg.stacks] == ["ZG130182201205", "LD130104000268"]
    assert all(s.sector == "industrial_furnace" and s.process == "other" for s in reg.stacks)
    assert all(s.name.startswith("auto") for s in reg.stacks)
    assert reg.stacks[0].password_matches("123456")


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="cannot read"):
        load_replay(tmp_path / "nope.h212")
