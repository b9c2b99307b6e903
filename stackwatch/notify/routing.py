"""Routing: which routes take an alert, how it is grouped, and who receives a notification."""

from __future__ import annotations

from stackwatch.models import AlertEvent
from stackwatch.notify.config import NotifyConfig, Route
from stackwatch.notify.model import Delivery, Notification, StackMeta

__all__ = ["deliveries", "group_key", "match_routes"]


def match_routes(config: NotifyConfig, event: AlertEvent, stack: StackMeta) -> list[Route]:
    """Routes taking this alert, in file order: the first match wins unless it says
    ``continue: true`` (Alertmanager semantics)."""
    out: list[Route] = []
    for route in config.routes:
        if route.match.matches(
            city=stack.city,
            sector=stack.sector,
            plant=stack.plant,
            stack_id=event.stack_id,
            rule=event.rule,
            severity=event.severity,
        ):
            out.append(route)
            if not route.continue_matching:
                break
    return out


def group_key(route: Route, event: AlertEvent, stack: StackMeta) -> str:
    """Grouping key: alerts with the same key go out in one message.

    Deduplication follows from it: one alert is in at most one group per route, so it appears
    once per message however many lifecycle events it produced meanwhile.
    """
    labels = {
        "route": route.name,
        "stack_id": event.stack_id,
        "plant": stack.plant,
        "city": stack.city,
        "sector": stack.sector,
        "factor": event.factor or "",
        "rule": event.rule.value,
        "alert_id": event.alert_id,
    }
    return ",".join(f"{name}={labels[name]}" for name in sorted(set(route.group_by)))


def deliveries(config: NotifyConfig, notification: Notification) -> list[Delivery]:
    """Expand a notification into one delivery per distinct (recipient, channel).

    A recipient who is a member of several addressed groups receives the message once.
    """
    seen: set[tuple[str, str, str]] = set()
    out: list[Delivery] = []
    for group_name in notification.groups:
        for member in config.group(group_name).members:
            recipient = config.recipient(member)
            for channel in recipient.channels:
                secret = channel.url.get_secret_value() if channel.type == "webhook" else ""
                ident = (recipient.name, channel.target, secret)
                if ident in seen:
                    continue
                seen.add(ident)
                out.append(Delivery(notification=notification, recipient=member, channel=channel))
    return out
