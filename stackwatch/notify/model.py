"""What the notification core produces: notifications (one message for a group of alerts)
and deliveries (one notification to one recipient over one channel)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from stackwatch.models import AlertEvent
from stackwatch.notify.config import Channel
from stackwatch.registry import StackRegistry

__all__ = [
    "AlertItem",
    "Delivery",
    "Heartbeat",
    "Notification",
    "NotificationKind",
    "StackMeta",
    "stack_meta",
]


class StackMeta(BaseModel):
    """Registry facts a message needs about a stack (empty strings when unregistered)."""

    model_config = ConfigDict(frozen=True)

    stack_id: str
    name: str = ""
    plant: str = ""
    city: str = ""
    sector: str = ""
    process: str = ""


class NotificationKind(StrEnum):
    """Why a message is sent."""

    FIRING = "firing"  # new alerts or a severity rise in the group
    REPEAT = "repeat"  # still firing and unacknowledged after the repeat interval
    ESCALATION = "escalation"  # unacknowledged too long: the next group is told
    RESOLVED = "resolved"  # only clearances to report


class AlertItem(BaseModel):
    """One alert inside a notification, with its latest lifecycle event."""

    model_config = ConfigDict(frozen=True)

    event: AlertEvent
    stack: StackMeta
    level: int = Field(default=0, ge=0, description="Escalation level reached so far.")

    @property
    def resolved(self) -> bool:
        """The alert has cleared."""
        return self.event.cleared_at is not None


class Notification(BaseModel):
    """One message about one group of alerts, to whole recipient groups."""

    model_config = ConfigDict(frozen=True)

    kind: NotificationKind
    route: str
    group_key: str
    groups: list[str] = Field(description="Recipient groups addressed by this message.")
    level: int = Field(ge=0, description="Escalation level of the message (0 = first group).")
    at: AwareDatetime = Field(description="Dispatcher clock time when it was decided.")
    alerts: list[AlertItem] = Field(min_length=1)

    @property
    def dedup_key(self) -> str:
        """Identifies this message; equal keys are the same decision (log/replay dedup)."""
        return f"{self.route}|{self.group_key}|{self.kind.value}|{self.level}|{self.at.isoformat()}"


class Heartbeat(BaseModel):
    """The dead man's switch: "stackwatch is alive", sent once per interval. Its absence is
    the message — a recipient who stops receiving it knows notifications are down."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime = Field(description="Start of the interval this heartbeat stands for.")
    interval_s: float = Field(gt=0, description="The next one is due this much later.")
    source: str = Field(default="stackwatch", description="Which dispatcher sends it.")


class Delivery(BaseModel):
    """One notification to one recipient over one channel."""

    model_config = ConfigDict(frozen=True)

    notification: Notification
    recipient: str
    channel: Channel

    @property
    def channel_type(self) -> str:
        """``webhook`` or ``email`` (the delivery log's channel column)."""
        return self.channel.type

    @property
    def recipient_label(self) -> str:
        """``name <target>`` without secrets (the delivery log's recipient column)."""
        return f"{self.recipient} <{self.channel.target}>"


def stack_meta(registry: StackRegistry | None, stack_id: str) -> StackMeta:
    """Registry facts of ``stack_id``; an unregistered stack gets only its id."""
    info = registry.by_id(stack_id) if registry is not None else None
    if info is None:
        return StackMeta(stack_id=stack_id)
    return StackMeta(
        stack_id=stack_id,
        name=info.name,
        plant=info.plant,
        city=info.city,
        sector=info.sector,
        process=info.process,
    )
