"""Session fixtures: the real servers (Tansu, PostgreSQL 18, PGlite-TimescaleDB) on loopback.

Servers start lazily — only when a test asks for one — so a unit-only run starts nothing.
Each starts once per session in a temporary data directory and is stopped by PID at the
end of the session, also when tests fail (finalizer), on interpreter exit (`atexit`) and on
SIGTERM/SIGHUP to pytest (turned into KeyboardInterrupt so the finalizers run).
"""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import psycopg
import pytest

from embedded import Endpoints, start_services, stop_services
from tests.durable_broker import S3Server


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """Data directory of this session's servers; everything in it is stopped at the end.

    Not under pytest's numbered basetemp: a concurrent pytest session prunes old numbered
    directories, which would delete a running PostgreSQL's data directory.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="stackwatch-services-"))
    atexit.register(stop_services, data_dir)
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        yield data_dir
    finally:
        stop_services(data_dir)
        atexit.unregister(stop_services)
        shutil.rmtree(data_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(data_dir: Path, *, kafka: bool, postgres: bool, timescale: bool) -> Endpoints:
    # Test clusters are throw-away: fsync off makes PostgreSQL start and write faster.
    return start_services(
        data_dir, kafka=kafka, postgres=postgres, timescale=timescale, pg_fsync=False
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(services_dir: Path) -> str:
    """`host:port` of the session's Tansu broker."""
    endpoints = _start(services_dir, kafka=True, postgres=False, timescale=False)
    assert endpoints.kafka_bootstrap is not None
    return endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def pg_dsn(services_dir: Path) -> str:
    """DSN of database `stackwatch` on the session's PostgreSQL 18."""
    endpoints = _start(services_dir, kafka=False, postgres=True, timescale=False)
    assert endpoints.postgres_dsn is not None
    return endpoints.postgres_dsn


@pytest.fixture(scope="session")
def timescale_dsn(services_dir: Path) -> str:
    """DSN of the session's PGlite-TimescaleDB.

    Connect with `prepare_threshold=None` and close the connection after use: the server
    attaches one session at a time; other connections wait until it closes.
    """
    endpoints = _start(services_dir, kafka=False, postgres=False, timescale=True)
    assert endpoints.timescale_dsn is not None
    return endpoints.timescale_dsn


@pytest.fixture(scope="session")
def services(kafka_bootstrap: str, pg_dsn: str, timescale_dsn: str) -> Endpoints:
    """All three servers."""
    return Endpoints(
        kafka_bootstrap=kafka_bootstrap, postgres_dsn=pg_dsn, timescale_dsn=timescale_dsn
    )


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """A fresh empty database for one test; returns its DSN and drops it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic-name prefix unique to this test run, e.g. `t.test_resume.1a2b3c4d`.

    Topics live in the session broker's memory, so tests never see each other's records.
    """
    test_name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:60]
    return f"t.{test_name}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    """moto's S3 server on loopback: storage for a Tansu that is stopped and started again."""
    server = S3Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()
