"""HJ 212 decode throughput on damaged input: 10 000 mutated real frames vs the clean capture.

The corpus is the fuzz tests' (`tests/fuzz_corpus.py`, seeded): frames of the real 2016
capture with bit flips, lost/extra bytes, truncation, stray `##`, wrong lengths and CRCs,
garbage keys and values, NaN/inf, GBK bytes, oversized segments. "Throughput stays up" is a
figure printed here, never asserted by a test. Figures, on one core, best of `--repeat`:

* clean capture: the 8 696-frame stream framed and every unit decoded (the gateway's path);
* mutated stream: the 10 000 mutants with a clean frame before each, delivered in random
  read sizes, framed and every unit decoded;
* mutated frames alone, each decoded as one frame — warm, and the first (cold) pass, which
  pays for the decoder's per-layout compiles;
* the clean capture again after the junk went through (the layout caches hold junk now).

    .venv/bin/python bench/bench_fuzz.py [--repeat 5] [--mutants 10000]

`measure()` returns the figures for other runners.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `tests` (the shared corpus) is not installed
    sys.path.insert(0, str(ROOT))

from stackwatch.hj212 import Framer, FrameResult, decode_frame  # noqa: E402
from stackwatch.hj212 import segment as segment_mod  # noqa: E402
from tests.fuzz_corpus import chunks, interleave, make_corpus, seed_frames  # noqa: E402
from tests.oracles import framed  # noqa: E402
from tests.shared_data import CAPTURE  # noqa: E402

TITLE = "HJ 212 decode, damaged input ({n:,} mutated real frames, one core)"


def _clear_caches() -> None:
    for cache in (segment_mod._PLANS, segment_mod._LAST_PLAN, segment_mod._KEY_CACHE,
                  segment_mod._DT_CACHE):
        cache.clear()
    segment_mod._SEEN.clear()


def _frame_and_decode(reads: list[bytes]) -> int:
    framer = Framer()
    units: list[FrameResult] = []
    for data in reads:
        units += framer.feed(data)
    units += framer.flush()
    for unit in units:
        decode_frame(unit)
    return len(units)


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def measure(n_mutants: int = 10_000, repeat: int = 5) -> dict[str, float]:
    """Frames (units) per second for each figure; see the module docstring."""
    clean = CAPTURE.read_bytes()
    clean_reads = [clean[i : i + 65536] for i in range(0, len(clean), 65536)]
    corpus = make_corpus(seed_frames(), n_mutants)
    sentinels = [
        framed(f"QN=20260105080000{i:03d};ST=31;CN=2011;PW=123456;MN=SENTINEL{i:04d};Flag=5;"
               f"CP=&&DataTime=20260105080000;a21026-Rtd={i}.5,a21026-Flag=N&&").encode()
        for i in range(50)
    ]
    stream, cuts = interleave(corpus, sentinels)
    stream_reads = chunks(stream, cuts)
    mutants = [m.data for m in corpus]

    def decode_mutants() -> int:
        for data in mutants:
            decode_frame(data)
        return len(mutants)

    out: dict[str, float] = {}
    _clear_caches()
    start = time.perf_counter()
    decode_mutants()
    out["mutants_cold"] = len(mutants) / (time.perf_counter() - start)
    _clear_caches()
    t, n = _best(lambda: _frame_and_decode(clean_reads), repeat)
    out["clean"] = n / t
    out["clean_mb_s"] = len(clean) / t / 1e6
    t, n = _best(lambda: _frame_and_decode(stream_reads), repeat)
    out["stream"] = n / t
    out["stream_mb_s"] = len(stream) / t / 1e6
    out["stream_units"] = n
    t, n = _best(decode_mutants, repeat)
    out["mutants_warm"] = n / t
    t, n = _best(lambda: _frame_and_decode(clean_reads), repeat)
    out["clean_after"] = n / t
    out["plans"] = len(segment_mod._PLANS)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mutants", type=int, default=10_000)
    args = parser.parse_args()
    f = measure(args.mutants, args.repeat)
    print(f"python {platform.python_version()} on {platform.machine()}; best of {args.repeat}")
    print(f"clean capture, frame + decode:          {f['clean']:>9,.0f} frames/s "
          f"({f['clean_mb_s']:.1f} MB/s)")
    print(f"mutated stream, frame + decode:         {f['stream']:>9,.0f} units/s "
          f"({f['stream_mb_s']:.1f} MB/s, {f['stream_units']:,.0f} units)")
    print(f"mutated frames, decode (warm):          {f['mutants_warm']:>9,.0f} frames/s")
    print(f"mutated frames, decode (cold pass):     {f['mutants_cold']:>9,.0f} frames/s")
    print(f"clean capture after the junk:           {f['clean_after']:>9,.0f} frames/s "
          f"({f['plans']:.0f} layout plans cached)")
    print()
    title = TITLE.format(n=args.mutants)
    rows = (
        ("clean capture, frame + decode, frames/s", f"{f['clean']:,.0f}",
         "8,696 real frames, warm"),
        ("mutated stream, frame + decode, units/s", f"{f['stream']:,.0f}",
         "a clean frame before each mutant, random read sizes"),
        ("mutated frames, decode, frames/s", f"{f['mutants_warm']:,.0f}",
         f"warm; cold first pass {f['mutants_cold']:,.0f}"),
        ("clean capture after the junk, frames/s", f"{f['clean_after']:,.0f}",
         "layout caches holding junk"),
    )
    for fig, val, note in rows:
        print(f"| {title} | {fig} | {val} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
