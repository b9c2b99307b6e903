"""The README performance table is rendered from the benchmarks' JSON (pure, no timing)."""

from __future__ import annotations

import pytest

from bench.results import BenchResult
from bench.table import END, HEADER, START, note_line, render_block, replace_block, result_rows

MACHINE = (
    '{"cpu_model": "Test CPU", "logical_cores": 2, "physical_cores": 1, "ram_gb": 8.0, '
    '"arch": "x86_64", "os": "Linux", "load_avg_1m": 0.5}'
)
VERSIONS = (
    '{"python": "CPython 3.11.7", "faust_streaming": "0.15.3", "aiokafka": "0.14.0", '
    '"psycopg": "3.3.9", "tansu": "0.6.0"}'
)
GATEWAY = f"""{{
  "name": "gateway", "title": "HJ 212 gateway", "measured_at": "2026-11-22T10:00:00Z",
  "quick": false, "machine": {MACHINE}, "versions": {VERSIONS}, "settings": {{}},
  "figures": [
    {{"figure": "50 loggers, frames/s", "value": 3960.4, "runs": [3900.0, 3960.4, 4010.0],
      "unit": "frames/s", "notes": "acks on"}},
    {{"figure": "p50", "value": 1233.4, "runs": [1233.4], "unit": "ms",
      "row": "alert latency p50 / p95 / p99", "notes": "200 probes"}},
    {{"figure": "p95", "value": 1633.0, "runs": [1633.0], "unit": "ms",
      "row": "alert latency p50 / p95 / p99"}},
    {{"figure": "p99", "value": 1803.6, "runs": [1803.6], "unit": "ms",
      "row": "alert latency p50 / p95 / p99"}},
    {{"figure": "national multiple", "value": 0.0148, "runs": [0.0148], "unit": "x",
      "digits": 3, "notes": "a | b"}},
    {{"figure": "pipeline ÷ COPY", "value": 6.016, "runs": [6.016], "unit": "%", "digits": 2}}
  ]
}}"""
DECODE = f"""{{
  "name": "decode", "title": "HJ 212 decode", "measured_at": "2026-11-21T09:00:00Z",
  "quick": true, "machine": {MACHINE}, "versions": {VERSIONS},
  "figures": [{{"figure": "frames/s", "value": 38965.2, "runs": [38965.2], "unit": "frames/s"}}]
}}"""


def test_rows_of_one_benchmark() -> None:
    result = BenchResult.model_validate_json(GATEWAY)
    assert result_rows(result) == [
        "| HJ 212 gateway | 50 loggers, frames/s | 3,960 frames/s | acks on; median of 3 runs |",
        "| HJ 212 gateway | alert latency p50 / p95 / p99 | 1,233 / 1,633 / 1,804 ms "
        "| 200 probes |",
        "| HJ 212 gateway | national multiple | 0.015× | a \\| b |",
        "| HJ 212 gateway | pipeline ÷ COPY | 6.02 % |  |",
    ]


def test_block_orders_benchmarks_and_names_machine_versions_and_mode() -> None:
    results = [BenchResult.model_validate_json(GATEWAY), BenchResult.model_validate_json(DECODE)]
    block = render_block(results)
    lines = block.splitlines()
    assert lines[0] == START and lines[-1] == END
    assert "\n".join(lines[3:5]) == HEADER
    assert lines[5] == "| HJ 212 decode | frames/s | 38,965 frames/s |  |"
    assert lines[6].startswith("| HJ 212 gateway | 50 loggers")
    note = note_line(results)
    assert lines[1] == note
    assert "2026-11-21 to 2026-11-22" in note
    assert "Test CPU (x86_64, 2 logical cores, 8 GB RAM)" in note
    assert "CPython 3.11.7, faust-streaming 0.15.3, aiokafka 0.14.0, psycopg 3.3.9" in note
    assert "Tansu 0.6.0" in note
    assert "Quick mode" in note  # the decode result was a --quick run


def test_replace_block_keeps_the_rest_of_the_readme() -> None:
    text = f"# t\n\nbefore\n{START}\nold\n{END}\nafter\n"
    expected = f"# t\n\nbefore\n{START}\nnew\n{END}\nafter\n"
    assert replace_block(text, f"{START}\nnew\n{END}") == expected
    with pytest.raises(ValueError, match="bench:start"):
        replace_block("# no markers\n", f"{START}\nnew\n{END}")
