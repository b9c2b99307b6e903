"""Broker and database set-up shared by the baselines and the pipeline benchmark.

Fresh topics and a fresh, migrated database per measurement, on the servers of one
`running_services` block, so runs never see each other's records or rows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from embedded import running_services
from embedded.children import Child
from embedded.state import load_state
from sinks.db import connect
from sinks.schema import migrate
from stackwatch.registry import StackRegistry


@dataclass(frozen=True)
class BenchServers:
    """The embedded Tansu and PostgreSQL 18 of one benchmark, and its scratch directory."""

    tmp: Path
    registry_file: Path
    bootstrap: str
    dsn: str
    server_pids: dict[str, int]


@contextlib.contextmanager
def bench_servers(prefix: str, registry: StackRegistry) -> Iterator[BenchServers]:
    """A temporary directory holding `registry` as a file, with the embedded servers running
    in it; everything is stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        registry_file = tmp / "registry.yaml"
        registry.dump(registry_file)
        with running_services(tmp / "services", kafka=True, postgres=True) as endpoints:
            assert endpoints.kafka_bootstrap is not None and endpoints.postgres_dsn is not None
            pids = {str(name): r.pid for name, r in load_state(tmp / "services").services.items()}
            yield BenchServers(tmp, registry_file, endpoints.kafka_bootstrap,
                               endpoints.postgres_dsn, pids)


def child_env(bootstrap: str, names: dict[str, str], db: str, data_dir: Path,
               registry_file: Path, partitions: int) -> dict[str, str]:
    """Environment of a benchmark's stackwatch children: this one's, without its STACKWATCH_
    settings, on fresh topics (`names`), database and data directory, tansu profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKWATCH_")}
    env |= {f"STACKWATCH_TOPICS__{t.upper()}": n for t, n in names.items()}
    return env | {
        "STACKWATCH_KAFKA_BOOTSTRAP": bootstrap, "STACKWATCH_DATABASE_URL": db,
        "STACKWATCH_DATA_DIR": str(data_dir), "STACKWATCH_BROKER_PROFILE": "tansu",
        "STACKWATCH_GATEWAY__REGISTRY_FILE": str(registry_file),
        "STACKWATCH_TOPICS__PARTITIONS": str(partitions), "STACKWATCH_LOG_LEVEL": "WARNING",
    }


def raise_if_exited(children: list[Child]) -> None:
    """A child that died ends the measurement with its exit code."""
    for child in children:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create topics with `partitions` partitions (existing ones are kept)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="stackwatch-bench")
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1)]
                )
    finally:
        await admin.close()


def fresh_database(dsn: str, name: str) -> str:
    """(Re)create database `name` on the server of `dsn`, migrate it; its DSN."""
    with connect(dsn, autocommit=True) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    target = make_conninfo(dsn, dbname=name)
    with connect(target) as conn:
        migrate(conn)
    return target


def server_version(dsn: str) -> str:
    """`SHOW server_version` (for the results' versions)."""
    with connect(dsn) as conn:
        row: Any = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split(" ")[0] if row else "?"
