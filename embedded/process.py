"""Spawning and stopping server processes by PID.

Why: servers outlive the `stackwatch services up` command, so they are started in their own
session (Ctrl-C in the terminal does not reach them) and stopped later by PID — SIGTERM,
wait, then SIGKILL. The recorded create time makes sure a PID the OS has meanwhile reused for
an unrelated process is never signalled.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from embedded.ports import wait_for

logger = logging.getLogger(__name__)

#: Popen objects of servers this process spawned, so stopping them also reaps them (no
#: zombies, no "subprocess still running" warnings in long-lived test sessions).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    argv: Sequence[str | Path],
    log_file: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` detached from our terminal session, stdout+stderr appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def create_time(pid: int) -> float | None:
    """psutil create time of `pid`, or None when no such process exists."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_running(pid: int, started: float | None = None) -> bool:
    """True when `pid` is alive (not a zombie) and, if given, has the recorded create time."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        return started is None or abs(float(proc.create_time()) - started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.poll()


def terminate(pid: int, started: float | None = None, *, grace: float = 10.0) -> bool:
    """Stop `pid`: SIGTERM, wait up to `grace` seconds, then SIGKILL and wait again.

    Returns True when a process was signalled. Never touches a PID whose create time differs
    from `started` (the server already died and the PID was reused).
    """
    if not is_running(pid, started):
        _reap(pid)
        return False
    # Poll liveness instead of psutil's wait(): a server reparented to an init that does not
    # reap (containers) stays a zombie forever, which `is_running` already counts as gone.
    try:
        psutil.Process(pid).terminate()
        if not wait_for(lambda: not is_running(pid, started), grace):
            logger.warning("process ignored SIGTERM, killing it", extra={"pid": pid})
            psutil.Process(pid).kill()
            wait_for(lambda: not is_running(pid, started), 5.0)
    except psutil.NoSuchProcess:
        pass
    _reap(pid)
    return True


def log_tail(log_file: Path, lines: int = 20) -> str:
    """Last lines of a server log, for error messages that say why a start failed."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
