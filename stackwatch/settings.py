"""One typed configuration object for every stackwatch process.

Values come from `STACKWATCH_*` environment variables (nested groups use a double
underscore, e.g. `STACKWATCH_GATEWAY__PORT=9212`) or an optional `.env` file. Secrets are
`SecretStr` so they never appear in logs or reprs. Every field is documented in the README.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
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


class KafkaSettings(BaseModel):
    """Durability of the topics stackwatch creates and of its producers.

    The defaults suit one broker (the embedded Tansu, a laptop). A production cluster of three
    brokers sets `replication_factor=3` and `min_insync_replicas=2`: with `acks=all`, a
    frame is acknowledged to its logger only once two brokers hold it.
    """

    replication_factor: int = Field(
        default=1, ge=1, description="Replicas of every topic stackwatch creates (3 in a cluster)."
    )
    min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="`min.insync.replicas` of the topics stackwatch creates: replicas that must "
        "hold a record before `acks=all` succeeds (2 with 3 replicas).",
    )
    idempotent_producers: bool | None = Field(
        default=None,
        description="Producers use Kafka's idempotence (no duplicate on a retried send). "
        "None = on with the 'kafka' profile, off with 'tansu' (the embedded broker answers "
        "InitProducerId with an error, measured).",
    )
    linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="How long the gateway's and the Faust apps' producers wait to fill a batch. "
        "Fewer, larger batches: the embedded Tansu lists every batch of a partition on each "
        "fetch, so its cost grows with the number of batches (measured at 300 frames/s: broker "
        "CPU 78 % with 0 ms, 53 % with 5 ms and fetch_min_bytes 64 KiB).",
    )
    fetch_min_bytes: int = Field(
        default=65536,
        ge=1,
        description="Data a Faust consumer's fetch waits for on the broker, at most 100 ms "
        "(`streams.kafka_transport.FETCH_MAX_WAIT_MS`): under load one fetch takes many "
        "records instead of a request per record; when idle a hop waits up to 100 ms.",
    )

    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd",
        description="Compression of the producers' record batches (gateway, worker, sinks). "
        "A stack's state is JSON that repeats its timestamps: zstd writes a 12.7 KB state in "
        "1.3 KB (9.9×, 34 µs; lz4 5.9×, gzip 8.3×, measured). The embedded Tansu keeps "
        "every batch in memory, so its memory and its work per byte shrink alike. 'none' for "
        "a broker older than Kafka 2.1 (no zstd).",
    )

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"kafka.min_insync_replicas ({self.min_insync_replicas}) exceeds "
                f"kafka.replication_factor ({self.replication_factor}): no write could succeed"
            )
        return self

    def topic_config(self) -> dict[str, str]:
        """Broker-side configuration of every topic stackwatch creates."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    def idempotence(self, profile: BrokerProfile) -> bool:
        """Whether producers ask for idempotence on this broker profile."""
        if self.idempotent_producers is not None:
            return self.idempotent_producers
        return profile == "kafka"

    def producer_options(self, profile: BrokerProfile) -> dict[str, Any]:
        """aiokafka `AIOKafkaProducer` keyword arguments for durable sends."""
        return {
            "acks": "all",
            "enable_idempotence": self.idempotence(profile),
            "compression_type": self.compression_type(),
        }

    def compression_type(self) -> str | None:
        """aiokafka's / Faust's `compression_type` for `compression` (None = uncompressed)."""
        return None if self.compression == "none" else self.compression


