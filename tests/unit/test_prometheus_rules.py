"""The pipeline's Prometheus alert rules, checked and unit-tested with Debian's promtool.

Each case feeds promtool hand-made series (1-minute steps) and says, from the rule's `for`
and thresholds worked out by hand, when the alert must and must not fire. promtool is part
of the `prometheus` Debian package that scripts/test.sh installs; its absence is a failure,
not a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus" / "alerts.yml"
CONFIG = RULES.with_name("prometheus.yml")


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `apt-get install prometheus` (scripts/test.sh does it)"
    return path


def _rules() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in data["groups"] for r in g["rules"]}


def _expected(alert: str, **labels: str) -> dict[str, Any]:
    """An expected firing alert: its labels and its annotations rendered for `labels`."""
    rule = _rules()[alert]
    annotations = {}
    for key, text in rule["annotations"].items():
        for name, value in labels.items():
            text = text.replace("{{ $labels." + name + " }}", value)
        annotations[key] = text
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


#: (alert, input series, [(eval minute, expected labels or None = must not fire)])
CASES: list[tuple[str, list[tuple[str, str]], list[tuple[int, dict[str, str] | None]]]] = [
    # Down from minute 2; `for: 2m` → firing from minute 4.
    ("StackwatchProcessDown", [('up{job="stackwatch", instance="worker:9308"}', "1 1 0 0 0 0 0")],
     [(3, None), (5, {"instance": "worker:9308", "job": "stackwatch"})]),
    # Lag 200 more per minute: > 1000 from minute 6 and rising; `for: 10m` → from minute 16.
    ("StackwatchSinkLagGrowing",
     [('stackwatch_sink_consumer_lag{topic="readings", partition="0"}', "0+200x30")],
     [(15, None), (17, {"topic": "readings"})]),
    # A large but flat lag is a backlog being held, not one growing: never.
    ("StackwatchSinkLagGrowing",
     [('stackwatch_sink_consumer_lag{topic="readings", partition="0"}', "5000x30")],
     [(20, None)]),
    # Gateway accepts 10 frames/s, worker makes 5 readings/s: 5 > 0.2 × 10 → fires by 12 min.
    ("StackwatchWorkerFallingBehind",
     [('stackwatch_gateway_frames_total{verdict="accepted", reason="none"}', "0+600x30"),
      ('stackwatch_readings_total{kind="minute"}', "0+300x30")],
     [(20, {})]),
    # 9.5 readings/s + 0.3 decode dead letters/s of 10 accepted: 0.2 < 2 → never.
    ("StackwatchWorkerFallingBehind",
     [('stackwatch_gateway_frames_total{verdict="accepted", reason="none"}', "0+600x30"),
      ('stackwatch_readings_total{kind="minute"}', "0+570x30"),
      ('stackwatch_dead_letters_total{stage="decode", reason="unknown_mn"}', "0+18x30")],
     [(20, None)]),
    # Database lost at minute 2; `for: 2m` → from minute 4.
    ("StackwatchSinkBackingOff", [("stackwatch_sink_db_up", "1 1 0 0 0 0 0")],
     [(3, None), (5, {})]),
    # 0.1 rejected rows/s from the start; `for: 5m`.
    ("StackwatchSinkFailing",
     [('stackwatch_sink_rows_rejected_total{table="readings"}', "0+6x20")],
     [(10, {})]),
    # Produce failures from minute 3; `for: 1m`.
    ("StackwatchGatewayProduceErrors",
     [("stackwatch_gateway_produce_failures_total", "0 0 0 6 12 18 24 30")],
     [(2, None), (6, {})]),
    # Frames until minute 10, then none: increase over 10 min is 0 from minute 20; `for: 1m`.
    ("StackwatchNoFrames",
     [('stackwatch_gateway_frames_total{verdict="accepted", reason="none"}',
       "0+60x10 600x30")],
     [(15, None), (22, {})]),
    # One failed mail at minute 3 (after its retries): at once, per channel.
    ("StackwatchNotificationFailures",
     [('stackwatch_notifications_total{channel="email", kind="firing", outcome="failed"}',
       "0 0 0 1 1 1"),
      ('stackwatch_notifications_total{channel="webhook", kind="firing", outcome="sent"}',
       "0 1 2 3 4 5")],
     [(2, None), (5, {"channel": "email"})]),
    # 1 dead letter/s of 10 accepted frames/s = 10 % > 5 %; `for: 10m`.
    ("StackwatchDeadLetterRate",
     [('stackwatch_dead_letters_total{stage="decode", reason="unknown_mn"}', "0+60x30"),
      ('stackwatch_gateway_frames_total{verdict="accepted", reason="none"}', "0+600x30")],
     [(20, {})]),
    # 3 wrong passwords a minute: 15 in 5 minutes > 10.
    ("StackwatchRejectedPasswords",
     [('stackwatch_gateway_frames_total{verdict="rejected", reason="bad_password"}',
       "0+3x20")],
     [(10, {})]),
    # 1 a minute: 5 in 5 minutes, a logger mistyped once or twice: never.
    ("StackwatchRejectedPasswords",
     [('stackwatch_gateway_frames_total{verdict="rejected", reason="bad_password"}',
       "0+1x20")],
     [(10, None)]),
    # One ban of an MN at minute 5: alerted from then on for 10 minutes, then quiet.
    ("StackwatchPasswordGuessing",
     [('stackwatch_gateway_security_alerts_total{scope="mn"}', "0x4 1x13")],
     [(4, None), (6, {"scope": "mn"}), (17, None)]),
]


def _test_file(tmp_path: Path) -> Path:
    tests = []
    for alert, series, checks in CASES:
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [
                {
                    "eval_time": f"{minute}m",
                    "alertname": alert,
                    "exp_alerts": [] if labels is None else [_expected(alert, **labels)],
                }
                for minute, labels in checks
            ],
        })
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests},
                                   allow_unicode=True))
    return path


def test_rules_and_config_pass_promtool_check() -> None:
    rules = subprocess.run([_promtool(), "check", "rules", str(RULES)],
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 11 rules found" in rules.stdout
    config = subprocess.run([_promtool(), "check", "config", str(CONFIG)],
                            capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 11 rules found" in config.stdout  # the config loads alerts.yml


def test_every_rule_has_a_case_that_fires() -> None:
    firing = {alert for alert, _, checks in CASES if any(c is not None for _, c in checks)}
    assert firing == set(_rules())


def test_rules_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    result = subprocess.run([_promtool(), "test", "rules", str(_test_file(tmp_path))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("alert", sorted(_rules()))
def test_a_wrong_expectation_is_caught(alert: str, tmp_path: Path) -> None:
    """The harness can fail: expecting nothing where a rule fires makes promtool fail."""
    case = next(c for c in CASES if c[0] == alert and any(x is not None for _, x in c[2]))
    minute = next(m for m, labels in case[2] if labels is not None)
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in case[1]],
        "alert_rule_test": [{"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": []}],
    }]}, allow_unicode=True))
    result = subprocess.run([_promtool(), "test", "rules", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
