"""Prometheus metrics of the storage writer (sinks worker).

Built on a caller-supplied `CollectorRegistry` so tests (and several apps in one process) never
share the global default registry; `stackwatch sinks run` exposes it with
`sinks.metrics_http.MetricsServer`. Label values are table/topic names and stable error kinds,
never free text, so cardinality stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Kinds of `stackwatch_sink_db_errors` (closed set).
DB_ERROR_KINDS = ("connection", "data", "unexpected")

#: Batch sizes are bounded by `--batch-size` (default 500); buckets cover 1 … 5000 records.
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
#: One staged COPY + INSERT … SELECT round; seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SinkMetrics:
    """The writer's counters, histograms and gauges."""

    def __init__(
        self, registry: CollectorRegistry | None = None, tables: Iterable[str] = ()
    ) -> None:
        """`tables`: the tables this process writes; their error and rejection series start
        at 0, so dashboards and alert rules see them before the first failure."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rows_written = Counter(
            "stackwatch_sink_rows_written",
            "Rows inserted or updated in the database, by table (a redelivered row that "
            "changes nothing is not counted).",
            ["table"],
            registry=self.registry,
        )
        self.rows_rejected = Counter(
            "stackwatch_sink_rows_rejected",
            "Records the database refused (constraint/data errors) or that did not parse; "
            "each is kept in dead_letters with the reason.",
            ["table"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "stackwatch_sink_batch_records",
            "Records per written batch, by table.",
            ["table"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "stackwatch_sink_write_seconds",
            "Wall time of one committed batch (COPY into staging, upsert, commit), by table.",
            ["table"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.db_errors = Counter(
            "stackwatch_sink_db_errors",
            "Database errors, by table and kind (connection = retried with backoff, "
            "data = the offending rows were dead-lettered).",
            ["table", "kind"],
            registry=self.registry,
        )
        self.db_up = Gauge(
            "stackwatch_sink_db_up",
            "1 while the last database operation succeeded, 0 while the writer is backing off.",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "stackwatch_sink_consumer_lag",
            "Records in the topic partition not yet committed to the database "
            "(broker high-water mark minus the next offset to write).",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.db_up.set(1)
        for table in tables:
            self.rows_rejected.labels(table)
            for kind in DB_ERROR_KINDS:
                self.db_errors.labels(table, kind)
