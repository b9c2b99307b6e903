"""PGlite-TimescaleDB (PostgreSQL 17 + TimescaleDB compiled to WASM) on the wire protocol.

Why: TimescaleDB ships no PyPI/npm native build, so Timescale-specific SQL (hypertables,
time_bucket, continuous aggregates, jobs) is proven against this WASM build, served by
`embedded/pglite_server/server.mjs` with node. It proves SQL; it is not an ingest database.
Measured limits:
- one session at a time: PGlite is a single-user backend. `server.mjs` attaches one client;
  further connections wait (FIFO) until it disconnects, so keep connections short and close
  them (a client holding one blocks everybody);
- COPY FROM STDIN traps the WASM backend ("unreachable"); server.mjs then exits (code 3,
  reason in logs/pglite.log). Use INSERT;
- background jobs (policies, continuous-aggregate refresh) never run by themselves: use
  `CALL run_job(<job_id>)` or `CALL refresh_continuous_aggregate(...)`;
- psycopg needs `sslmode=disable` (in the DSN) and `prepare_threshold=None` (connect kwarg);
- a password must be sent (any value is accepted); data lives in memory.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from subprocess import Popen

from embedded.ports import LOOPBACK, free_port, port_accepts, wait_for
from embedded.process import create_time, is_running, log_tail, spawn, terminate
from embedded.state import ServiceError, ServiceRecord

READY_MARKER = "PGLITE READY"


def pglite_dir() -> Path:
    """`embedded/pglite_server`: package.json, package-lock.json, server.mjs, node_modules."""
    return Path(__file__).resolve().parent / "pglite_server"


def node_binary() -> str:
    """The `node` executable, or a clear error."""
    node = shutil.which("node")
    if node is None:
        raise ServiceError("node (Node.js >= 18) is required for PGlite-TimescaleDB")
    return node


def dsn(port: int, host: str = LOOPBACK) -> str:
    """DSN for psycopg; also pass `prepare_threshold=None` when connecting."""
    return f"postgresql://postgres:postgres@{host}:{port}/postgres?sslmode=disable"


def _ready_or_exited(proc: Popen[bytes], log_file: Path, offset: int) -> bool:
    if proc.poll() is not None:
        return True
    try:
        with log_file.open("rb") as handle:
            handle.seek(offset)
            return READY_MARKER.encode() in handle.read()
    except OSError:
        return False


def start_pglite(
    data_dir: Path, *, port: int | None = None, timeout: float = 60.0, attempts: int = 2
) -> ServiceRecord:
    """Start server.mjs on 127.0.0.1 and wait for its ready line (WASM start takes ~3 s)."""
    root = pglite_dir()
    if not (root / "node_modules" / "@electric-sql" / "pglite-socket").is_dir():
        raise ServiceError(
            f"npm packages missing in {root}: run `bash scripts/install.sh` "
            "(it runs `npm ci` there)"
        )
    node = node_binary()
    log_file = data_dir / "logs" / "pglite.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(attempts if port is None else 1):
        use_port = port if port is not None else free_port()
        offset = log_file.stat().st_size if log_file.exists() else 0
        proc = spawn(
            [node, root / "server.mjs", "--port", str(use_port), "--host", LOOPBACK],
            log_file,
            cwd=root,
        )
        wait_for(partial(_ready_or_exited, proc, log_file, offset), timeout, interval=0.1)
        if proc.poll() is None and port_accepts(LOOPBACK, use_port):
            started = create_time(proc.pid)
            if started is not None:
                return ServiceRecord(
                    name="pglite",
                    pid=proc.pid,
                    create_time=started,
                    host=LOOPBACK,
                    port=use_port,
                    url=dsn(use_port),
                    log_file=log_file,
                )
        terminate(proc.pid)
        last_error = f"PGlite did not become ready on port {use_port}:\n{log_tail(log_file)}"
    raise ServiceError(last_error)


def pglite_healthy(record: ServiceRecord) -> bool:
    """PID alive and the port accepts TCP (a SQL probe would queue behind a client session)."""
    return is_running(record.pid, record.create_time) and port_accepts(record.host, record.port)
