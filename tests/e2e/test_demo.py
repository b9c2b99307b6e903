"""The README's first command, run for a short fixed time as CI does.

`stackwatch demo --duration …` starts the embedded services, migrates, runs gateway, worker,
sinks and the demo scenario at 60×. The demo scenario closes its first simulated hour after
about one wall minute; its Anyang sinter stack has a desulphuriser trip (SO2 120 mg/m³ against
the ultra-low 35) and its Zhengzhou pot line drops off the network for 20 simulated minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from simulators.scenario import load_scenario

pytestmark = pytest.mark.e2e


def _leftovers(marker: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in cmdline or env.get("STACKWATCH_DATA_DIR") == marker:
            found.append(f"{proc.info['pid']} {cmdline}")
    return found


def test_demo_runs_the_pipeline_and_raises_the_expected_alerts(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    summary_file = tmp_path / "summary.json"
    env = {**os.environ, "STACKWATCH_DATA_DIR": str(data_dir)}
    script = Path(sys.executable).with_name("stackwatch")
    result = subprocess.run(
        [str(script), "demo", "--duration", "100s", "--summary-json", str(summary_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted((data_dir / "logs").glob("*.log"))
    )
    assert result.returncode == 0, result.stderr[-5000:] + logs
    summary = json.loads(summary_file.read_text())
    stacks = [s.stack_id for s in load_scenario("demo").all_stacks()]
    for stack_id in stacks:
        assert summary["hours_per_stack"].get(stack_id, 0) >= 1, (summary, logs)
    assert summary["alarms_raised"] >= 1, summary
    assert summary["offline_raised"] >= 1, summary
    # Debian's prometheus is installed by scripts/test.sh: the demo starts it, says where,
    # and it scraped the worker and sinks (its TSDB has data) before it was stopped.
    out = " ".join((result.stdout + result.stderr).split())  # the console wraps lines
    assert "prometheus: http://127.0.0.1:" in out and "pipeline alert rules loaded" in out, out
    assert any((data_dir / "prometheus" / "tsdb").iterdir())
    assert _leftovers(str(data_dir)) == []
