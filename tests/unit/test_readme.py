"""The README is the user's entry point: its first lines, its settings table, its commands."""

from __future__ import annotations

import re
from pathlib import Path

from stackwatch.settings_doc import END, START, table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_first_lines_hold_the_two_commands_and_ci_runs_the_test_command() -> None:
    head = "\n".join(README.splitlines()[:12])
    block = re.search(r"```bash\n(.*?)```", head, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_settings_table_is_the_generated_one() -> None:
    assert START in README and END in README
    documented = README.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == table(), "run: .venv/bin/python -m stackwatch.settings_doc --write"


def test_every_setting_has_a_meaning() -> None:
    for row in table().splitlines()[2:]:
        meaning = row.rsplit("|", 2)[1].strip()
        assert meaning, f"undocumented setting: {row}"
