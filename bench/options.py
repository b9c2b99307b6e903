"""Options shared by every benchmark (`stackwatch bench run …`), and small timing helpers."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator

from pydantic import BaseModel, Field

NAMES = ("decode", "fuzz", "encode", "gateway", "baselines", "pipeline", "replay")


class BenchOptions(BaseModel):
    """What to run and how long; None = the benchmark's default for full/quick mode."""

    quick: bool = Field(default=False, description="Few, short runs (about 2 minutes in all).")
    runs: int | None = Field(default=None, ge=1, description="Runs per figure (median).")
    loggers: list[int] | None = Field(default=None, description="Gateway: concurrent loggers.")
    rates: list[float] | None = Field(default=None, description="Pipeline: offered frames/s.")
    step_s: float | None = Field(default=None, gt=0, description="Pipeline: seconds per rate.")
    stacks: int | None = Field(default=None, ge=1, description="Pipeline: national stacks.")
    workers: list[int] | None = Field(default=None, description="Pipeline: worker processes.")

    def pick_runs(self, full: int, quick: int) -> int:
        """`--runs` if given, else the mode's default."""
        return self.runs if self.runs is not None else (quick if self.quick else full)


def parse_ints(text: str) -> list[int]:
    """`50,200,1000` → [50, 200, 1000]."""
    return [int(x) for x in text.split(",") if x.strip()]


def parse_floats(text: str) -> list[float]:
    """`25,50,100` → [25.0, 50.0, 100.0]."""
    return [float(x) for x in text.split(",") if x.strip()]


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one CPU (Linux) for a single-core figure; restored afterwards."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield None
        return
    before: set[int] = getter(0)
    cpu = max(before)
    setter(0, {cpu})
    try:
        yield cpu
    finally:
        setter(0, before)


def rate(fn: Callable[[], int], min_seconds: float) -> float:
    """Items per second of `fn` (which returns its item count), repeated for ≥ `min_seconds`."""
    gc.collect()
    items = 0
    started = time.perf_counter()
    while True:
        items += fn()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return items / elapsed
