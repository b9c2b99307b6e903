"""What a benchmark run records: the JSON written to `bench/results/<name>.json`.

One model for every benchmark, so the README table (`bench.table`) is generated from files
alone, and a figure is never quoted without the machine, the versions and the settings that
produced it. Figures are medians of the per-run values kept next to them.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Machine(BaseModel):
    """Where it ran (figures from different machines are not comparable)."""

    cpu_model: str
    logical_cores: int
    physical_cores: int | None = None
    ram_gb: float
    arch: str
    os: str
    load_avg_1m: float | None = Field(
        default=None, description="At the start of the run: > 0 means other jobs shared the CPU."
    )


class Versions(BaseModel):
    """Python and the libraries/servers whose speed is being measured."""

    python: str
    stackwatch: str | None = None
    faust_streaming: str | None = None
    aiokafka: str | None = None
    psycopg: str | None = None
    tansu: str | None = None
    postgresql: str | None = None


class Figure(BaseModel):
    """One reported figure: the median of `runs` (per-run values, same unit).

    Consecutive figures with the same `row` are shown as one README row (`a / b / c unit`),
    e.g. latency p50 / p95 / p99.
    """

    figure: str
    value: float = Field(description="Median of the runs.")
    runs: list[float] = Field(default_factory=list)
    unit: str = ""
    digits: int = 0
    notes: str = ""
    row: str | None = None


class BenchResult(BaseModel):
    """Everything one benchmark measured, as written to `<name>.json`."""

    name: str = Field(description="decode | encode | gateway | baselines | pipeline")
    title: str = Field(description="The README table's 'benchmark' column.")
    measured_at: datetime
    quick: bool
    machine: Machine
    versions: Versions
    settings: dict[str, Any] = Field(default_factory=dict)
    figures: list[Figure] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict, description="Per-step data etc.")


def median(values: list[float]) -> float:
    """Median, 0.0 for no values (a benchmark that produced nothing says so in its notes)."""
    return float(statistics.median(values)) if values else 0.0


def figure(name: str, runs: list[float], unit: str = "", *, digits: int = 0, notes: str = "",
           row: str | None = None) -> Figure:
    """A figure from its per-run values."""
    return Figure(figure=name, value=median(runs), runs=[round(v, 6) for v in runs], unit=unit,
                  digits=digits, notes=notes, row=row)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> Machine:
    """This machine, now."""
    import psutil

    return Machine(
        cpu_model=_cpu_model(),
        logical_cores=os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        ram_gb=round(psutil.virtual_memory().total / 2**30, 1),
        arch=platform.machine(),
        os=platform.platform(terse=True),
        load_avg_1m=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    )


def _dist(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tansu() -> str | None:
    """`tansu --version` of the binary the embedded broker runs."""
    try:
        from embedded.tansu import tansu_binary

        out = subprocess.run([str(tansu_binary()), "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except Exception:  # a version is informative only; never fail a benchmark on it
        return None
    return out.strip().removeprefix("tansu ").strip() or None


def versions(postgresql: str | None = None) -> Versions:
    """Versions of Python, the key libraries and the embedded Tansu."""
    return Versions(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        stackwatch=_dist("stackwatch"),
        faust_streaming=_dist("faust-streaming"),
        aiokafka=_dist("aiokafka"),
        psycopg=_dist("psycopg"),
        tansu=_tansu(),
        postgresql=postgresql,
    )


def new_result(name: str, title: str, *, quick: bool, settings: dict[str, Any],
               postgresql: str | None = None) -> BenchResult:
    """A result stamped with the machine and versions (figures are added by the benchmark)."""
    return BenchResult(name=name, title=title, measured_at=datetime.now(UTC), quick=quick,
                       machine=machine(), versions=versions(postgresql), settings=settings)


def save(result: BenchResult, out_dir: Path) -> Path:
    """Write `<out_dir>/<name>.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.name}.json"
    path.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def load_all(out_dir: Path) -> list[BenchResult]:
    """Every `*.json` result in `out_dir`."""
    return [BenchResult.model_validate_json(p.read_text(encoding="utf-8"))
            for p in sorted(out_dir.glob("*.json"))]
