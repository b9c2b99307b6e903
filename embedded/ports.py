"""Loopback ports: pick a free one, probe one, wait until one is released.

Why: every embedded server binds 127.0.0.1 on a port the OS says is free, so parallel test
sessions and a developer's own services never collide; and a stopped server's port is only
reported free once nothing listens on it any more (Tansu can linger after SIGTERM).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago (bind port 0, read it, release it).

    The small race until the server binds it is handled by the callers, which retry with a
    new port when the server fails to come up.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stable_port(host: str = LOOPBACK) -> int:
    """A free port below the ephemeral range (32768+ on Linux), for a server that must come back
    on the SAME port after a restart: a port from the ephemeral range may meanwhile become the
    local port of some outgoing connection on a busy host."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port_is_free(host, port):
            return port
    raise RuntimeError("no free port in 20000-32000")


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds (something is listening)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_port_released(host: str, port: int, timeout: float = 5.0) -> bool:
    """Wait until nothing listens on host:port and it can be bound again."""
    return wait_for(lambda: not port_accepts(host, port, 0.2) and port_is_free(host, port), timeout)
