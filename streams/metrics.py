"""Prometheus counters of the stream worker (readings, aggregates, alerts, dead letters).

Built on a caller-supplied `CollectorRegistry` so tests (and several apps in one process)
never share the global default registry; the worker exposes it on `settings.metrics_port`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class WorkerMetrics:
    """The worker's counters; label values are stable codes, never free text."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.readings = Counter(
            "stackwatch_readings_total",
            "Readings decoded from frames by the worker, by upload kind.",
            ["kind"],
            registry=self.registry,
        )
        self.aggregates = Counter(
            "stackwatch_aggregates_total",
            "Aggregates emitted, by period (minute/hour/day).",
            ["period"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "stackwatch_alert_events_total",
            "Alert lifecycle events emitted, by rule and kind.",
            ["rule", "kind"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "stackwatch_dead_letters_total",
            "Records sent to the dead-letter topic, by stage and reason.",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.readings_not_flue_gas = Counter(
            "stackwatch_readings_not_flue_gas_total",
            "Readings of other systems (wastewater, …) kept but not averaged, by HJ 212 ST.",
            ["st"],
            registry=self.registry,
        )
        self.gateway_rejected = Counter(
            "stackwatch_raw_rejected_total",
            "Raw records the gateway had refused (dead-lettered there), skipped by decode.",
            ["reason"],
            registry=self.registry,
        )
        self.commands = Counter(
            "stackwatch_alert_commands_total",
            "Alert commands handled, by outcome (applied/duplicate/rejected).",
            ["outcome"],
            registry=self.registry,
        )
        # A closed label set starts at 0, so dashboards and alert rules see a series before
        # the first command arrives (Prometheus practice: initialise known label values).
        for outcome in ("applied", "duplicate", "rejected"):
            self.commands.labels(outcome=outcome)
        self.process_seconds = Histogram(
            "stackwatch_process_seconds",
            "Wall time to process one reading (domain call, emits, state write).",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
