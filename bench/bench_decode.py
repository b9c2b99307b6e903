"""HJ 212 decode throughput over the real 2016 capture (../shared/data), on one core.

Prints frames/s for framing + CRC only and for the full decode (framing, CRC, header, CP
values into ``DecodedFrame``), per-frame latency percentiles and peak memory, then a markdown
table row for the README. Best of ``--repeat`` passes (the machine may be shared); the first
pass (cold layout caches) is printed separately.

    .venv/bin/python bench/bench_decode.py [--repeat 5] [--capture PATH]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from stackwatch.hj212 import crc16_table, decode_frame, split_frames
from stackwatch.hj212 import framing as framing_mod
from stackwatch.hj212 import segment as segment_mod

DEFAULT_CAPTURE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hj212-capture-2016-08-24-05.h212"
)


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs and the item count of the last run."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def _clear_caches() -> None:
    segment_mod._PLANS.clear()
    segment_mod._LAST_PLAN.clear()
    segment_mod._KEY_CACHE.clear()
    segment_mod._DT_CACHE.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = args.capture.read_bytes()

    def framing_only() -> int:
        return len(split_frames(data))

    def full() -> int:
        n = 0
        for result in split_frames(data):
            decode_frame(result)
            n += 1
        return n

    _clear_caches()
    start = time.perf_counter()
    frames = full()
    cold = time.perf_counter() - start

    t_frame, n = _best(framing_only, args.repeat)
    t_full, _ = _best(full, args.repeat)

    # Framing with the one-lookup-per-byte table CRC instead of the folded one, for contrast.
    fast_crc = getattr(framing_mod, "crc16")  # noqa: B009 - module attribute swapped below
    setattr(framing_mod, "crc16", crc16_table)  # noqa: B010
    try:
        t_table, _ = _best(framing_only, max(1, args.repeat // 2))
    finally:
        setattr(framing_mod, "crc16", fast_crc)  # noqa: B010

    # Per-frame latency: one complete frame (bytes) → DecodedFrame, CRC included.
    raws = [r.raw for r in split_frames(data)]
    latencies: list[float] = []
    for raw in raws:
        t0 = time.perf_counter_ns()
        decode_frame(raw)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    q = statistics.quantiles(latencies, n=100)
    p50, p99 = q[49], q[98]

    tracemalloc.start()
    full()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    ok = sum(decode_frame(r).ok for r in split_frames(data))
    print(f"capture: {args.capture.name}  {len(data):,} bytes  {frames:,} frames ({ok:,} ok)")
    print(f"python {platform.python_version()} on {platform.machine()}; best of {args.repeat}")
    print(f"framing + CRC only (folded CRC): {n / t_frame:>10,.0f} frames/s")
    print(f"framing + CRC only (table CRC):  {n / t_table:>10,.0f} frames/s")
    print(f"full decode (warm):              {n / t_full:>10,.0f} frames/s "
          f"({len(data) / t_full / 1e6:.1f} MB/s)")
    print(f"full decode (cold first pass):   {frames / cold:>10,.0f} frames/s")
    print(f"full decode / table-CRC framing: {t_table / t_full:>10.2f} x  (a load-independent "
          "yardstick: table-CRC framing is ~100 k frames/s on the reference machine)")
    print(f"per-frame decode latency: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
    print(f"peak traced memory while streaming the capture: {peak / 1e6:.1f} MB")
    print()
    row = "| HJ 212 decode, real capture ({n:,} frames, one core) | {fig} | {val} | {note} |"
    for fig, val, note in (
        ("full decode, frames/s", f"{n / t_full:,.0f}", "framing + CRC + values, warm"),
        ("framing + CRC only, frames/s", f"{n / t_frame:,.0f}", "folded CRC"),
        ("per-frame latency p50 / p99", f"{p50:.1f} / {p99:.1f} µs", "full decode"),
        ("peak memory", f"{peak / 1e6:.1f} MB", "tracemalloc, streaming"),
    ):
        print(row.format(n=n, fig=fig, val=val, note=note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
