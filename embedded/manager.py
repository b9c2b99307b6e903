"""Start, check and stop the embedded servers as one unit, recorded in the state file.

Layout of the data directory (Settings.data_dir, default `.stackwatch/`):

    services.json        PIDs, ports, URLs of the running servers (see state.py)
    .services.lock       held while `up`/`down` run
    logs/tansu.log       broker output
    logs/postgres.log    PostgreSQL server log
    logs/pglite.log      PGlite-TimescaleDB output
    postgres/            PGDATA (kept between runs; topics in Tansu and PGlite data are not)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from embedded.pglite import pglite_healthy, start_pglite
from embedded.ports import wait_port_released
from embedded.postgres import postgres_healthy, start_postgres, stop_postgres
from embedded.process import is_running, terminate
from embedded.state import (
    SERVICE_ORDER,
    ServiceError,
    ServiceName,
    ServiceRecord,
    ServicesState,
    load_state,
    save_state,
    state_lock,
)
from embedded.tansu import start_tansu, tansu_healthy
from stackwatch.settings import Settings

logger = logging.getLogger(__name__)

_HEALTH: dict[ServiceName, Callable[[ServiceRecord], bool]] = {
    "tansu": tansu_healthy,
    "postgres": postgres_healthy,
    "pglite": pglite_healthy,
}


class Endpoints(BaseModel):
    """Where clients connect. None = that server was not requested."""

    kafka_bootstrap: str | None = None
    postgres_dsn: str | None = None
    timescale_dsn: str | None = None

    @classmethod
    def from_state(cls, state: ServicesState) -> Endpoints:
        """Endpoints of the servers recorded in a state."""
        found = state.services
        return cls(
            kafka_bootstrap=found["tansu"].url if "tansu" in found else None,
            postgres_dsn=found["postgres"].url if "postgres" in found else None,
            timescale_dsn=found["pglite"].url if "pglite" in found else None,
        )


class ServiceStatus(BaseModel):
    """One line of `stackwatch services status`."""

    name: ServiceName
    address: str
    url: str
    pid: int
    running: bool
    healthy: bool
    log_file: Path


def _start_one(name: ServiceName, data_dir: Path, pg_fsync: bool) -> ServiceRecord:
    if name == "tansu":
        return start_tansu(data_dir)
    if name == "postgres":
        return start_postgres(data_dir, fsync=pg_fsync)
    return start_pglite(data_dir)


def _stop_one(record: ServiceRecord, data_dir: Path) -> None:
    if record.name == "postgres":
        stop_postgres(record, data_dir)
    else:
        terminate(record.pid, record.create_time, grace=10.0)
    if not wait_port_released(record.host, record.port, timeout=10.0):
        logger.warning(
            "port still bound after stop", extra={"service": record.name, "port": record.port}
        )


def start_services(
    data_dir: Path,
    *,
    kafka: bool = True,
    postgres: bool = True,
    timescale: bool = False,
    pg_fsync: bool = True,
) -> Endpoints:
    """Start the requested servers (in parallel) unless they already run healthy.

    Servers already recorded and healthy are kept; stale records are replaced. If any start
    fails, the servers started by this call are stopped again and the error is raised.
    """
    endpoints, _started = _start_services(
        data_dir, kafka=kafka, postgres=postgres, timescale=timescale, pg_fsync=pg_fsync
    )
    return endpoints


def _start_services(
    data_dir: Path,
    *,
    kafka: bool,
    postgres: bool,
    timescale: bool,
    pg_fsync: bool,
) -> tuple[Endpoints, list[ServiceName]]:
    data_dir = data_dir.expanduser().resolve()
    wanted: list[ServiceName] = [
        name for name, flag in zip(SERVICE_ORDER, (kafka, postgres, timescale), strict=True) if flag
    ]
    with state_lock(data_dir):
        state = load_state(data_dir)
        to_start: list[ServiceName] = []
        for name in wanted:
            record = state.services.get(name)
            if record is not None and _HEALTH[name](record):
                continue
            if record is not None:  # recorded but dead or unhealthy: clear it first
                _stop_one(record, data_dir)
                del state.services[name]
            to_start.append(name)
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
            futures: dict[ServiceName, Future[ServiceRecord]] = {
                name: pool.submit(_start_one, name, data_dir, pg_fsync) for name in to_start
            }
            for name, future in futures.items():
                try:
                    state.services[name] = future.result()
                except Exception as exc:  # any failure: stop the others, report all reasons
                    errors.append(f"{name}: {exc}")
        if errors:
            for name in reversed(to_start):
                started = state.services.pop(name, None)
                if started is not None:
                    _stop_one(started, data_dir)
            save_state(data_dir, state)
            raise ServiceError("; ".join(errors))
        save_state(data_dir, state)
        for name in to_start:
            rec = state.services[name]
            logger.info(
                "service started",
                extra={"service": name, "pid": rec.pid, "url": _redact(rec.url)},
            )
        return Endpoints.from_state(state), to_start


def stop_services(data_dir: Path, names: list[ServiceName] | None = None) -> list[ServiceName]:
    """Stop the recorded servers (PGlite, PostgreSQL, then the broker last); returns names.

    Waits for each PID to exit (SIGKILL after a grace period) and for its port to be
    released, so nothing is left running or bound.
    """
    data_dir = data_dir.expanduser().resolve()
    with state_lock(data_dir):
        state = load_state(data_dir)
        stopped: list[ServiceName] = []
        for name in reversed(SERVICE_ORDER):
            if names is not None and name not in names:
                continue
            record = state.services.get(name)
            if record is None:
                continue
            _stop_one(record, data_dir)
            del state.services[name]
            save_state(data_dir, state)
            stopped.append(name)
        return stopped


def service_status(data_dir: Path) -> list[ServiceStatus]:
    """PID liveness and health of every recorded server."""
    state = load_state(data_dir.expanduser().resolve())
    result: list[ServiceStatus] = []
    for name in SERVICE_ORDER:
        record = state.services.get(name)
        if record is None:
            continue
        running = is_running(record.pid, record.create_time)
        result.append(
            ServiceStatus(
                name=name,
                address=f"{record.host}:{record.port}",
                url=_redact(record.url),
                pid=record.pid,
                running=running,
                healthy=running and _HEALTH[name](record),
                log_file=record.log_file,
            )
        )
    return result


@contextmanager
def running_services(
    data_dir: Path,
    *,
    kafka: bool = True,
    postgres: bool = True,
    timescale: bool = False,
    pg_fsync: bool = True,
) -> Iterator[Endpoints]:
    """Run servers for the duration of a `with` block.

    Servers this call started are stopped (by PID) afterwards; ones that were already running
    healthy in `data_dir` (e.g. from `stackwatch services up`) are used and left running.
    """
    endpoints, started = _start_services(
        data_dir, kafka=kafka, postgres=postgres, timescale=timescale, pg_fsync=pg_fsync
    )
    try:
        yield endpoints
    finally:
        if started:
            stop_services(data_dir, started)


def _redact(url: str) -> str:
    """Hide a password in a DSN (`user:secret@` → `user:***@`) for display and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, has_pw, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if has_pw else ''}@{host}"


def _recorded(settings: Settings, name: ServiceName) -> ServiceRecord:
    data_dir = settings.resolved_data_dir()
    record = load_state(data_dir).services.get(name)
    if record is None or not is_running(record.pid, record.create_time):
        raise ServiceError(
            f"no running embedded {name} recorded in {data_dir}: run `stackwatch services up`"
            f"{' --timescale' if name == 'pglite' else ''} or configure the URL explicitly"
        )
    return record


def resolve_kafka_bootstrap(settings: Settings) -> str:
    """`settings.kafka_bootstrap`, else the embedded Tansu from the state file."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    return _recorded(settings, "tansu").url


def resolve_database_url(settings: Settings) -> str:
    """`settings.database_url`, else the embedded PostgreSQL 18 from the state file."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return _recorded(settings, "postgres").url


def resolve_timescale_url(settings: Settings) -> str:
    """`settings.timescale_url`, else the embedded PGlite-TimescaleDB from the state file."""
    if settings.timescale_url is not None:
        return settings.timescale_url.get_secret_value()
    return _recorded(settings, "pglite").url
