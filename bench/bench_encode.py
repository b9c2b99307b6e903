"""HJ 212 encode throughput on one core: realistic ~400-character flue-gas frames.

Each frame is one `stackwatch.hj212.build_frames` call from its values (what a logger, a
simulator or the replay tool does): number formatting, header, CP field, length and CRC.
Median of several runs, the process pinned to one CPU.

    stackwatch bench run encode [--quick] [--runs N]
"""

from __future__ import annotations

import sys

from bench.bench_decode import check_realistic
from bench.frames import flue_gas_inputs, length_summary
from bench.options import BenchOptions, one_core, rate
from bench.results import BenchResult, figure, new_result

FRAMES = 2000


def run(opts: BenchOptions) -> list[BenchResult]:
    """Measure, print progress, return the `encode` result."""
    runs = opts.pick_runs(5, 3)
    seconds = 0.3 if opts.quick else 1.0
    inputs = flue_gas_inputs(FRAMES)
    texts = [i.build() for i in inputs]
    lengths = length_summary(texts)
    check_realistic(lengths)
    print(f"encode: {len(inputs)} frames, length min/mean/max {lengths['min']:.0f}/"
          f"{lengths['mean']:.0f}/{lengths['max']:.0f} characters", flush=True)

    def encode_all() -> int:
        for item in inputs:
            item.build()
        return len(inputs)

    rates: list[float] = []
    with one_core() as cpu:
        encode_all()
        for i in range(runs):
            rates.append(rate(encode_all, seconds))
            print(f"  run {i + 1}/{runs}: {rates[-1]:,.0f} frames/s", flush=True)
    result = new_result("encode", "HJ 212 encode (one core)", quick=opts.quick, settings={
        "frames": len(inputs), "frame_length_chars": lengths, "cns": ["2011", "2051"],
        "runs": runs, "min_seconds_per_run": seconds, "pinned_cpu": cpu,
    })
    result.figures.append(figure(
        "realistic ~400-char frames, frames/s", rates, "frames/s",
        notes=f"CN 2011/2051, {lengths['mean']:.0f} characters on average; values → framed "
        "text with CRC (`build_frames`)"))
    return [result]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["encode", *sys.argv[1:]]))
