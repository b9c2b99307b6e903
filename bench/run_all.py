"""Run every benchmark and regenerate the README's performance table.

Each `bench/bench_*.py` prints its figures and, for the README, markdown table rows
`| benchmark | figure | value | notes |` on lines starting with `| `. This script runs them one
after another (never in the test suite: figures are printed, never asserted) and replaces the
table between `<!-- bench:start -->` and `<!-- bench:end -->` in README.md.

    .venv/bin/python -m bench.run_all            # all benchmarks
    .venv/bin/python -m bench.run_all decode     # only bench_decode.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADER = "| benchmark | figure | value | notes |\n|---|---|---|---|"


def run(script: Path) -> list[str]:
    """Run one benchmark; its stdout is echoed and its table rows returned."""
    print(f"== {script.name}", flush=True)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return [f"| {script.stem} | failed | exit {proc.returncode} | see its output |"]
    return [line.rstrip() for line in proc.stdout.splitlines() if line.startswith("| ")]


def update_readme(rows: list[str]) -> None:
    """Replace the table between the markers (the markers must exist)."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit("README.md has no bench markers")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    note = f"_Measured {stamp} on {platform.machine()}, {python}, by `python -m bench.run_all`._"
    table = "\n".join([HEADER, *rows])
    block = f"{START}\n{note}\n\n{table}\n{END}"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(head + block + tail, encoding="utf-8")


def main() -> None:
    """Run the selected benchmarks and update the README."""
    wanted = set(sys.argv[1:])
    scripts = sorted((ROOT / "bench").glob("bench_*.py"))
    scripts = [s for s in scripts if not wanted or s.stem.removeprefix("bench_") in wanted]
    rows = [row for script in scripts for row in run(script)]
    update_readme(rows)
    print(f"README performance table updated ({len(rows)} rows)")


if __name__ == "__main__":
    main()
