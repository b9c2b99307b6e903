"""Gateway counters, kept in plain Python and mirrored to Prometheus when a registry is given.

The plain counters let tests and the demo read figures without a metrics server; the metrics
work exports the same figures by passing its own `CollectorRegistry` (never the global one, so
several gateways and tests can coexist in one process).
"""

from __future__ import annotations

from collections import Counter as TallyCounter

from prometheus_client import CollectorRegistry, Counter, Gauge

from stackwatch.models import Verdict

#: Label value for frames that carry no reason (accepted, nothing to warn about).
NO_REASON = "none"
#: Every `action` label of `stackwatch_gateway_guard_total` (closed set: series exist at 0).
GUARD_ACTIONS = ("banned", "locked_out", "banned_ip", "max_connections_per_ip",
                 "too_many_rejects", "rate_limited")


class GatewayStats:
    """Frame and connection counters of one gateway instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.frames_received = 0
        self.frames_accepted = 0
        self.frames_rejected = 0
        self.rejected_by_reason: TallyCounter[str] = TallyCounter()
        self.acks_sent = 0
        self.produce_failures = 0
        self.connections_active = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.idle_timeouts = 0
        self.history_requests: TallyCounter[str] = TallyCounter()
        self.security_alerts: TallyCounter[str] = TallyCounter()
        self.guard_actions: TallyCounter[str] = TallyCounter()
        self._security: Counter | None = None
        self._guard: Counter | None = None
        self._frames: Counter | None = None
        self._history: Counter | None = None
        self._connections: Gauge | None = None
        self._acks: Counter | None = None
        self._produce_failures: Counter | None = None
        self._refused: Counter | None = None
        self._idle: Counter | None = None
        if registry is not None:
            self._frames = Counter(
                "stackwatch_gateway_frames_total",
                "HJ 212 frames received by the gateway, by verdict and (first) reason.",
                ["verdict", "reason"],
                registry=registry,
            )
            self._connections = Gauge(
                "stackwatch_gateway_connections",
                "Data-logger TCP connections currently open.",
                registry=registry,
            )
            self._acks = Counter(
                "stackwatch_gateway_acks_total",
                "9014 data answers sent after Kafka acknowledged the frame.",
                registry=registry,
            )
            self._produce_failures = Counter(
                "stackwatch_gateway_produce_failures_total",
                "Frames Kafka did not acknowledge (not answered; the logger re-sends).",
                registry=registry,
            )
            self._refused = Counter(
                "stackwatch_gateway_connections_refused_total",
                "Connections closed at once because max_connections was reached.",
                registry=registry,
            )
            self._history = Counter(
                "stackwatch_gateway_history_requests_total",
                "History requests to loggers (sent, rate_limited, not_connected, write_failed).",
                ["outcome"],
                registry=registry,
            )
            self._idle = Counter(
                "stackwatch_gateway_idle_timeouts_total",
                "Connections closed because no complete frame arrived within idle_timeout_s.",
                registry=registry,
            )
            self._security = Counter(
                "stackwatch_gateway_security_alerts_total",
                "Security alerts: an MN or a source IP banned for guessing passwords (scope).",
                ["scope"],
                registry=registry,
            )
            self._guard = Counter(
                "stackwatch_gateway_guard_total",
                "What the gateway's guard did: frames refused unchecked (banned, locked_out), "
                "connections refused (banned_ip, max_connections_per_ip) or closed "
                "(too_many_rejects), reads delayed by the per-IP rate limit (rate_limited).",
                ["action"],
                registry=registry,
            )
            for scope in ("mn", "ip"):
                self._security.labels(scope=scope)
            for action in GUARD_ACTIONS:
                self._guard.labels(action=action)

    def history_request(self, outcome: str) -> None:
        """Count one history request by its outcome."""
        self.history_requests[outcome] += 1
        if self._history is not None:
            self._history.labels(outcome=outcome).inc()

    def frame(self, verdict: Verdict, reason: str | None) -> None:
        """Count one received frame under its verdict and first reason."""
        self.frames_received += 1
        label = reason or NO_REASON
        if verdict is Verdict.ACCEPTED:
            self.frames_accepted += 1
        else:
            self.frames_rejected += 1
            self.rejected_by_reason[label] += 1
        if self._frames is not None:
            self._frames.labels(verdict=verdict.value, reason=label).inc()

    def ack_sent(self) -> None:
        """Count one 9014 answer written to a logger."""
        self.acks_sent += 1
        if self._acks is not None:
            self._acks.inc()

    def produce_failed(self) -> None:
        """Count one frame whose produce Kafka did not acknowledge."""
        self.produce_failures += 1
        if self._produce_failures is not None:
            self._produce_failures.inc()

    def connection_opened(self) -> None:
        """A logger connected (and was admitted)."""
        self.connections_total += 1
        self.connections_active += 1
        if self._connections is not None:
            self._connections.inc()

    def connection_closed(self) -> None:
        """An admitted connection ended, for whatever reason."""
        self.connections_active -= 1
        if self._connections is not None:
            self._connections.dec()

    def connection_refused(self) -> None:
        """A connection was closed at once because the gateway is full."""
        self.connections_refused += 1
        if self._refused is not None:
            self._refused.inc()

    def idle_timeout(self) -> None:
        """A connection was closed for idling (or dribbling bytes without a frame)."""
        self.idle_timeouts += 1
        if self._idle is not None:
            self._idle.inc()

    def security_alert(self, scope: str) -> None:
        """An MN or a source IP was banned for guessing passwords."""
        self.security_alerts[scope] += 1
        if self._security is not None:
            self._security.labels(scope=scope).inc()

    def guard(self, action: str) -> None:
        """The guard refused, closed or slowed something (`GUARD_ACTIONS`)."""
        self.guard_actions[action] += 1
        if self._guard is not None:
            self._guard.labels(action=action).inc()
