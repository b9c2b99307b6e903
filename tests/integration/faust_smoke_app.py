"""A tiny Faust app for the smoke test: a counting table and a tumbling event-time window.

Run as `python -m tests.integration.faust_smoke_app worker -l info` with SMOKE_* variables
(set by test_faust_smoke.py). After every event it writes both tables to SMOKE_SNAPSHOT
(JSON, atomically) so the test can read the state without a Kafka client of its own.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import FieldDescriptorT

from stackwatch.settings import Settings, TopicSettings
from streams.faust_config import faust_app_kwargs

WINDOW_S = 60.0

_settings = Settings(
    broker_profile="kafka" if os.environ.get("SMOKE_PROFILE") == "kafka" else "tansu",
    web_port=int(os.environ.get("SMOKE_WEB_PORT", "6066")),
    topics=TopicSettings(partitions=1),
)
app = faust.App(
    **faust_app_kwargs(
        _settings,
        broker=os.environ.get("SMOKE_BROKER", "127.0.0.1:9092"),
        app_id=os.environ.get("SMOKE_APP_ID", "stackwatch-smoke"),
        data_dir=Path(os.environ.get("SMOKE_DATA_DIR", ".stackwatch/faust-smoke")),
    )
)


class Event(faust.Record, serializer="json"):
    """One reading-like event: which stack, and its event time (epoch seconds)."""

    stack: str
    ts: float


events = app.topic(os.environ.get("SMOKE_TOPIC", "smoke.events"), value_type=Event)
totals = app.Table("totals", default=int)
per_minute = (
    app.Table("per_minute", default=int)
    .tumbling(WINDOW_S, expires=timedelta(days=1))
    .relative_to_field(cast(FieldDescriptorT[Any], Event.ts))  # a descriptor at class level
)


def _snapshot() -> dict[str, Any]:
    windows = {
        f"{key}@{int(window[0])}": count for (key, window), count in per_minute.table.data.items()
    }
    return {"totals": dict(totals.items()), "per_minute": windows}


def _write_snapshot() -> None:
    path = Path(os.environ.get("SMOKE_SNAPSHOT", "smoke-snapshot.json"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_snapshot(), sort_keys=True))
    tmp.replace(path)


@app.agent(events)
async def count(stream: faust.StreamT[Event]) -> None:
    """Count events per stack, in total and per event-time minute."""
    async for event in stream:
        totals[event.stack] += 1
        per_minute[event.stack] += 1
        _write_snapshot()


if __name__ == "__main__":
    app.main()
