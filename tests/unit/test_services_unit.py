"""Pure, fast tests of the services plumbing: ports, state file, health probe bytes, Faust kwargs.

No server is started here (the real servers are exercised in tests/integration).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from embedded import Endpoints, ServiceError, ServiceRecord, StateFileError
from embedded.manager import (
    _redact,
    resolve_database_url,
    resolve_kafka_bootstrap,
    service_status,
    stop_services,
)
from embedded.ports import free_port, port_accepts, port_is_free
from embedded.process import create_time, is_running
from embedded.state import ServicesState, load_state, save_state, state_path
from embedded.tansu import kafka_api_versions_ok
from stackwatch.settings import Settings, TopicSettings
from streams.faust_config import broker_url, faust_app_kwargs


def _record(name: str = "tansu", pid: int = 4242, port: int = 19092) -> ServiceRecord:
    return ServiceRecord.model_validate(
        {
            "name": name,
            "pid": pid,
            "create_time": 1_795_000_000.25,
            "host": "127.0.0.1",
            "port": port,
            "url": f"127.0.0.1:{port}",
            "log_file": "/tmp/x/logs/tansu.log",
            "started_at": datetime(2026, 11, 22, 19, 30, tzinfo=UTC),
        }
    )


# --- ports -------------------------------------------------------------------------------


def test_free_port_is_bindable_and_then_reported_busy() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not port_is_free("127.0.0.1", port)
        assert port_accepts("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)
    assert not port_accepts("127.0.0.1", port)


# --- state file --------------------------------------------------------------------------


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = ServicesState(services={"tansu": _record()})
    save_state(tmp_path, state)
    loaded = load_state(tmp_path)
    assert loaded == state
    assert loaded.services["tansu"].port == 19092
    assert loaded.services["tansu"].create_time == 1_795_000_000.25
    assert not list(tmp_path.glob("*.tmp"))  # the temp file was renamed into place


def test_missing_state_file_means_nothing_runs(tmp_path: Path) -> None:
    assert load_state(tmp_path).services == {}
    assert service_status(tmp_path) == []
    assert stop_services(tmp_path) == []


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"version": 1, "services": {"kafka": {}}}',  # unknown service name
        '{"version": 2, "services": {}}',  # unknown format version
        '{"version": 1, "services": {"tansu": {"pid": -1}}}',
    ],
)
def test_bad_state_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    state_path(tmp_path).write_text(content)
    with pytest.raises(StateFileError, match=r"services\.json is not a valid services state"):
        load_state(tmp_path)


def test_endpoints_from_state() -> None:
    pg = _record("postgres", 1, 5432).model_copy(
        update={"url": "postgresql://postgres@127.0.0.1:5432/stackwatch"}
    )
    endpoints = Endpoints.from_state(ServicesState(services={"tansu": _record(), "postgres": pg}))
    assert endpoints == Endpoints(
        kafka_bootstrap="127.0.0.1:19092",
        postgres_dsn="postgresql://postgres@127.0.0.1:5432/stackwatch",
        timescale_dsn=None,
    )


# --- process liveness --------------------------------------------------------------------


def test_pid_reuse_guard() -> None:
    me = os.getpid()
    started = create_time(me)
    assert started is not None
    assert is_running(me, started)
    assert not is_running(me, started - 3600.0)  # same PID, different process start


def test_dead_pid_is_reported_not_running(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(proc.stdout)
    save_state(tmp_path, ServicesState(services={"tansu": _record(pid=dead_pid, port=free_port())}))
    [row] = service_status(tmp_path)
    assert (row.name, row.running, row.healthy) == ("tansu", False, False)


# --- resolving endpoints from settings ---------------------------------------------------


def test_explicit_urls_win_over_the_state_file(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        kafka_bootstrap="kafka-1:9092",
        database_url=SecretStr("postgresql://u:p@db:5432/cems"),
    )
    assert resolve_kafka_bootstrap(settings) == "kafka-1:9092"
    assert resolve_database_url(settings) == "postgresql://u:p@db:5432/cems"


def test_no_embedded_service_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=None)
    with pytest.raises(ServiceError, match="stackwatch services up"):
        resolve_kafka_bootstrap(settings)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://postgres:postgres@127.0.0.1:5433/postgres?sslmode=disable",
            "postgresql://postgres:***@127.0.0.1:5433/postgres?sslmode=disable",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/stackwatch",
            "postgresql://postgres@127.0.0.1:5432/stackwatch",
        ),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert _redact(url) == shown


# --- Kafka ApiVersions probe bytes -------------------------------------------------------


def _one_shot_server(reply: bytes) -> tuple[int, list[bytes], threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                received.append(conn.recv(4096))
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], received, thread


def test_api_versions_request_bytes_and_ok_reply() -> None:
    # Response v0 header: size=6, correlation_id=212 (0xd4), error_code=0.
    port, received, thread = _one_shot_server(bytes.fromhex("00000006000000d40000"))
    assert kafka_api_versions_ok("127.0.0.1", port)
    thread.join(timeout=5)
    # Kafka request header v1: api_key=18 (ApiVersions), api_version=0, correlation_id=212,
    # client_id INT16 length 17 + "stackwatch-health"; body 2+2+4+2+17 = 27 = 0x1b bytes.
    assert received == [bytes.fromhex("0000001b00120000000000d40011") + b"stackwatch-health"]


def test_api_versions_error_code_is_unhealthy() -> None:
    port, _, thread = _one_shot_server(bytes.fromhex("00000006000000d40023"))  # 35
    assert not kafka_api_versions_ok("127.0.0.1", port)
    thread.join(timeout=5)


def test_api_versions_on_closed_port_is_unhealthy() -> None:
    assert not kafka_api_versions_ok("127.0.0.1", free_port(), timeout=0.5)


# --- Faust kwargs per broker profile -----------------------------------------------------


def test_faust_kwargs_tansu_profile(tmp_path: Path) -> None:
    settings = Settings(broker_profile="tansu", web_port=6123, topics=TopicSettings(partitions=3))
    kwargs = faust_app_kwargs(settings, broker="127.0.0.1:9092", app_id="sw", data_dir=tmp_path)
    assert kwargs == {
        "id": "sw",
        "broker": "kafka-stackwatch://127.0.0.1:9092",  # not idempotent (Tansu: no InitProducerId)
        "topic_replication_factor": 1,
        "producer_acks": -1,
        "datadir": str(tmp_path),
        "store": "memory://",
        "topic_partitions": 3,
        "web_host": "127.0.0.1",
        "web_bind": "127.0.0.1",
        "web_port": 6123,
        "stream_wait_empty": False,
        "producer_linger": 0.005,  # kafka.linger_ms: fewer, larger batches
        "producer_compression_type": "zstd",  # kafka.compression
        "Table": "streams.changelog_marker:MarkerAwareTable",
        "TableManager": "streams.changelog_marker:MarkedTableManager",
        "broker_session_timeout": 10.0,
        "broker_rebalance_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
    }


def test_faust_kwargs_kafka_profile_keeps_faust_defaults(tmp_path: Path) -> None:
    settings = Settings(broker_profile="kafka")
    kwargs = faust_app_kwargs(settings, broker="k1:9092,k2:9092", app_id="sw", data_dir=tmp_path)
    assert kwargs["broker"] == "kafka-idempotent://k1:9092;k2:9092"
    assert kwargs["store"] == "memory://"
    # Recovery reads up to a marker on every broker; producers batch on both profiles.
    assert kwargs["TableManager"] == "streams.changelog_marker:MarkedTableManager"
    assert "producer_max_batch_size" not in kwargs
    for tansu_only in (
        "broker_session_timeout",
        "broker_rebalance_timeout",
        "broker_heartbeat_interval",
    ):
        assert tansu_only not in kwargs


def test_faust_kwargs_reject_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="broker address is empty"):
        faust_app_kwargs(Settings(), broker=" ", app_id="sw", data_dir=tmp_path)
    with pytest.raises(ValueError, match="app_id is empty"):
        faust_app_kwargs(Settings(), broker="h:1", app_id="", data_dir=tmp_path)


def test_broker_url_passes_urls_through() -> None:
    assert broker_url("kafka://h:1") == "kafka://h:1"
