"""The storage writer's input and output: topic records, their parsing, and batch outcomes.

A batch of one topic (:class:`SinkKind`) arrives as :class:`SourceRecord`\\ s; each is parsed
into its contract and mapped (:mod:`sinks.rows`) to the rows of one or more
:mod:`sinks.targets` (:class:`Item`). A record that does not parse or map becomes a
:class:`Rejection`, kept in dead_letters with the reason; it never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sinks.rows import (
    MappingError,
    Row,
    aggregate_row,
    alert_row,
    dead_letter_row,
    raw_frame_row,
    reading_rows,
    verdict_rows,
)
from sinks.sanitize import decode_text
from sinks.targets import TARGETS, Target
from stackwatch.models import AggregateRecord, AlertEvent, DeadLetter, RawFrame, Reading

__all__ = [
    "BatchResult",
    "Item",
    "Rejection",
    "SinkKind",
    "SourceRecord",
    "parse_records",
    "reject",
]

log = logging.getLogger(__name__)


class SinkKind(StrEnum):
    """What a topic carries, i.e. which mapping applies (one agent per topic)."""

    RAW = "raw"
    READINGS = "readings"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    ALERTS = "alerts"
    DEADLETTER = "deadletter"

    @property
    def table(self) -> str:
        """The primary table of this kind (metrics label of batch size/latency)."""
        return _KIND_TABLE[self]


_KIND_TABLE: dict[SinkKind, str] = {
    SinkKind.RAW: "raw_frames",
    SinkKind.READINGS: "readings",
    SinkKind.MINUTE: "minute_aggregates",
    SinkKind.HOUR: "hour_aggregates",
    SinkKind.DAY: "day_aggregates",
    SinkKind.ALERTS: "alerts",
    SinkKind.DEADLETTER: "dead_letters",
}


class SourceRecord(BaseModel):
    """One Kafka record as the writer needs it: payload plus where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp: datetime | None = Field(
        default=None, description="Broker timestamp; makes sink dead letters replay-stable."
    )


class Rejection(BaseModel):
    """A record that could not be stored where it belongs; it is kept in dead_letters."""

    model_config = ConfigDict(frozen=True)

    reason: str
    table: str
    payload: str
    key: str | None
    occurred_at: datetime
    details: dict[str, str] = Field(default_factory=dict)


class BatchResult(BaseModel):
    """Outcome of one committed batch."""

    records: int = 0
    rows_written: dict[str, int] = Field(
        default_factory=dict, description="Rows inserted or updated per table."
    )
    rejected: list[Rejection] = Field(default_factory=list)
    skipped: int = Field(default=0, description="Records that map to no row (event readings).")


@dataclass
class Item:
    """The rows one source record becomes (all in one target)."""

    source: SourceRecord
    target: Target
    rows: list[Row]


def _now() -> datetime:
    return datetime.now(UTC)


def reject(source: SourceRecord, table: str, reason: str, **details: str) -> Rejection:
    """The rejection of `source` for `table`: its payload, key and origin, and the reason."""
    info = {"table": table, **details}
    if source.topic:
        info |= {
            "topic": source.topic,
            "partition": str(source.partition),
            "offset": str(source.offset),
        }
    return Rejection(
        reason=reason[:2000],
        table=table,
        payload=decode_text(source.value),
        key=decode_text(source.key) if source.key is not None else None,
        occurred_at=source.timestamp or _now(),
        details=info,
    )


_MODELS: dict[SinkKind, type[BaseModel]] = {
    SinkKind.RAW: RawFrame,
    SinkKind.READINGS: Reading,
    SinkKind.MINUTE: AggregateRecord,
    SinkKind.HOUR: AggregateRecord,
    SinkKind.DAY: AggregateRecord,
    SinkKind.ALERTS: AlertEvent,
    SinkKind.DEADLETTER: DeadLetter,
}


def _to_items(kind: SinkKind, source: SourceRecord, model: BaseModel) -> list[Item]:
    if isinstance(model, RawFrame):
        return [Item(source, TARGETS["raw_frames"], [raw_frame_row(model)])]
    if isinstance(model, Reading):
        return [Item(source, TARGETS["readings"], reading_rows(model))]
    if isinstance(model, AggregateRecord):
        table, row = aggregate_row(model)
        items = [Item(source, TARGETS[table], [row])]
        if model.verdicts:
            items.append(Item(source, TARGETS["limit_verdicts"], verdict_rows(model)))
        return items
    if isinstance(model, AlertEvent):
        return [Item(source, TARGETS["alerts"], [alert_row(model)])]
    if isinstance(model, DeadLetter):
        return [Item(source, TARGETS["dead_letters"], [dead_letter_row(model)])]
    raise MappingError(f"no mapping for {type(model).__name__}")  # pragma: no cover


def parse_records(
    kind: SinkKind, records: Sequence[SourceRecord]
) -> tuple[list[Item], list[Rejection], int]:
    """Parse and map a batch: (items with rows, rejections, records that map to no row)."""
    model_cls = _MODELS[kind]
    items: list[Item] = []
    rejected: list[Rejection] = []
    skipped = 0
    for source in records:
        if source.value is None:
            rejected.append(reject(source, kind.table, "empty record value (tombstone)"))
            continue
        try:
            model = model_cls.model_validate_json(source.value)
            mapped = [item for item in _to_items(kind, source, model) if item.rows]
        except ValidationError as exc:
            reason = f"invalid {model_cls.__name__}: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            rejected.append(reject(source, kind.table, reason))
            continue
        except MappingError as exc:
            rejected.append(reject(source, kind.table, str(exc)))
            continue
        except Exception as exc:  # a mapping bug must not stop the topic: keep the record
            log.exception("unexpected error mapping a record", extra={"table": kind.table})
            rejected.append(reject(source, kind.table, f"cannot map record: {exc!r}"))
            continue
        if mapped:
            items.extend(mapped)
        else:
            skipped += 1
    return items, rejected, skipped


