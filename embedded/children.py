"""The pipeline's own processes as children of a supervisor (demo, benchmarks, e2e tests).

Each child is `stackwatch <args>` (the worker, the sinks, the notifier) with its output in
`<log_dir>/<name>.log`, started in a session of its own so that stopping it stops its whole
process group and leaves no grandchild behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["DEMO_ENV", "Child", "spawn_child", "stop_child"]

logger = logging.getLogger(__name__)

DEMO_ENV = {
    # Simulated time runs `speed` times faster than the wall clock, so DataTime runs ahead of
    # the receipt time by design: widen the clock-skew tolerance for the demo only.
    "STACKWATCH_STREAMS__PROCESSOR__QUALITY__CLOCK_SKEW_TOLERANCE": "P7D",
    "STACKWATCH_STREAMS__PROCESSOR__MAX_CLOCK_SKEW": "P7D",
    "STACKWATCH_STREAMS__TICK_INTERVAL_S": "1",
}


@dataclass
class Child:
    """A pipeline process started by the supervisor."""

    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    exit_code: int | None = field(default=None)


def _stackwatch_command() -> list[str]:
    script = Path(sys.executable).with_name("stackwatch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from commands import main; main()"]


def spawn_child(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """Start `stackwatch <args>` with its output in `<log_dir>/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [*_stackwatch_command(), *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    logger.info("started", extra={"child": name, "pid": proc.pid})
    return Child(name=name, proc=proc, log=log)


def stop_child(child: Child, grace_s: float = 15.0) -> None:
    """SIGTERM, wait, SIGKILL; the whole process group, so no grandchild is left."""
    if child.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(5)
    child.exit_code = child.proc.returncode
    child.log.close()
