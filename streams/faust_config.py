"""Faust application settings for stackwatch, with the broker profile applied.

Every stackwatch Faust app is built from `faust_app_kwargs(...)` so the broker quirks are
handled in one place:

- Tables use `store="memory://"` (no RocksDB binding is a stackwatch dependency) and are
  rebuilt from their changelog topics on every start and rebalance.
- The web server binds `settings.web_host` (127.0.0.1 by default), never 0.0.0.0
  (Faust's `web_bind` default is all interfaces).
- `stream_wait_empty=False`: shutdown and rebalances commit what was acknowledged and go
  on; records of an unfinished checkpoint are processed again (see `streams/checkpoint.py`).
- `topic_partitions` comes from settings so changelog topics match the source topics'
  partition count (a Faust requirement for co-partitioned tables).

- Tables recover up to a marker record produced at recovery start, not up to the broker's
  end offset (`streams/changelog_marker.py`): Tansu answers ListOffsets(latest) with the last
  *batch's* base offset + 1, so with batching producers the reported end is short of the real
  one (measured: 10 records in one batch → end offset 1). The marker's acknowledged offset is
  exact on any broker, so producers batch normally on both profiles.

Durability comes from `settings.kafka`: the replication factor of every topic (and of the
tables' changelogs), their `min.insync.replicas` (`streams/topics.py`), `acks=all`, and an
idempotent producer on real Kafka (`streams/kafka_transport.py`).

Profile "tansu" (the embedded broker, measured):
- `broker_session_timeout=10`, `broker_rebalance_timeout=10`: Tansu makes a group join wait
  half the session timeout (Faust's defaults 60 s / 60 s mean ~30 s per join).
- `broker_heartbeat_interval=1`: must stay well below the shortened session timeout.
Profile "kafka": Faust's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import faust

from stackwatch.settings import BrokerProfile, Settings
from streams import kafka_transport

#: Overrides applied when `settings.broker_profile == "tansu"` (see module docstring).
TANSU_PROFILE: Final[dict[str, Any]] = {
    "broker_session_timeout": 10.0,
    "broker_rebalance_timeout": 10.0,
    "broker_heartbeat_interval": 1.0,
}

_PROFILES: Final[dict[BrokerProfile, dict[str, Any]]] = {"tansu": TANSU_PROFILE, "kafka": {}}


def broker_url(broker: str, *, idempotent: bool = False) -> str:
    """`host:port[,host:port]` → `kafka://host:port[;host:port]`; URLs pass through.

    Both schemes are `streams.kafka_transport`'s (consumers that do not wait 1.5 s on an empty
    fetch); `idempotent` picks the one whose producer is idempotent.
    """
    broker = broker.strip()
    if not broker:
        raise ValueError("broker address is empty")
    if "://" in broker:
        return broker
    kafka_transport.register()
    scheme = kafka_transport.IDEMPOTENT_SCHEME if idempotent else kafka_transport.SCHEME
    return f"{scheme}://" + ";".join(part.strip() for part in broker.split(",") if part.strip())


def faust_app_kwargs(
    settings: Settings, *, broker: str, app_id: str, data_dir: Path
) -> dict[str, Any]:
    """Keyword arguments for `faust.App(**kwargs)`: common settings plus the broker profile."""
    if not app_id.strip():
        raise ValueError("app_id is empty")
    kwargs: dict[str, Any] = {
        "id": app_id,
        "broker": broker_url(
            broker, idempotent=settings.kafka.idempotence(settings.broker_profile)
        ),
        "topic_replication_factor": settings.kafka.replication_factor,
        "producer_acks": -1,  # acks=all: a record is durable on min.insync.replicas brokers
        "datadir": str(data_dir),
        "store": "memory://",
        "topic_partitions": settings.topics.partitions,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        # Records are acknowledged per checkpoint (streams/checkpoint.py) and a record that was
        # not acknowledged is processed again after a restart or rebalance, so shutdown and
        # revocation must not wait for the pending ones (Faust's default waits, and measured:
        # SIGTERM then hung on records re-delivered and refused by the continuity guard, or
        # pending when the checkpoint timer had already stopped).
        "stream_wait_empty": False,
        "producer_linger": settings.kafka.linger_ms / 1000.0,
        "producer_compression_type": settings.kafka.compression_type(),
        "Table": "streams.changelog_marker:MarkerAwareTable",
        "TableManager": "streams.changelog_marker:MarkedTableManager",
    }
    kwargs.update(_PROFILES[settings.broker_profile])
    return kwargs


def create_faust_app(
    settings: Settings, *, broker: str, app_id: str, data_dir: Path, **overrides: Any
) -> faust.App:
    """A Faust app from `faust_app_kwargs` (and `overrides`), its consumers fetching
    `kafka.fetch_min_bytes`."""
    kwargs = faust_app_kwargs(settings, broker=broker, app_id=app_id, data_dir=data_dir)
    app = faust.App(**(kwargs | overrides))
    kafka_transport.set_fetch_min_bytes(app, settings.kafka.fetch_min_bytes)
    return app
