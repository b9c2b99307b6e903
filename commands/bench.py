"""`stackwatch bench run|table`: the benchmarks in `bench/` (README "Performance").

The benchmarks start servers and use Kafka and database clients, so they live in the source
checkout's `bench/` package, not in an installed package: it is found next to this package
and imported only inside the commands (nothing but this CLI imports `bench`).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"

app = typer.Typer(help="Benchmarks: print figures, write bench/results/*.json, README table.")
console = Console(stderr=True)


class Benchmark(StrEnum):
    """What `bench run` can run (`all`: every one; the pipeline measures the baselines)."""

    DECODE = "decode"
    FUZZ = "fuzz"
    ENCODE = "encode"
    GATEWAY = "gateway"
    BASELINES = "baselines"
    PIPELINE = "pipeline"
    REPLAY = "replay"
    ALL = "all"


def _bench_importable() -> None:
    """Put the checkout holding `bench/` on sys.path, or exit with a clear error."""
    if not (ROOT / "bench" / "runner.py").is_file():
        console.print(f"[red]error:[/red] no bench/ next to {ROOT / 'stackwatch'}: the "
                      "benchmarks run from a source checkout", highlight=False)
        raise typer.Exit(code=1)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


@app.command()
def run(
    names: Annotated[
        list[Benchmark] | None, typer.Argument(help="Benchmarks to run (default: all).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Few, short runs (~2 min), indicative only.")] = False,
    runs: Annotated[
        int | None, typer.Option(min=1, help="Runs per figure (median); default per benchmark.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory of the JSON results.")] = RESULTS,
    readme: Annotated[
        bool, typer.Option(help="Regenerate the README table (only with the default --out).")
    ] = True,
    loggers: Annotated[
        str | None, typer.Option(help="Gateway: concurrent loggers, e.g. 50,200,1000.")
    ] = None,
    rates: Annotated[
        str | None, typer.Option(help="Pipeline: offered frames/s per step, e.g. 25,50,100.")
    ] = None,
    step_s: Annotated[
        float | None, typer.Option(min=1.0, help="Pipeline: seconds per rate step.")
    ] = None,
    stacks: Annotated[
        int | None, typer.Option(min=1, help="Pipeline: stacks of the national scenario.")
    ] = None,
    workers: Annotated[
        str | None, typer.Option(help="Pipeline: worker process counts, e.g. 1,2.")
    ] = None,
) -> None:
    """Run benchmarks; each prints its table and writes `<out>/<name>.json`."""
    _bench_importable()
    from bench.options import BenchOptions, parse_floats, parse_ints
    from bench.runner import run_benchmarks

    opts = BenchOptions(
        quick=quick,
        runs=runs,
        loggers=parse_ints(loggers) if loggers else None,
        rates=parse_floats(rates) if rates else None,
        step_s=step_s,
        stacks=stacks,
        workers=parse_ints(workers) if workers else None,
    )
    target = README if readme and out.resolve() == RESULTS else None
    chosen = [n.value for n in names] if names else [Benchmark.ALL.value]
    raise typer.Exit(code=run_benchmarks(chosen, opts, out, target))


@app.command()
def table(
    results: Annotated[Path, typer.Option(help="Directory of the JSON results.")] = RESULTS,
    check: Annotated[
        bool, typer.Option(help="Only check that the README table is up to date (exit 1 if not).")
    ] = False,
) -> None:
    """Regenerate the README performance table from the JSON results (no benchmark runs)."""
    _bench_importable()
    from bench.results import load_all
    from bench.table import render_block, replace_block

    text = README.read_text(encoding="utf-8")
    new = replace_block(text, render_block(load_all(results)))
    if check:
        if new != text:
            console.print("README performance table is out of date: run `stackwatch bench table`")
            raise typer.Exit(code=1)
        console.print("README performance table is up to date")
        return
    README.write_text(new, encoding="utf-8")
    console.print(f"README performance table regenerated from {results}", highlight=False)
