"""Finalised hour and day windows kept for back-filled data (补传), outside the hot state.

An archived window is `{"emissions": n, "items": {key: [event time ISO, item JSON]}}`: what
the window held when it was finalised, and how often it has been emitted (the next emission
is revision n).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from stackwatch.windows import ClosedWindow, WindowItem


class WindowArchive(Protocol):
    """Where finalised hour and day windows wait for back-filled data (per stack).

    Kept out of the processor's own state: that is written on every record, while an archived
    window is written once when it is finalised and again only when back-fill touches it.
    """

    def get(self, key: str) -> dict[str, Any] | None:
        """The archived window, if any."""

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) an archived window."""

    def delete(self, key: str) -> None:
        """Forget an archived window."""


class MemoryArchive:
    """A `WindowArchive` in a dict (tests, and processors without a durable store)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The archived window, if any."""
        return self.data.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) an archived window."""
        self.data[key] = value

    def delete(self, key: str) -> None:
        """Forget an archived window."""
        self.data.pop(key, None)


def archived(closed: ClosedWindow) -> dict[str, Any]:
    """The archive entry of a window finalised by `EventTimeWindows.advance`."""
    items = {i.key: [i.event_time.isoformat(), i.item] for i in closed.items}
    return {"emissions": closed.revision, "items": items}


def reopened(start: datetime, end: datetime, entry: dict[str, Any]) -> ClosedWindow:
    """An archive entry as a window to emit again (its next revision)."""
    entries = sorted(
        (
            WindowItem(key=k, event_time=datetime.fromisoformat(v[0]), item=v[1])
            for k, v in entry["items"].items()
        ),
        key=lambda i: (i.event_time, i.key),
    )
    return ClosedWindow(
        start=start, end=end, revision=int(entry["emissions"]), final=True, items=tuple(entries)
    )