class GatewayGuardSettings(BaseModel):
    """Password guessing, floods and hostile peers at the gateway (docs/security.md)."""

    free_attempts: int = Field(
        default=3, ge=1,
        description="Wrong passwords per MN (and per source IP) before back-off starts.",
    )
    hash_threads: int = Field(
        default=2, ge=1,
        description="Passwords checked at once (scrypt, about 37 ms each on one core, the GIL "
        "released). A logger's first frame after a gateway (re)start waits for its check: "
        "with 5,000 loggers reconnecting, 2 threads take about 95 s, 1 about 190 s.",
    )
    backoff_base_s: float = Field(
        default=2.0, ge=0,
        description="Back-off after the free attempts, doubled by each further wrong password; "
        "frames inside it are refused without checking the password. 0 = no back-off.",
    )
    backoff_max_s: float = Field(default=300.0, gt=0, description="Longest back-off.")
    ban_after: int = Field(
        default=10, ge=1,
        description="Wrong passwords within window_s that ban the MN (or the source IP) and "
        "raise a security alert.",
    )
    ban_s: float = Field(default=900.0, gt=0, description="How long a ban lasts.")
    window_s: float = Field(
        default=3600.0, gt=0, description="Wrong passwords older than this are forgotten."
    )
    max_tracked: int = Field(
        default=100_000, ge=100,
        description="MNs/IPs with recent wrong passwords kept in memory before idle ones are "
        "pruned.",
    )
    max_connections_per_ip: int = Field(
        default=256, ge=1, description="Concurrent connections from one source IP."
    )
    frames_per_s_per_ip: float = Field(
        default=500.0, gt=0,
        description="Frames per second one source IP may send (token bucket); beyond it the "
        "gateway reads that IP's sockets more slowly (TCP backpressure), nothing is refused.",
    )
    burst_per_ip: int = Field(
        default=1000, ge=1, description="Frames one source IP may send at once (bucket size)."
    )
    exempt_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Sources exempt from the per-IP limits and bans (replays and benchmarks "
        "on this host); per-MN limits still apply. Empty it behind a proxy on this host.",
    )
    max_consecutive_rejects: int = Field(
        default=100, ge=1,
        description="Close a connection after this many rejected units in a row.",
    )
    garbage_flush_s: float = Field(
        default=1.0, gt=0,
        description="Rejected units without an MN (garbage) from one connection are coalesced "
        "into one record per burst: flushed after this long, at 16 KiB, or when a frame follows.",
    )
    log_interval_s: float = Field(
        default=10.0, ge=0,
        description="At most one 'frame rejected' log line per connection per interval; the "
        "next line says how many were held back.",
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
    guard: GatewayGuardSettings = GatewayGuardSettings()


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
        default=0.25,
        gt=0,
        description="…or this long after its first record, whichever comes first. Alerts do "
        "not wait for it; a crash re-processes at most checkpoints_in_flight + 1 checkpoints "
        "of records (results stay exact).",
    )
    checkpoints_in_flight: int = Field(
        default=2,
        ge=1,
        description="Checkpoints whose deliveries may still be outstanding while the agent "
        "applies the next records (acknowledged in order). Measured at 500 frames/s offered, "
        "one worker: 1 in flight with 0.2 s checkpoints processed ~280 frames/s (the agent "
        "waited 1.3–2 s of every 10 s), 1 with 0.5 s ~390, 2 with 0.25 s ~430.",
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


class DatabaseLoginSettings(BaseModel):
    """Login users that `stackwatch db logins` creates or updates in the group roles of
    migration 0011 (least privilege: the processes and Grafana never log in as the owner)."""

    writer_user: str = Field(
        default="stackwatch_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Login of the sinks, alert dispatcher and ack API (role stackwatch_writer).",
    )
    writer_password: SecretStr | None = Field(
        default=None, description="Its password. None = the writer login is left alone."
    )
    reader_user: str = Field(
        default="stackwatch_grafana",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Login of Grafana's datasource (role stackwatch_reader: no raw frame text, "
        "no dead-letter payloads, no password hashes).",
    )
    reader_password: SecretStr | None = Field(
        default=None, description="Its password. None = the reader login is left alone."
    )


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


class HeartbeatSettings(BaseModel):
    """Dead man's switch: a periodic "stackwatch is alive" message (docs/notifications.md), so
    a recipient who stops receiving it knows the notification path is down."""

    group: str | None = Field(
        default=None,
        description="Recipient group of the routing file that receives the heartbeat. "
        "None = no heartbeat.",
    )
    interval: timedelta = Field(
        default=timedelta(hours=1),
        gt=timedelta(0),
        description="One heartbeat per interval (ISO 8601, e.g. PT1H), at the start of each "
        "interval counted from the Unix epoch; an undelivered one expires when the next is due.",
    )


class NotifySettings(BaseModel):
    """Notification delivery through the durable outbox (`stackwatch alerts dispatch`,
    docs/notifications.md)."""

    max_age: timedelta = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="A message still undelivered this long after it was decided is marked "
        "expired (logged, counted in stackwatch_notifications_expired_total) instead of retried.",
    )
    retry_initial_s: float = Field(
        default=5.0, gt=0, description="Wait after a destination's first failed attempt (s)."
    )
    retry_factor: float = Field(
        default=2.0, ge=1, description="Each further failure multiplies the wait by this."
    )
    retry_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait between two attempts to one destination (s)."
    )
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="How often the delivery worker looks for due messages (s)."
    )
    heartbeat: HeartbeatSettings = HeartbeatSettings()

    @model_validator(mode="after")
    def _first_wait_within_cap(self) -> NotifySettings:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"notify.retry_initial_s ({self.retry_initial_s}) must not exceed "
                f"notify.retry_max_s ({self.retry_max_s})"
            )
        return self


