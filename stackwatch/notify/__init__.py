"""Alert notification core (pure): routing, grouping, repeat/escalation timing, rendering.

I/O lives in ``sinks/notifiers.py`` (delivery) and ``streams/alert_dispatcher.py`` (consumer).
"""

from stackwatch.notify.config import NotifyConfig, NotifyConfigError
from stackwatch.notify.model import (
    AlertItem,
    Delivery,
    Notification,
    NotificationKind,
    StackMeta,
    stack_meta,
)
from stackwatch.notify.routing import deliveries, group_key, match_routes
from stackwatch.notify.scheduler import NotifyScheduler, level_groups

__all__ = [
    "AlertItem",
    "Delivery",
    "Notification",
    "NotificationKind",
    "NotifyConfig",
    "NotifyConfigError",
    "NotifyScheduler",
    "StackMeta",
    "deliveries",
    "group_key",
    "level_groups",
    "match_routes",
    "stack_meta",
]
