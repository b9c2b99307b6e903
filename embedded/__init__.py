"""Embedded servers for development, demos and tests: Tansu, PostgreSQL 18, PGlite-TimescaleDB.

All bind 127.0.0.1 on free ports; data, logs and the state file live in Settings.data_dir.
This package never imports aiokafka or psycopg: health checks are TCP, a raw Kafka
ApiVersions request and `pg_isready`. `embedded.children` starts and stops the pipeline's own
processes (worker, sinks, notifier) for the demo, the benchmarks and the e2e tests.
"""

from embedded.manager import (
    Endpoints,
    ServiceStatus,
    resolve_database_url,
    resolve_kafka_bootstrap,
    resolve_timescale_url,
    running_services,
    service_status,
    start_services,
    stop_services,
)
from embedded.pglite import start_pglite
from embedded.postgres import start_postgres, stop_postgres
from embedded.state import ServiceError, ServiceRecord, StateFileError
from embedded.tansu import start_tansu

__all__ = [
    "Endpoints",
    "ServiceError",
    "ServiceRecord",
    "ServiceStatus",
    "StateFileError",
    "resolve_database_url",
    "resolve_kafka_bootstrap",
    "resolve_timescale_url",
    "running_services",
    "service_status",
    "start_pglite",
    "start_postgres",
    "start_services",
    "start_tansu",
    "stop_postgres",
    "stop_services",
]
