"""`fuzz`: decode throughput on damaged input, recorded like every other benchmark.

The measurement is `bench.bench_fuzz.measure` (mutated real frames from the fuzz tests'
corpus, one core); this module only repeats it and writes `fuzz.json` for the README table.

    stackwatch bench run fuzz [--quick] [--runs N]
"""

from __future__ import annotations

from bench.bench_fuzz import measure
from bench.options import BenchOptions, one_core
from bench.results import BenchResult, figure, new_result

FIGURES = (  # (measure() key, figure, unit, notes)
    ("clean", "clean capture, frame + decode", "frames/s", "8,696 real frames, warm"),
    ("stream", "mutated stream, frame + decode", "units/s",
     "a clean frame before each mutant, random read sizes"),
    ("mutants_warm", "mutated frames, decode (warm)", "frames/s", ""),
    ("mutants_cold", "mutated frames, decode (cold first pass)", "frames/s",
     "pays the decoder's per-layout compiles"),
    ("clean_after", "clean capture after the junk", "frames/s", "layout caches holding junk"),
)


def run(opts: BenchOptions) -> list[BenchResult]:
    """`runs` × `measure()` (each the best of `repeat` passes); medians over the runs."""
    runs = opts.pick_runs(3, 1)
    mutants, repeat = (10_000, 1) if opts.quick else (10_000, 3)
    per_run: list[dict[str, float]] = []
    with one_core() as cpu:
        for i in range(runs):
            per_run.append(measure(mutants, repeat))
            print(f"  run {i + 1}/{runs}: clean {per_run[-1]['clean']:,.0f}, mutated stream "
                  f"{per_run[-1]['stream']:,.0f} units/s", flush=True)
    result = new_result("fuzz", f"HJ 212 decode, damaged input ({mutants:,} mutants, one core)",
                        quick=opts.quick, settings={"mutants": mutants, "repeat": repeat,
                                                    "runs": runs, "pinned_cpu": cpu})
    result.figures = [figure(label, [r[key] for r in per_run], unit, notes=notes)
                      for key, label, unit, notes in FIGURES]
    return [result]
