"""HJ 212 decode throughput on one core: realistic ~400-character frames and the real capture.

Figures (median of several runs, the process pinned to one CPU):
* realistic flue-gas frames (`bench.frames`, CN 2011/2051, ~400 characters): bytes of one
  complete frame → `DecodedFrame` (length, CRC, header, every CP value), frames/s and MB/s;
* the real 2016 capture (`../shared/data`, 8 696 frames, 284 loggers): the stream cut into
  frames and each decoded (the gateway's path), and framing + CRC alone.

    stackwatch bench run decode [--quick] [--runs N]
    .venv/bin/python bench/bench_decode.py        # same, standalone
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.frames import flue_gas_inputs, length_summary
from bench.options import BenchOptions, one_core, rate
from bench.results import BenchResult, figure, new_result
from stackwatch.hj212 import decode_frame, split_frames

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / (
    "hj212-capture-2016-08-24-05.h212"
)
FRAMES = 2000


def check_realistic(lengths: dict[str, float]) -> None:
    """The frames must be the size the figure claims (≈ 400 characters)."""
    if not 350 <= lengths["mean"] <= 450:
        raise AssertionError(f"frames are not ~400 characters: {lengths}")


def run(opts: BenchOptions) -> list[BenchResult]:
    """Measure, print progress, return the `decode` result."""
    runs = opts.pick_runs(5, 3)
    seconds = 0.3 if opts.quick else 1.0
    frames = [i.build().encode() for i in flue_gas_inputs(FRAMES)]
    lengths = length_summary(frames)
    check_realistic(lengths)
    mean_bytes = sum(map(len, frames)) / len(frames)
    print(f"decode: {len(frames)} frames, length min/mean/max {lengths['min']:.0f}/"
          f"{lengths['mean']:.0f}/{lengths['max']:.0f} characters", flush=True)
    for raw in frames[:2]:
        decoded = decode_frame(raw)
        assert decoded.ok and decoded.values, decoded.errors

    def decode_all() -> int:
        for raw in frames:
            decode_frame(raw)
        return len(frames)

    capture = CAPTURE.read_bytes() if CAPTURE.is_file() else None

    def capture_full() -> int:
        assert capture is not None
        n = 0
        for result in split_frames(capture):
            decode_frame(result)
            n += 1
        return n

    def capture_framing() -> int:
        assert capture is not None
        return len(split_frames(capture))

    realistic: list[float] = []
    full: list[float] = []
    framing: list[float] = []
    with one_core() as cpu:
        decode_all()  # warm the codec's layout caches, as a running gateway has them
        for i in range(runs):
            realistic.append(rate(decode_all, seconds))
            if capture is not None:
                full.append(rate(capture_full, seconds))
                framing.append(rate(capture_framing, seconds))
            print(f"  run {i + 1}/{runs}: {realistic[-1]:,.0f} frames/s", flush=True)
    result = new_result("decode", "HJ 212 decode (one core)", quick=opts.quick, settings={
        "frames": len(frames), "frame_length_chars": lengths, "cns": ["2011", "2051"],
        "runs": runs, "min_seconds_per_run": seconds, "pinned_cpu": cpu,
        "capture": CAPTURE.name if capture is not None else None,
    })
    result.figures.append(figure(
        "realistic ~400-char frames, frames/s", realistic, "frames/s",
        notes=f"CN 2011/2051, {lengths['mean']:.0f} characters on average; bytes → "
        "DecodedFrame (length, CRC, header, all CP values)"))
    result.figures.append(figure(
        "realistic ~400-char frames, MB/s", [r * mean_bytes / 1e6 for r in realistic], "MB/s",
        digits=1))
    if capture is not None:
        n = len(split_frames(capture))
        result.figures.append(figure(
            "real 2016 capture, full decode, frames/s", full, "frames/s",
            notes=f"{n:,} frames: stream framing + CRC + values"))
        result.figures.append(figure(
            "real 2016 capture, framing + CRC only, frames/s", framing, "frames/s"))
    return [result]


if __name__ == "__main__":
    from bench.runner import main

    sys.exit(main(["decode", *sys.argv[1:]]))
