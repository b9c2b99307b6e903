"""The worker's Kafka topics, declared once from `settings.topics`.

Every topic carries raw bytes (key = UTF-8 stack id, value = pydantic JSON) and is
(de)serialised by the agents themselves: a malformed record then becomes a dead letter with
its reason instead of a Faust deserialisation crash. All topics get
`settings.topics.partitions` partitions and are keyed by stack id (the raw topic too:
`Gateway.record_key`; an unregistered logger's MN is its stack id), so one stack's frames,
readings, state, commands and outputs live on the same partition number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import faust
from faust.types import TopicT

from stackwatch.settings import TopicSettings


@dataclass(frozen=True)
class Topics:
    """The Faust topic objects of one app."""

    raw: TopicT
    readings: TopicT
    minute: TopicT
    hour: TopicT
    day: TopicT
    alerts: TopicT
    alert_commands: TopicT
    deadletter: TopicT

    def for_period(self, period: str) -> TopicT | None:
        """The aggregates topic of `period` (minute/hour/day), None if unknown."""
        return {"minute": self.minute, "hour": self.hour, "day": self.day}.get(period)


def define_topics(
    app: faust.App, cfg: TopicSettings, *, config: Mapping[str, str] | None = None
) -> Topics:
    """Declare every topic on `app` with `cfg.partitions` partitions and raw serialisers.

    `config` is the broker-side topic configuration they are created with
    (`KafkaSettings.topic_config()`: `min.insync.replicas`).
    """

    def topic(name: str) -> TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=cfg.partitions,
            config=dict(config or {}),
        )

    return Topics(
        raw=topic(cfg.raw),
        readings=topic(cfg.readings),
        minute=topic(cfg.minute),
        hour=topic(cfg.hour),
        day=topic(cfg.day),
        alerts=topic(cfg.alerts),
        alert_commands=topic(cfg.alert_commands),
        deadletter=topic(cfg.deadletter),
    )
