"""The state file: which embedded servers run, with PIDs, ports and connection URLs.

Why: `stackwatch services up` returns while the servers keep running; `status`, `down` and
every other stackwatch process (Settings.kafka_bootstrap / database_url default to it) find
them through `<data_dir>/services.json`. Writes are atomic (temp file + rename) and guarded
by an exclusive lock so two commands never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

ServiceName = Literal["tansu", "postgres", "pglite"]
#: Start order; `down` stops in reverse so the broker goes last (clients first).
SERVICE_ORDER: tuple[ServiceName, ...] = ("tansu", "postgres", "pglite")
STATE_FILE = "services.json"
LOCK_FILE = ".services.lock"


class ServiceError(RuntimeError):
    """A server could not be started, checked or stopped; the message says why."""


class StateFileError(ServiceError):
    """The state file exists but cannot be read as a services state."""


class ServiceRecord(BaseModel):
    """One running server as started by stackwatch."""

    name: ServiceName
    pid: int = Field(gt=0)
    create_time: float = Field(
        description="psutil create time of `pid`; guards against acting on a reused PID."
    )
    host: str
    port: int = Field(gt=0, lt=65536)
    url: str = Field(description="Kafka bootstrap `host:port` or a PostgreSQL DSN.")
    log_file: Path
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class ServicesState(BaseModel):
    """Content of `<data_dir>/services.json`."""

    version: Literal[1] = 1
    services: dict[ServiceName, ServiceRecord] = Field(default_factory=dict)


def state_path(data_dir: Path) -> Path:
    """Where the state file of `data_dir` lives."""
    return data_dir / STATE_FILE


def load_state(data_dir: Path) -> ServicesState:
    """Read the state file; a missing file means nothing runs."""
    path = state_path(data_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ServicesState()
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc}") from exc
    try:
        return ServicesState.model_validate_json(raw)
    except ValidationError as exc:
        raise StateFileError(
            f"{path} is not a valid services state ({exc.errors()[0]['msg']}); "
            "stop the servers by PID and delete the file"
        ) from exc


def save_state(data_dir: Path, state: ServicesState) -> None:
    """Atomically replace the state file (readers never see a half-written file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(data_dir)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def state_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive advisory lock on the data directory for the duration of up/down."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
