"""Stall watch: say loudly, with the consumer's state, when an agent stops reading.

A worker that is assigned a partition whose log goes on past what its agent handled, and that
admits nothing for `stall_s`, is stalled: its stacks' minutes, hours and alerts stop while
the process looks healthy. The continuity guard seeks back such partitions; if that does not
help either, only the consumer's own state can tell why (flow stopped, partition paused in
Faust or in aiokafka, no valid fetch position, a method queue that never drains, an agent
stuck on a delivery). This watch logs that state once per stall and every `repeat_s` while
it lasts, so a stall in production or in CI can be diagnosed from the log alone.

It reads Faust's and aiokafka's private attributes: they are read, never written, and any
change in those libraries only makes a field read "?".
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.types import TP

from streams.continuity import Continuity

log = logging.getLogger(__name__)

EndOffset = Callable[[TP], Awaitable[int | None]]


def _read(getter: Callable[[], Any]) -> Any:
    try:
        return getter()
    except Exception:  # a private attribute moved or is not there yet
        return "?"


def _assignment_summary(kafka: Any) -> dict[str, str]:
    """`topic:partition` → status@position (paused) of every assigned partition: one
    partition awaiting an offset reset holds back fetches from its whole broker."""
    assignment = kafka._subscription.subscription.assignment
    summary: dict[str, str] = {}
    for tp in sorted(assignment.tps):
        state = assignment.state_value(tp)
        status = str(state._status).rsplit(".", 1)[-1]
        summary[f"{tp.topic}:{tp.partition}"] = (
            f"{status}@{state._position}{' paused' if state.paused else ''}"
        )
    return summary


def consumer_state(app: Any, tps: Iterable[TP]) -> dict[str, Any]:
    """The Faust and aiokafka consumer state that decides whether `tps` are fetched."""
    consumer = _read(lambda: app.consumer)
    thread = _read(lambda: consumer._thread)
    kafka = _read(lambda: thread._consumer)

    def tp_state(tp: TP) -> dict[str, Any]:
        state = _read(lambda: kafka._subscription.subscription.assignment.state_value(tp))
        return {
            "faust_active": _read(lambda: tp in (consumer._active_partitions or set())),
            "faust_paused": _read(lambda: tp in consumer._paused_partitions),
            "read_offset": _read(lambda: consumer._read_offset.get(tp)),
            "committed": _read(lambda: consumer._committed_offset.get(tp)),
            "kafka_paused": _read(lambda: state.paused),
            "kafka_status": _read(lambda: str(state._status)),
            "kafka_position": _read(lambda: state._position),
            "kafka_highwater": _read(lambda: kafka.highwater(tp)),
        }

    return {
        "rebalancing": _read(lambda: app.rebalancing),
        "in_recovery": _read(lambda: app.in_recovery),
        "recovery_completed": _read(lambda: app.tables.recovery.completed.is_set()),
        "flow_active": _read(lambda: consumer.flow_active),
        "can_resume_flow": _read(lambda: consumer.can_resume_flow.is_set()),
        "app_flow_active": _read(lambda: app.flow_control.is_active()),
        "diag_flags": _read(lambda: sorted(consumer.diag.flags)),
        "reassigning": _read(lambda: kafka._subscription.reassignment_in_progress),
        "fetch_buffer": _read(
            lambda: {str(tp): type(r).__name__ for tp, r in kafka._fetcher._records.items()}
        ),
        "fetch_task": _read(lambda: repr(kafka._fetcher._fetch_task)),
        "in_flight": _read(lambda: sorted(kafka._fetcher._in_flight)),
        "assigned": _read(lambda: _assignment_summary(kafka)),
        "thread_queue": _read(lambda: thread.method_queue._queue.qsize()),
        "main_queue": _read(lambda: consumer._method_queue._queue.qsize()),
        "partitions": {str(tp): tp_state(tp) for tp in tps},
    }


_FRAMES = ("cr_frame", "ag_frame", "gi_frame")


def _first_attr(obj: Any, names: tuple[str, ...]) -> Any:
    return next((v for v in (getattr(obj, n, None) for n in names) if v is not None), None)


def await_chain(awaitable: Any, limit: int = 16) -> list[str]:
    """`function:line` of each coroutine or generator in `awaitable`'s await chain, outermost
    first. A task's own stack stops at its outer frame (Faust's actor shows only `await
    coro`); the chain goes down to what the agent is really waiting on."""
    chain: list[str] = []
    current = awaitable
    while current is not None and len(chain) < limit:
        frame = _first_attr(current, _FRAMES)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = _first_attr(current, ("cr_await", "ag_await", "gi_yieldfrom"))
        if awaited is not None and _first_attr(awaited, _FRAMES) is None:
            # A wrapper that exposes no frame (Faust's `await actor` gives a coroutine's
            # wrapper, `async for` an asend object, a task its coroutine): it refers to
            # what it wraps.
            awaited = next(
                (r for r in gc.get_referents(awaited) if _first_attr(r, _FRAMES) is not None),
                None,
            )
        current = awaited
    return chain


def agent_stacks(function: str = "agent") -> dict[str, list[str]]:
    """The await chain of every task running a coroutine named `function` (the agents'
    bodies, `streams.app.create_app.consume.agent`): an agent stuck on a delivery or a seek
    shows where."""
    stacks: dict[str, list[str]] = {}
    for task in asyncio.all_tasks():
        chain = await_chain(task.get_coro())
        if any(step.split(":", 1)[0] == function for step in chain):
            stacks[task.get_name()] = chain
    return stacks


class StallWatch:
    """Per source partition: lag (log end past the next offset to handle) with no record
    admitted for `stall_s` is a stall, logged with the consumer's state."""

    def __init__(
        self,
        app: Any,
        guards: dict[str, Continuity],
        *,
        stall_s: float = 20.0,
        repeat_s: float = 30.0,
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.guards = guards
        self.stall_s = stall_s
        self.repeat_s = repeat_s
        self.clock = clock
        self._reported: dict[tuple[str, TP], float] = {}
        self._asked: dict[tuple[str, TP], float] = {}  # last end-offset request per partition

    async def check(
        self, assigned: dict[str, set[TP]], end_offset: EndOffset
    ) -> list[tuple[str, TP]]:
        """Log the stalled partitions of each agent (`assigned`: agent → its source tps)."""
        now = self.clock()
        stalled: list[tuple[str, TP, int, int]] = []
        asked: set[tuple[str, TP]] = set()
        for name, tps in assigned.items():
            guard = self.guards[name]
            guard.note_assigned(tps)
            for tp in tps:
                since = guard.idle_since(tp)
                if since is None or now - since < self.stall_s:
                    continue
                if now - self._asked.get((name, tp), -1e18) < self.stall_s:
                    continue  # an idle partition costs one end-offset request per stall_s
                self._asked[(name, tp)] = now
                asked.add((name, tp))
                expected = await guard.expected_offset(tp)
                end = await end_offset(tp)
                if end is None or expected is None or end <= expected:
                    continue  # read to the end (or the broker cannot say): idle, not stalled
                stalled.append((name, tp, expected, end))
        assigned_now = {(name, tp) for name, tps in assigned.items() for tp in tps}
        self._asked = {k: v for k, v in self._asked.items() if k in assigned_now}
        stalled_now = {(name, tp) for name, tp, _, _ in stalled}
        # A partition found moving again (or no longer assigned) reports its next stall at once.
        self._reported = {
            k: v
            for k, v in self._reported.items()
            if k in assigned_now and (k in stalled_now or k not in asked)
        }
        due = [s for s in stalled if now - self._reported.get((s[0], s[1]), -1e18) >= self.repeat_s]
        if due:
            for name, tp, _, _ in due:
                self._reported[(name, tp)] = now
            log.error(
                "agent stalled: assigned partitions have records it has not handled; %s",
                ", ".join(f"{n} {tp.topic}:{tp.partition} next={e} end={end}"
                          for n, tp, e, end in due),
                extra={
                    "stalled": [
                        {"agent": n, "tp": str(tp), "next": e, "end": end}
                        for n, tp, e, end in due
                    ],
                    "consumer": consumer_state(self.app, (tp for _, tp, _, _ in due)),
                    "tasks": agent_stacks(),
                },
            )
        return [(n, tp) for n, tp, _, _ in due]
