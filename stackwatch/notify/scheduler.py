"""When to notify whom: grouping, group wait, repeat interval, acknowledgement, escalation.

A pure state machine driven by :class:`~stackwatch.models.AlertEvent` inputs and an explicit
clock (``now`` arguments), so every timing rule is testable without sleeping. Semantics follow
Alertmanager where it has an answer and say so where they add to it:

* **Grouping.** Each matching route puts an alert in the group of its ``group_by`` labels.
  A new group is first flushed ``group_wait`` after it was created (alerts raised together
  go out together); later changes are flushed no sooner than ``group_interval`` after the
  previous flush. Changes are: a new alert, a severity rise (``escalate`` event), a clearance
  (when ``send_resolved``). Value updates (``update`` events) are not changes; the latest
  values ride along in the next message.
* **Deduplication.** ``(alert_id, seq)`` is unique per lifecycle event; an event whose seq is
  not above the last one seen for its alert is a redelivery/replay and is ignored.
* **Repeat.** While a group holds notified, unacknowledged, uncleared alerts, they are sent
  again every ``repeat_interval`` after the last message. **Acknowledged alerts stop
  repeating** (Alertmanager would need a silence for that).
* **Escalation** (addition). An alert of an escalating severity (default alarm, critical) that
  stays unacknowledged ``steps[0].after`` after its first notification is sent to
  ``steps[0].group``; ``steps[1].after`` later to ``steps[1].group``, and so on (each step's
  delay counts from the previous level, as in PagerDuty escalation policies). Repeats then go
  to every group reached. Acknowledging stops it; a severity rise resets the acknowledgement
  (alert lifecycle) and restarts the clock at the current level. Overdue steps (a dispatcher
  that was down) are taken at their due times, each group told once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from stackwatch.models import AlertEvent, EventKind
from stackwatch.notify.config import NotifyConfig, Route
from stackwatch.notify.model import AlertItem, Notification, NotificationKind, StackMeta
from stackwatch.notify.routing import group_key, match_routes

__all__ = ["NotifyScheduler", "level_groups"]


def level_groups(route: Route, level: int) -> list[str]:
    """Recipient groups of escalation levels 0..``level`` of ``route`` (distinct, in order)."""
    names = [route.group, *(step.group for step in route.escalation[:level])]
    return list(dict.fromkeys(names))


@dataclass
class _Member:
    event: AlertEvent
    stack: StackMeta
    notified: bool = False
    level: int = 0
    level_since: datetime | None = None
    resolved_pending: bool = False

    def item(self) -> AlertItem:
        return AlertItem(event=self.event, stack=self.stack, level=self.level)

    @property
    def firing(self) -> bool:
        return not self.resolved_pending and self.event.cleared_at is None


@dataclass
class _Group:
    route: Route
    key: str
    created_at: datetime
    members: dict[str, _Member] = field(default_factory=dict)
    dirty_since: datetime | None = None
    last_flush: datetime | None = None
    last_sent: datetime | None = None

    def mark_dirty(self, now: datetime) -> None:
        if self.dirty_since is None:
            self.dirty_since = now


class _MemberState(BaseModel):
    event: AlertEvent
    stack: StackMeta
    notified: bool
    level: int
    level_since: AwareDatetime | None
    resolved_pending: bool


class _GroupState(BaseModel):
    route: str
    key: str
    created_at: AwareDatetime
    dirty_since: AwareDatetime | None
    last_flush: AwareDatetime | None
    last_sent: AwareDatetime | None
    members: list[_MemberState]


class _SchedulerState(BaseModel):
    version: int = 1
    groups: list[_GroupState] = Field(default_factory=list)
    last_seq: dict[str, int] = Field(default_factory=dict)
    cleared: dict[str, AwareDatetime] = Field(default_factory=dict)


class NotifyScheduler:
    """Decides, from alert events and the clock, which notifications to send and when."""

    def __init__(self, config: NotifyConfig, *, dedup_retention: timedelta | None = None):
        self.config = config
        self.dedup_retention = dedup_retention or timedelta(days=7)
        self._groups: dict[tuple[str, str], _Group] = {}
        self._last_seq: dict[str, int] = {}
        self._cleared: dict[str, datetime] = {}

    # -- persistence (a restarted dispatcher neither forgets nor re-sends)

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state (configuration is not state: routes are saved by name)."""
        state = _SchedulerState(
            groups=[
                _GroupState(
                    route=g.route.name,
                    key=g.key,
                    created_at=g.created_at,
                    dirty_since=g.dirty_since,
                    last_flush=g.last_flush,
                    last_sent=g.last_sent,
                    members=[
                        _MemberState(
                            event=m.event,
                            stack=m.stack,
                            notified=m.notified,
                            level=m.level,
                            level_since=m.level_since,
                            resolved_pending=m.resolved_pending,
                        )
                        for m in g.members.values()
                    ],
                )
                for g in self._groups.values()
            ],
            last_seq=dict(self._last_seq),
            cleared=dict(self._cleared),
        )
        return state.model_dump(mode="json")

    @classmethod
    def from_state(
        cls,
        config: NotifyConfig,
        state: Mapping[str, Any],
        *,
        dedup_retention: timedelta | None = None,
    ) -> NotifyScheduler:
        """Rebuild from :meth:`to_state` (pydantic ValidationError if malformed). Groups of
        routes that no longer exist in ``config`` are dropped; escalation levels beyond a
        route's current steps are capped."""
        parsed = _SchedulerState.model_validate(state)
        sched = cls(config, dedup_retention=dedup_retention)
        routes = {r.name: r for r in config.routes}
        for g in parsed.groups:
            route = routes.get(g.route)
            if route is None:
                continue
            group = _Group(
                route=route,
                key=g.key,
                created_at=g.created_at,
                dirty_since=g.dirty_since,
                last_flush=g.last_flush,
                last_sent=g.last_sent,
            )
            for m in g.members:
                group.members[m.event.alert_id] = _Member(
                    event=m.event,
                    stack=m.stack,
                    notified=m.notified,
                    level=min(m.level, len(route.escalation)),
                    level_since=m.level_since,
                    resolved_pending=m.resolved_pending,
                )
            sched._groups[(route.name, g.key)] = group
        sched._last_seq = dict(parsed.last_seq)
        sched._cleared = dict(parsed.cleared)
        return sched

    # -- queries

    def group_keys(self) -> list[tuple[str, str]]:
        """(route, group key) of every open group."""
        return list(self._groups)

    def tracked_alerts(self) -> set[str]:
        """Alert ids currently held in some group."""
        return {aid for g in self._groups.values() for aid in g.members}

    # -- inputs

    def handle(self, event: AlertEvent, stack: StackMeta, now: datetime) -> bool:
        """Take one lifecycle event. Returns False when it was a duplicate/stale (ignored)."""
        last = self._last_seq.get(event.alert_id)
        if last is not None and event.seq <= last:
            return False
        if event.kind is EventKind.SUPPRESSED:
            return True  # recorded by the lifecycle; nobody is paged for a calibration
        self._last_seq[event.alert_id] = event.seq
        if event.kind is EventKind.CLEAR:
            self._clear(event, now)
        elif event.kind is EventKind.ACK:
            for group in self._groups.values():
                member = group.members.get(event.alert_id)
                if member is not None:
                    member.event = event
        else:
            self._fire(event, stack, now)
        return True

    def _clear(self, event: AlertEvent, now: datetime) -> None:
        self._cleared[event.alert_id] = now
        for group in self._groups.values():
            member = group.members.get(event.alert_id)
            if member is None:
                continue
            if member.notified and group.route.send_resolved:
                member.event = event
                member.resolved_pending = True
                group.mark_dirty(now)
            else:
                del group.members[event.alert_id]

    def _fire(self, event: AlertEvent, stack: StackMeta, now: datetime) -> None:
        targets = {
            (route.name, group_key(route, event, stack)): route
            for route in match_routes(self.config, event, stack)
        }
        for gid, group in self._groups.items():
            if gid not in targets:
                group.members.pop(event.alert_id, None)  # severity rose out of this route
        for gid, route in targets.items():
            group = self._groups.setdefault(gid, _Group(route=route, key=gid[1], created_at=now))
            member = group.members.get(event.alert_id)
            if member is None:
                group.members[event.alert_id] = _Member(event=event, stack=stack)
                group.mark_dirty(now)
                continue
            lost_ack = member.event.acknowledged and not event.acknowledged
            member.event = event
            member.stack = stack
            if event.kind is EventKind.ESCALATE:
                group.mark_dirty(now)
            if lost_ack and member.notified:
                member.level_since = now

    # -- timer

    def tick(self, now: datetime) -> list[Notification]:
        """Notifications due at clock time ``now`` (call it periodically)."""
        out: list[Notification] = []
        for gid in list(self._groups):
            group = self._groups[gid]
            timing = self.config.timing(group.route)
            if group.dirty_since is not None:
                due = (
                    group.created_at + timing.group_wait
                    if group.last_flush is None
                    else max(group.dirty_since, group.last_flush + timing.group_interval)
                )
                if now >= due:
                    out.extend(self._flush(group, now))
            elif group.last_sent is not None and now >= group.last_sent + timing.repeat_interval:
                out.extend(self._repeat(group, now))
            out.extend(self._escalate(group, now))
            if not group.members:
                del self._groups[gid]
        self._prune(now)
        return out

    def _notification(
        self, group: _Group, kind: NotificationKind, members: list[_Member], now: datetime,
        *, groups: list[str] | None = None, level: int | None = None,
    ) -> Notification:
        members = sorted(members, key=lambda m: (m.event.first_seen, m.event.alert_id))
        top = max(m.level for m in members) if level is None else level
        return Notification(
            kind=kind,
            route=group.route.name,
            group_key=group.key,
            groups=groups if groups is not None else level_groups(group.route, top),
            level=top,
            at=now,
            alerts=[m.item() for m in members],
        )

    def _flush(self, group: _Group, now: datetime) -> list[Notification]:
        members = list(group.members.values())
        group.dirty_since = None
        if not members:
            return []
        kind = (
            NotificationKind.RESOLVED
            if all(not m.firing for m in members)
            else NotificationKind.FIRING
        )
        note = self._notification(group, kind, members, now)
        for aid, member in list(group.members.items()):
            if not member.firing:
                del group.members[aid]
            elif not member.notified:
                member.notified = True
                member.level_since = now
        group.last_flush = group.last_sent = now
        return [note]

    def _repeat(self, group: _Group, now: datetime) -> list[Notification]:
        due = [
            m for m in group.members.values()
            if m.notified and m.firing and not m.event.acknowledged
        ]
        group.last_sent = now  # the interval restarts even if everything was acknowledged
        if not due:
            return []
        return [self._notification(group, NotificationKind.REPEAT, due, now)]

    def _escalate(self, group: _Group, now: datetime) -> list[Notification]:
        steps = group.route.escalation
        reached: dict[int, list[_Member]] = {}
        for member in group.members.values():
            if (
                not member.notified
                or not member.firing
                or member.event.acknowledged
                or member.event.severity not in group.route.escalate_severities
                or member.level_since is None
            ):
                continue
            while (
                member.level < len(steps)
                and now >= member.level_since + steps[member.level].after
            ):
                member.level_since += steps[member.level].after
                member.level += 1
                reached.setdefault(member.level, []).append(member)
        return [
            self._notification(
                group,
                NotificationKind.ESCALATION,
                reached[level],
                now,
                groups=[steps[level - 1].group],
                level=level,
            )
            for level in sorted(reached)
        ]

    def _prune(self, now: datetime) -> None:
        """Forget dedup marks of alerts cleared longer ago than the retention (bounded memory)."""
        old = [aid for aid, at in self._cleared.items() if now - at > self.dedup_retention]
        for aid in old:
            del self._cleared[aid]
            self._last_seq.pop(aid, None)
