"""One typed configuration object for every stackwatch process.

Values come from `STACKWATCH_*` environment variables (nested groups use a double
underscore, e.g. `STACKWATCH_GATEWAY__PORT=9212`) or an optional `.env` file. Secrets are
`SecretStr` so they never appear in logs or reprs. Every field is documented in the README.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from stackwatch.history_requests import HistorySettings
from stackwatch.normalise import NormaliseConfig
from stackwatch.processor import ProcessorConfig

BrokerProfile = Literal["tansu", "kafka"]


class TopicSettings(BaseModel):
    """Kafka topic names and partition count (see README "Topics")."""

    raw: str = Field(default="stackwatch.raw", description="Every received frame (RawFrame).")
    readings: str = Field(default="stackwatch.readings", description="Normalised readings.")
    minute: str = Field(default="stackwatch.minute", description="Minute aggregates.")
    hour: str = Field(default="stackwatch.hour", description="Hour aggregates.")
    day: str = Field(default="stackwatch.day", description="Day aggregates.")
    alerts: str = Field(default="stackwatch.alerts", description="Alert lifecycle events.")
    alert_commands: str = Field(
        default="stackwatch.alert-commands", description="Acknowledgement commands."
    )
    deadletter: str = Field(
        default="stackwatch.deadletter", description="Anything refused, with the reason."
    )
    gateway_commands: str = Field(
        default="stackwatch.gateway-commands",
        description="Operators' requests to gateways (a logger's history of a time range).",
    )
    partitions: int = Field(
        default=4,
        ge=1,
        description="Partitions of every stackwatch topic. All topics are keyed by stack, so "
        "the same partition count keeps one stack's data co-partitioned across stages.",
    )


class GatewaySettings(BaseModel):
    """HJ 212 TCP gateway."""

    host: str = Field(default="127.0.0.1", description="Listen address (0.0.0.0 in compose).")
    port: int = Field(default=9212, description="HJ 212 TCP port loggers connect to.")
    idle_timeout_s: float = Field(default=300.0, gt=0, description="Close idle connections.")
    max_connections: int = Field(default=5000, ge=1, description="Concurrent loggers.")
    registry_file: Path | None = Field(
        default=None,
        description="YAML stack registry (MN, password, sector, process). None = built-in demo.",
    )
    auto_register: bool = Field(
        default=False,
        description="Accept unknown MNs (replay of foreign captures) instead of rejecting them.",
    )
    max_inflight_per_connection: int = Field(
        default=32,
        ge=1,
        description="Frames one connection may have between socket read and broker ack; "
        "when spent, the gateway stops reading that socket (backpressure).",
    )
    max_inflight_total: int = Field(
        default=4096,
        ge=1,
        description="Frames all connections together may have in flight (bounds memory).",
    )
    history: HistorySettings = HistorySettings()


class StreamSettings(BaseModel):
    """Stream worker: timers and the domain configuration its agents apply."""

    tick_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Timer period that closes idle windows and detects offline loggers.",
    )
    checkpoint_records: int = Field(
        default=500,
        ge=1,
        description="A checkpoint (state saved, deliveries awaited, offsets acknowledged) "
        "after this many records…",
    )
    checkpoint_interval_s: float = Field(
        default=0.2,
        gt=0,
        description="…or this long after its first record, whichever comes first. A crash "
        "re-processes at most one checkpoint of records (results stay exact).",
    )
    clock_reference: Literal["peers", "receipt"] = Field(
        default="peers",
        description="What a logger's clock is judged against: 'peers' = the consensus of the "
        "other loggers' clocks (right live and in replays of history; needs 5 loggers), "
        "'receipt' = the platform's own receive time (sites with only a few loggers).",
    )
    clock_min_peers: int = Field(
        default=5, ge=2, description="Loggers needed before 'peers' judges any clock."
    )
    idle_flush_s: float | None = Field(
        default=120.0,
        gt=0,
        description="When no reading has arrived for this long (a replay has ended), emit every "
        "open hour and day once; data arriving later re-emits them. None = never.",
    )
    processor: ProcessorConfig = ProcessorConfig()
    normalise: NormaliseConfig = NormaliseConfig()


class SmtpSettings(BaseModel):
    """Outgoing mail server for alert e-mails (`STACKWATCH_SMTP__HOST`, …)."""

    host: str | None = Field(default=None, description="SMTP server. None = e-mail disabled.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    username: str | None = Field(default=None, description="SMTP login (None = no AUTH).")
    password: SecretStr | None = Field(default=None, description="SMTP password.")
    starttls: bool = Field(default=True, description="Upgrade with STARTTLS (port 587).")
    use_tls: bool = Field(default=False, description="Implicit TLS from the start (port 465).")
    sender: str = Field(
        default="stackwatch <stackwatch@localhost>", description="From: of alert e-mails."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="SMTP connect/send timeout.")


class AckPageSettings(BaseModel):
    """Acknowledge-from-the-message: signed per-recipient links and the page they open
    (`STACKWATCH_ACK_PAGE__SECRET`, …; docs/ack-page.md)."""

    enabled: bool = Field(
        default=False,
        description="Put a signed acknowledgement link for its recipient in every "
        "notification, and serve the page from `stackwatch alerts api`. Needs `secret`.",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Signing key of the links (at least 32 random characters; the same in "
        "the dispatcher and the page). No default: refused unless --insecure-dev.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:6068",
        description="Public URL of the page as recipients' phones reach it (links are "
        "<base_url>/ack/<alert id>/<token>).",
    )
    host: str = Field(default="127.0.0.1", description="Bind address of the page.")
    port: int = Field(default=6068, ge=1, le=65535, description="Port of the page.")
    lifetime_h: float = Field(
        default=72.0, gt=0, description="Hours a link stays valid after it was sent."
    )
    trend_hours: int = Field(
        default=24, ge=2, le=168, description="Hours of hourly values in the page's trend chart."
    )


class Settings(BaseSettings):
    """All stackwatch configuration."""

    model_config = SettingsConfigDict(
        env_prefix="STACKWATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(
        default=Path(".stackwatch"),
        description="Where the embedded services keep data, logs and PID files.",
    )
    broker_profile: BrokerProfile = Field(
        default="tansu",
        description="'tansu' applies the embedded broker's workarounds (one record per producer "
        "batch, short session timeouts); 'kafka' keeps Faust's normal batching.",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port of the Kafka broker. None = the embedded Tansu started by "
        "`stackwatch services up` (read from the data directory).",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB DSN. None = the embedded PostgreSQL 18.",
    )
    timescale_url: SecretStr | None = Field(
        default=None,
        description="DSN of a TimescaleDB used only to prove Timescale SQL (PGlite). Optional.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["json", "console"] = Field(
        default="console", description="json = one JSON object per line (production)."
    )
    metrics_port: int = Field(default=9308, description="Prometheus endpoint of a worker.")
    web_port: int = Field(default=6066, description="Faust web / alert acknowledgement port.")
    web_host: str = Field(default="127.0.0.1", description="Faust web binds here, never 0.0.0.0.")
    grafana_url: str = Field(
        default="http://localhost:3000",
        description="Base URL used for links in alert notifications.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the acknowledgement endpoint. Required in production.",
    )
    topics: TopicSettings = TopicSettings()
    gateway: GatewaySettings = GatewaySettings()
    streams: StreamSettings = StreamSettings()
    smtp: SmtpSettings = SmtpSettings()
    ack_page: AckPageSettings = AckPageSettings()

    def resolved_data_dir(self) -> Path:
        """Absolute data directory (created on demand by the services module)."""
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
