"""`stackwatch hj212 decode|encode` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from commands import app

STD = "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80"  # noqa: E501 (verbatim vector)
W2005 = "##0139ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;B01-Rtd=36.91;011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&4980"  # noqa: E501 (verbatim vector)

runner = CliRunner()


def test_decode_lines_and_raw_capture() -> None:
    # One frame per line, then two frames glued on one line, then a corrupt one.
    stdin = f"{STD}\r\n{W2005}{STD}\r\n{STD[:-4]}1C08\r\n"
    result = runner.invoke(app, ["hj212", "decode", "-"], input=stdin)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["ok"] for line in lines] == [True, True, True, False]
    assert lines[0]["cp"] == {"RtdInterval": "30"} and lines[0]["flag"] == 5
    assert lines[1]["values"]["011"] == {"Rtd": 231.0}
    assert lines[1]["data_time"] == "2016-08-24T00:38:17+08:00"
    assert lines[3]["errors"][0].startswith("bad_crc:")
    assert "4 frames: 3 ok, 1 rejected" in result.stderr


def test_decode_strict_exit_code_and_file(tmp_path: Path) -> None:
    path = tmp_path / "capture.h212"
    path.write_bytes(f"{STD[:-4]}1C08\r\n".encode())
    result = runner.invoke(app, ["hj212", "decode", "--strict", str(path)])
    assert result.exit_code == 1
    missing = runner.invoke(app, ["hj212", "decode", str(tmp_path / "nope")])
    assert missing.exit_code != 0


def test_encode_round_trip() -> None:
    decoded = runner.invoke(app, ["hj212", "decode", "--no-summary", "-"], input=STD + "\r\n")
    result = runner.invoke(app, ["hj212", "encode", "-"], input=decoded.stdout)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (STD + "\r\n").encode()


def test_encode_reports_bad_lines() -> None:
    stdin = 'not json\n{"st": "31"}\n'
    result = runner.invoke(app, ["hj212", "encode", "-"], input=stdin)
    assert result.exit_code == 1
    assert "line 1: cannot encode" in result.stderr
    assert "line 2: cannot encode" in result.stderr
