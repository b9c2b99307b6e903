"""Run benchmarks, print their tables, write `bench/results/<name>.json`, update the README.

Entry points: `stackwatch bench run …` (commands/bench.py), `python -m bench.run_all …`
and each `bench/bench_<name>.py` run directly; all end up in `run_benchmarks`. Figures are
printed and written, never asserted (CONTRIBUTING "Tests").
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.options import NAMES, BenchOptions, parse_floats, parse_ints
from bench.results import RESULTS_DIR, BenchResult, load_all, save
from bench.table import format_value, render_block, replace_block

README = Path(__file__).resolve().parents[1] / "README.md"
#: `all` runs these; the pipeline benchmark measures the baselines on its own servers.
ALL = ("decode", "fuzz", "encode", "gateway", "pipeline", "replay")
#: Benchmark name → module with `run(opts)` (`fuzz` wraps `bench_fuzz.measure`).
MODULES = {name: f"bench.bench_{name}" for name in NAMES} | {"fuzz": "bench.damaged"}
QUIET = ("stackwatch", "streams", "sinks", "simulators", "aiokafka", "faust", "mode", "httpx")

Runner = Callable[[BenchOptions], list[BenchResult]]


def expand(names: Sequence[str]) -> list[str]:
    """`all` → every benchmark; baselines are dropped when the pipeline runs (it has them)."""
    wanted: list[str] = []
    for name in names or ["all"]:
        for item in ALL if name == "all" else (name,):
            if item not in NAMES:
                raise ValueError(f"unknown benchmark {item!r}; one of {', '.join(NAMES)}, all")
            if item not in wanted:
                wanted.append(item)
    if "pipeline" in wanted and "baselines" in wanted:
        wanted.remove("baselines")
    return wanted


def runner(name: str) -> Runner:
    """`run` of the benchmark's module, imported only when needed (clients load late)."""
    module = importlib.import_module(MODULES[name])
    fn: Runner = module.run
    return fn


def print_result(result: BenchResult, console: Console) -> None:
    """The result as a table, with machine, versions and settings above it."""
    m, v = result.machine, result.versions
    console.print(f"\n[bold]{result.title}[/bold] ({result.name}.json"
                  f"{', quick mode' if result.quick else ''})", highlight=False)
    console.print(f"machine: {m.cpu_model}, {m.logical_cores} logical cores, {m.ram_gb:g} GB, "
                  f"{m.os}, load average {m.load_avg_1m}", highlight=False, soft_wrap=True)
    versions = ", ".join(f"{k} {val}" for k, val in v.model_dump().items() if val)
    console.print(f"versions: {versions}", highlight=False, soft_wrap=True)
    settings = ", ".join(f"{k}={val}" for k, val in result.settings.items())
    console.print(f"settings: {settings}", highlight=False, soft_wrap=True)
    table = Table("figure", "median", "runs", "notes")
    for fig in result.figures:
        runs = ", ".join(f"{r:,.{fig.digits}f}" for r in fig.runs)
        label = fig.figure if fig.row is None else f"{fig.row}: {fig.figure}"
        table.add_row(label, format_value(fig), runs, fig.notes)
    console.print(table)


def update_readme(out_dir: Path, readme: Path = README) -> int:
    """Regenerate the README table from every JSON in `out_dir`; the number of results."""
    results = load_all(out_dir)
    readme.write_text(replace_block(readme.read_text(encoding="utf-8"), render_block(results)),
                      encoding="utf-8")
    return len(results)


def run_benchmarks(names: Sequence[str], opts: BenchOptions, out_dir: Path = RESULTS_DIR,
                   readme: Path | None = README, console: Console | None = None) -> int:
    """Run, print, write; exit status 0 when every benchmark produced its results."""
    console = console or Console()
    for logger in QUIET:
        logging.getLogger(logger).setLevel(logging.WARNING)
    failed: list[str] = []
    for name in expand(names):
        started = time.monotonic()
        console.rule(f"{name}{' (quick)' if opts.quick else ''}")
        try:
            results = runner(name)(opts)
        except Exception:
            console.print(traceback.format_exc(), highlight=False, markup=False)
            failed.append(name)
            continue
        for result in results:
            path = save(result, out_dir)
            print_result(result, console)
            console.print(f"written {path}", highlight=False)
        console.print(f"{name}: {time.monotonic() - started:.0f} s", highlight=False)
    if readme is not None:
        count = update_readme(out_dir, readme)
        console.print(f"README performance table regenerated from {count} result files")
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.run_all [names…] [--quick] …` (the same options as the CLI)."""
    parser = argparse.ArgumentParser(description="stackwatch benchmarks")
    parser.add_argument("names", nargs="*", help=f"{', '.join(NAMES)} or all (default)")
    parser.add_argument("--quick", action="store_true", help="few, short runs (~2 min)")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--loggers", type=parse_ints, help="gateway: e.g. 50,200,1000")
    parser.add_argument("--rates", type=parse_floats, help="pipeline: e.g. 25,50,100")
    parser.add_argument("--step-s", type=float, help="pipeline: seconds per rate")
    parser.add_argument("--stacks", type=int, help="pipeline: national stacks")
    parser.add_argument("--workers", type=parse_ints, help="pipeline: e.g. 1,2")
    args = parser.parse_args(argv)
    opts = BenchOptions(quick=args.quick, runs=args.runs, loggers=args.loggers, rates=args.rates,
                        step_s=args.step_s, stacks=args.stacks, workers=args.workers)
    readme = None if args.no_readme or args.out.resolve() != RESULTS_DIR else README
    return run_benchmarks(args.names, opts, args.out, readme)