class AckApiSettings(BaseModel):
    """The acknowledgement HTTP API (`stackwatch alerts api`, docs/notifications.md): who may
    acknowledge, how often, and its database pool."""

    users: dict[str, str] = Field(
        default_factory=dict,
        description="Personal API tokens as a JSON object: SHA-256 of the token (64 hex digits, "
        "`stackwatch alerts hash-token`) → the person's name, recorded as who acknowledged. "
        "Acknowledging needs one of these; STACKWATCH_API_TOKEN only lists alerts.",
    )
    rate_per_minute: float = Field(
        default=30.0, gt=0, description="Requests per minute per person (per client IP before "
        "authentication); over it: 429 with Retry-After."
    )
    rate_burst: int = Field(
        default=10, ge=1, description="Requests allowed at once before the per-minute rate applies."
    )
    pool_max_size: int = Field(
        default=4, ge=1, description="Database connections the API keeps at most (pool)."
    )

    @field_validator("users")
    @classmethod
    def _hashed(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for digest, person in value.items():
            key = digest.strip().lower()
            if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
                raise ValueError("users: keys must be SHA-256 hex digests of tokens, not tokens")
            if not 1 <= len(person.strip()) <= 100:
                raise ValueError("users: names must be 1-100 characters")
            out[key] = person.strip()
        return out


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
        description="'tansu' applies the embedded broker's workarounds (short session and "
        "rebalance timeouts, producers not idempotent); 'kafka' keeps Faust's defaults. "
        "Producers batch on both (tables recover up to a marker, not the end offset).",
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
    web_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the Faust web, metrics and ack API endpoints; 0.0.0.0 only "
        "inside a container whose ports are published on loopback (compose).",
    )
    grafana_url: str = Field(
        default="http://localhost:3000",
        description="Base URL used for links in alert notifications.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Shared bearer token of the acknowledgement API: lists alerts, cannot "
        "acknowledge (that needs a personal token, STACKWATCH_ACK_API__USERS).",
    )
    topics: TopicSettings = TopicSettings()
    kafka: KafkaSettings = KafkaSettings()
    gateway: GatewaySettings = GatewaySettings()
    streams: StreamSettings = StreamSettings()
    smtp: SmtpSettings = SmtpSettings()
    ack_page: AckPageSettings = AckPageSettings()
    notify: NotifySettings = NotifySettings()
    ack_api: AckApiSettings = AckApiSettings()
    db: DatabaseLoginSettings = DatabaseLoginSettings()

    def resolved_data_dir(self) -> Path:
        """Absolute data directory (created on demand by the services module)."""
        return self.data_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
