"""What the demo shows in the terminal: stacks, their latest hour vs limit, alerts as they happen.

`LiveState` is a plain, testable model of the view (fed with topic records); `render` turns it
into a rich renderable; `TopicFollower` reads the hour and alerts topics with aiokafka so the
view shows exactly what the pipeline emitted (not what the simulator intended).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError
from rich.console import Group
from rich.table import Table
from rich.text import Text

from stackwatch.compliance import Severity
from stackwatch.models import AggregateRecord, AlertEvent, EventKind, Rule
from stackwatch.registry import StackRegistry
from streams.kafka_transport import FETCH_MAX_WAIT_MS

logger = logging.getLogger(__name__)

POLLUTANTS = ("a34013", "a21026", "a21002")
NAMES = {"a34013": "PM 颗粒物", "a21026": "SO2", "a21002": "NOx"}
SEVERITY_STYLE = {Severity.WARNING: "yellow", Severity.ALARM: "red", Severity.CRITICAL: "bold red"}


@dataclass
class StackView:
    """Latest known state of one stack."""

    hours: dict[str, AggregateRecord] = field(default_factory=dict)
    active: dict[tuple[str | None, Rule], AlertEvent] = field(default_factory=dict)


@dataclass
class LiveState:
    """Everything the live view shows, built from topic records."""

    registry: StackRegistry
    stacks: dict[str, StackView] = field(default_factory=dict)
    recent: deque[AlertEvent] = field(default_factory=lambda: deque(maxlen=12))
    alert_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    hours_seen: dict[str, set[str]] = field(default_factory=dict)
    raised_by_severity: Counter[str] = field(default_factory=Counter)

    def on_hour(self, record: AggregateRecord) -> None:
        """An hour aggregate from the hour topic (later revisions replace earlier ones)."""
        view = self.stacks.setdefault(record.stack_id, StackView())
        self.hours_seen.setdefault(record.stack_id, set()).add(record.period_start.isoformat())
        current = view.hours.get(record.factor)
        if current is None or (record.period_start, record.revision) >= (
            current.period_start,
            current.revision,
        ):
            view.hours[record.factor] = record

    def on_alert(self, event: AlertEvent) -> None:
        """An alert lifecycle event from the alerts topic."""
        view = self.stacks.setdefault(event.stack_id, StackView())
        key = (event.factor, event.rule)
        if event.kind in (EventKind.RAISE, EventKind.UPDATE, EventKind.ESCALATE, EventKind.ACK):
            view.active[key] = event
        elif event.kind is EventKind.CLEAR:
            view.active.pop(key, None)
        if event.kind is EventKind.RAISE:
            self.raised_by_severity[event.severity.value] += 1
        if event.kind in (EventKind.RAISE, EventKind.CLEAR, EventKind.SUPPRESSED):
            self.recent.appendleft(event)
            self.alert_counts[(event.rule.value, event.kind.value)] += 1

    def state_of(self, stack_id: str) -> tuple[str, str]:
        """(label, style) of a stack: offline, alarm, warning, calibration or normal."""
        view = self.stacks.get(stack_id)
        if view is None or (not view.hours and not view.active):
            return "waiting 等待", "dim"
        rules = {rule for (_, rule) in view.active}
        if Rule.OFFLINE in rules:
            return "offline 离线", "magenta"
        severities = {e.severity for e in view.active.values()}
        if Severity.CRITICAL in severities or Severity.ALARM in severities:
            return "alarm 报警", "red"
        if severities:
            return "warning 预警", "yellow"
        if any(h.dominant_invalid_flag == "C" for h in view.hours.values()):
            return "calibration 校准", "cyan"
        return "normal 正常", "green"


def render(state: LiveState, frames_per_s: float, footer: str) -> Group:
    """The live view: a stack table and the latest alert events."""
    stacks = Table(title="stackwatch — stacks 排放口", expand=True)
    stacks.add_column("stack 排放口")
    stacks.add_column("plant 企业")
    stacks.add_column("state 状态")
    for code in POLLUTANTS:
        stacks.add_column(f"{NAMES[code]} hour/limit", justify="right")
    for info in state.registry.stacks:
        label, style = state.state_of(info.stack_id)
        view = state.stacks.get(info.stack_id, StackView())
        cells: list[str | Text] = [info.stack_id, info.plant or "", Text(label, style=style)]
        for code in POLLUTANTS:
            hour = view.hours.get(code)
            cells.append(_hour_cell(hour))
        stacks.add_row(*cells)
    alerts = Table(title="alerts 报警 (latest first)", expand=True)
    for column in ("time", "stack", "factor", "rule 规则", "event", "value/limit"):
        alerts.add_column(column)
    for event in state.recent:
        style = SEVERITY_STYLE.get(event.severity, "")
        value = "" if event.value is None else f"{event.value:.1f}"
        limit = "" if event.limit is None else f"/{event.limit:g}"
        alerts.add_row(
            event.at.strftime("%m-%d %H:%M"),
            event.stack_id,
            event.factor or "",
            Text(f"{event.title_zh} {event.title_en}", style=style),
            event.kind.value,
            value + limit,
        )
    status = Text(f"frames/s {frames_per_s:.1f}   {footer}", style="dim")
    return Group(stacks, alerts, status)


def _hour_cell(hour: AggregateRecord | None) -> str | Text:
    if hour is None:
        return ""
    value = hour.zs_mean if hour.zs_mean is not None else hour.mean
    if not hour.valid or value is None:
        return Text(f"invalid {hour.dominant_invalid_flag or hour.flag}", style="dim")
    limit = hour.limit_mg_m3
    text = f"{value:.1f}" + (f"/{limit:g}" if limit is not None else "")
    style = "red" if limit is not None and value > limit else ""
    return Text(text, style=style)


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    """A topic value as a dict (plain JSON, or Faust's {"__faust":..} envelope is unwrapped)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class TopicFollower:
    """Consumes the hour and alerts topics (no consumer group: reads, never commits)."""

    def __init__(self, bootstrap: str, hour_topic: str, alerts_topic: str, state: LiveState):
        self.state = state
        self._topics = (hour_topic, alerts_topic)
        self._hour_topic = hour_topic
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            metadata_max_age_ms=2000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )

    async def run(self) -> None:
        """Apply records to the state until cancelled."""
        await self._consumer.start()
        try:
            async for message in self._consumer:
                data = _decode(message.value)
                if data is None:
                    continue
                try:
                    if message.topic == self._hour_topic:
                        record = AggregateRecord.model_validate(data)
                        if record.period == "hour":
                            self.state.on_hour(record)
                    else:
                        self.state.on_alert(AlertEvent.model_validate(data))
                except ValidationError:
                    logger.debug("unexpected record on %s", message.topic)
        finally:
            await self._consumer.stop()


async def cancel_quietly(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it, swallowing its cancellation."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
