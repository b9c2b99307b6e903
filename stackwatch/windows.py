"""Event-time tumbling windows with a per-key watermark, late corrections and JSON state.

Faust's own window expiry / `on_window_close` only fires when a later event arrives and is not
relied on (CONTRIBUTING.md). A Faust agent keeps one `EventTimeWindows` per key (a stack, or a
stack + factor) in a table as `to_state()`, and calls `add()` for each reading and `advance()`
after each reading and from a timer.

**Watermark (chosen: per key, event-time).** The watermark of a key is the largest event time
(HJ 212 DataTime) accepted for that key, or a larger value passed to `advance()`. It is per key,
not per partition, because each data logger has its own clock and upload schedule: one
logger's skewed clock (real captures contain a year-2000 DataTime) or a re-send backlog must
neither hold back nor fast-forward the other stacks sharing a partition.

An idle key (logger stopped sending) gets no new events, so a timer advances it with
`idle_watermark(now)`: the last event time plus the wall-clock time elapsed since that event
arrived. That closes the hour of a silent stack without trusting that the logger's clock
agrees with ours.

**Lifecycle of a window [start, end)**, with `grace` and `allowed_lateness`:

* watermark < end + grace: open; events are ACCEPTED.
* end + grace ≤ watermark: `advance()` emits it (revision 0).
* until end + grace + allowed_lateness ≤ watermark, a late event (or a corrected value for an
  already-seen DataTime) is accepted as LATE: the window is re-opened and the next `advance()`
  re-emits it with revision + 1, so downstream replaces the aggregate.
* after that the window is dropped and any event for it is TOO_LATE: reported to the caller
  (dead-letter/late topic), never silently dropped. An emission made at or after that point
  carries `final=True`; a window whose last emission came earlier is dropped silently (its
  last revision stands).

Items are JSON values; the same item key (default: the event time, i.e. DataTime) replaces the
previous value, and re-adding an identical item is a DUPLICATE no-op (idempotent replay).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
)

from stackwatch.averaging import interval_start, period_length
from stackwatch.beijing_time import CST

STATE_VERSION = 1


class WindowStateError(ValueError):
    """A stored window state that cannot be restored (the message says why)."""


class AddStatus(StrEnum):
    """What `EventTimeWindows.add` did with an event."""

    ACCEPTED = "accepted"
    LATE = "late"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    REJECTED = "rejected"


class AddResult(BaseModel):
    """Outcome of one `add()`; `accepted` is False only for TOO_LATE and REJECTED."""

    model_config = ConfigDict(frozen=True)

    status: AddStatus
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    replaced: bool = Field(default=False, description="An item with the same key was replaced.")
    revision: int | None = Field(
        default=None, description="Revision the window will be emitted with next (LATE)."
    )
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True if the item is (or already was) in a window."""
        return self.status in (AddStatus.ACCEPTED, AddStatus.LATE, AddStatus.DUPLICATE)


class WindowItem(BaseModel):
    """One item in a window."""

    model_config = ConfigDict(frozen=True)

    key: str
    event_time: AwareDatetime
    item: JsonValue


_DATETIME_JSON: TypeAdapter[datetime | None] = TypeAdapter(AwareDatetime | None)


def _dt_json(value: datetime | None) -> Any:
    """A datetime exactly as pydantic writes it in `mode="json"` (e.g. `…Z` for UTC)."""
    return _DATETIME_JSON.dump_python(value, mode="json")


class ClosedWindow(BaseModel):
    """A window emitted by `advance()`; revision > 0 replaces an earlier emission."""

    model_config = ConfigDict(frozen=True)

    start: AwareDatetime
    end: AwareDatetime
    revision: int
    final: bool = Field(description="No later correction of this window is possible.")
    items: tuple[WindowItem, ...]


class _Window(BaseModel):
    start: AwareDatetime
    items: dict[str, WindowItem] = Field(default_factory=dict)
    emissions: int = 0
    dirty: bool = True


class _State(BaseModel):
    version: int = STATE_VERSION
    period_s: int
    grace_s: float
    lateness_s: float
    tz_offset_s: int
    max_skew_s: float | None
    items_move_watermark: bool = True
    watermark: AwareDatetime | None = None
    max_event_time: AwareDatetime | None = None
    last_arrival: AwareDatetime | None = None
    windows: list[_Window] = Field(default_factory=list)


def _aware(ts: object) -> bool:
    return isinstance(ts, datetime) and ts.tzinfo is not None and ts.utcoffset() is not None


class EventTimeWindows:
    """Tumbling event-time windows of one key (see the module docstring for the semantics)."""

    def __init__(
        self,
        period: timedelta,
        grace: timedelta,
        allowed_lateness: timedelta = timedelta(0),
        *,
        tz: timezone = CST,
        max_clock_skew: timedelta | None = None,
        watermark_from_items: bool = True,
    ) -> None:
        """`period` divides 24 h and windows align to local midnight in `tz` (+08:00).

        `max_clock_skew`: with an `arrival` time given to `add()`, events dated further than
        this into the future are REJECTED instead of moving the watermark (a logger clock that
        jumps ahead would otherwise close every window early). None disables the check.
        `watermark_from_items` False: only `advance()` moves the watermark (the caller keeps
        an event clock of its own, e.g. one that a single future-dated item cannot move).
        """
        length = period_length(period)
        if grace < timedelta(0) or allowed_lateness < timedelta(0):
            raise ValueError("grace and allowed_lateness must be ≥ 0")
        offset = tz.utcoffset(None)
        self._period = length
        self._grace = grace
        self._lateness = allowed_lateness
        self._tz = tz
        self._tz_offset = offset
        self._max_skew = max_clock_skew
        self._items_move_watermark = watermark_from_items
        self.dropped: list[ClosedWindow] = []
        """Windows finalised and dropped by `advance()`, with their items, for a caller that
        archives them (drain it after each call)."""
        self._watermark: datetime | None = None
        self._max_event_time: datetime | None = None
        self._last_arrival: datetime | None = None
        self._windows: dict[datetime, _Window] = {}
        # item JSON of the last save, by id(item): each item is dumped once (see `_item_json`)
        self._dumped: dict[int, tuple[WindowItem, dict[str, Any]]] = {}

    @property
    def watermark(self) -> datetime | None:
        """Current watermark of this key (None before the first event)."""
        return self._watermark

    @property
    def open_windows(self) -> list[datetime]:
        """Starts of the windows held in state (open, or closed but still correctable)."""
        return sorted(self._windows)

    def idle_watermark(self, now: datetime) -> datetime | None:
        """Watermark for a timer: last event time + wall time elapsed since it arrived.

        None until an event with an `arrival` time has been added.
        """
        if self._max_event_time is None or self._last_arrival is None:
            return None
        return self._max_event_time + max(now - self._last_arrival, timedelta(0))

    def _bounds(self, start: datetime) -> tuple[datetime, datetime, datetime]:
        end = start + self._period
        close_at = end + self._grace
        return end, close_at, close_at + self._lateness

    def add(
        self,
        event_time: datetime,
        item: JsonValue,
        *,
        key: str | None = None,
        arrival: datetime | None = None,
    ) -> AddResult:
        """Put `item` into the window containing `event_time`; never raises on bad input.

        `key` identifies the item for de-duplication (default: the event time, ISO 8601 in `tz`).
        `arrival` is the wall-clock receive time (enables `idle_watermark` and skew checks).
        """
        if not _aware(event_time):
            return AddResult(
                status=AddStatus.REJECTED,
                reason=f"event time {event_time!r} is not a timezone-aware datetime",
            )
        if arrival is not None and not _aware(arrival):
            return AddResult(
                status=AddStatus.REJECTED, reason=f"arrival {arrival!r} is not timezone-aware"
            )
        try:
            start = interval_start(event_time, self._period, self._tz)
            end, close_at, drop_at = self._bounds(start)
        except OverflowError:
            return AddResult(
                status=AddStatus.REJECTED, reason=f"event time {event_time!r} is out of range"
            )
        if (
            arrival is not None
            and self._max_skew is not None
            and event_time > arrival + self._max_skew
        ):
            return AddResult(
                status=AddStatus.REJECTED,
                window_start=start,
                window_end=end,
                reason=f"event time {event_time.isoformat()} is more than {self._max_skew} "
                f"after its arrival {arrival.isoformat()} (logger clock ahead?)",
            )
        wm = self._watermark
        if wm is not None and drop_at <= wm:
            return AddResult(
                status=AddStatus.TOO_LATE,
                window_start=start,
                window_end=end,
                reason=f"window {start.isoformat()}–{end.isoformat()} was finalised: watermark "
                f"{wm.isoformat()} ≥ end + grace + allowed lateness ({drop_at.isoformat()})",
            )
        try:
            entry = WindowItem(
                key=key if key is not None else event_time.astimezone(self._tz).isoformat(),
                event_time=event_time,
                item=item,
            )
        except ValidationError as exc:
            return AddResult(
                status=AddStatus.REJECTED,
                window_start=start,
                window_end=end,
                reason=f"item is not JSON-serialisable: {exc.errors()[0]['msg']}",
            )
        self._note_arrival(event_time, arrival)
        window = self._windows.get(start)
        if window is None:
            window = self._windows[start] = _Window(start=start)
        previous = window.items.get(entry.key)
        if previous is not None and previous == entry:
            return AddResult(status=AddStatus.DUPLICATE, window_start=start, window_end=end)
        window.items[entry.key] = entry
        window.dirty = True
        late = wm is not None and close_at <= wm
        return AddResult(
            status=AddStatus.LATE if late else AddStatus.ACCEPTED,
            window_start=start,
            window_end=end,
            replaced=previous is not None,
            revision=window.emissions if late else None,
        )

    def _note_arrival(self, event_time: datetime, arrival: datetime | None) -> None:
        if self._max_event_time is None or event_time >= self._max_event_time:
            self._max_event_time = event_time
            if arrival is not None:
                self._last_arrival = arrival
        if self._items_move_watermark and (self._watermark is None or event_time > self._watermark):
            self._watermark = event_time

    def advance(self, watermark: datetime | None = None) -> list[ClosedWindow]:
        """Raise the watermark (never lowers it) and emit every window whose end + grace ≤
        watermark and that has unemitted content, oldest first; drop finalised windows.
        """
        if watermark is not None:
            if not _aware(watermark):
                raise ValueError(f"watermark {watermark!r} must be timezone-aware")
            if self._watermark is None or watermark > self._watermark:
                self._watermark = watermark
        wm = self._watermark
        if wm is None:
            return []
        emitted: list[ClosedWindow] = []
        for start in sorted(self._windows):
            window = self._windows[start]
            end, close_at, drop_at = self._bounds(start)
            if close_at > wm:
                break
            final = drop_at <= wm
            if window.dirty:
                items = sorted(window.items.values(), key=lambda i: (i.event_time, i.key))
                emitted.append(
                    ClosedWindow(
                        start=start,
                        end=end,
                        revision=window.emissions,
                        final=final,
                        items=tuple(items),
                    )
                )
                window.emissions += 1
                window.dirty = False
            if final:
                self.dropped.append(
                    ClosedWindow(
                        start=start,
                        end=end,
                        revision=window.emissions,
                        final=True,
                        items=tuple(
                            sorted(window.items.values(), key=lambda i: (i.event_time, i.key))
                        ),
                    )
                )
                del self._windows[start]
        return emitted

    def flush(self, upto: datetime | None = None) -> list[ClosedWindow]:
        """Emit every open window with unemitted content now, without closing it.

        For an input that has gone idle (the end of a replay): the content so far is emitted
        with the next revision; a later item re-opens the window and `advance()` emits it
        again. `upto`: only windows starting before it.
        """
        emitted: list[ClosedWindow] = []
        for start in sorted(self._windows):
            window = self._windows[start]
            if upto is not None and start >= upto:
                break
            if not window.dirty or not window.items:
                continue
            items = sorted(window.items.values(), key=lambda i: (i.event_time, i.key))
            emitted.append(
                ClosedWindow(
                    start=start,
                    end=start + self._period,
                    revision=window.emissions,
                    final=False,
                    items=tuple(items),
                )
            )
            window.emissions += 1
            window.dirty = False
        return emitted

    def to_state(self) -> dict[str, Any]:
        """JSON-safe snapshot (store it in a Faust table; restore with `from_state`)."""
        # Written field by field in `_State`'s order and pydantic's JSON format: dumping the
        # model re-serialised every item of every open window on every save (a checkpoint).
        dumped: dict[int, tuple[WindowItem, dict[str, Any]]] = {}
        state = {
            "version": STATE_VERSION,
            "period_s": int(self._period.total_seconds()),
            "grace_s": self._grace.total_seconds(),
            "lateness_s": self._lateness.total_seconds(),
            "tz_offset_s": int(self._tz_offset.total_seconds()) if self._tz_offset else 0,
            "max_skew_s": None if self._max_skew is None else self._max_skew.total_seconds(),
            "items_move_watermark": self._items_move_watermark,
            "watermark": _dt_json(self._watermark),
            "max_event_time": _dt_json(self._max_event_time),
            "last_arrival": _dt_json(self._last_arrival),
            "windows": [
                {
                    "start": _dt_json(w.start),
                    "items": {key: self._item_json(item, dumped) for key, item in w.items.items()},
                    "emissions": w.emissions,
                    "dirty": w.dirty,
                }
                for w in (self._windows[s] for s in sorted(self._windows))
            ],
        }
        self._dumped = dumped
        return state

    def _item_json(
        self, item: WindowItem, dumped: dict[int, tuple[WindowItem, dict[str, Any]]]
    ) -> dict[str, Any]:
        """`item.model_dump(mode="json")`, reused from the previous save while the window
        holds the same (immutable) item. Kept here, not on the item: a pydantic private
        attribute would take part in `==`, and the duplicate check compares items."""
        hit = self._dumped.get(id(item))
        value = hit[1] if hit is not None and hit[0] is item else item.model_dump(mode="json")
        dumped[id(item)] = (item, value)
        return value

    @classmethod
    def from_state(cls, state: object) -> EventTimeWindows:
        """Rebuild from `to_state()` output; raises `WindowStateError` if it is unusable."""
        try:
            parsed = _State.model_validate(state)
        except ValidationError as exc:
            raise WindowStateError(f"invalid window state: {exc}") from exc
        if parsed.version != STATE_VERSION:
            raise WindowStateError(f"unsupported window state version {parsed.version}")
        try:
            windows = cls(
                timedelta(seconds=parsed.period_s),
                timedelta(seconds=parsed.grace_s),
                timedelta(seconds=parsed.lateness_s),
                tz=timezone(timedelta(seconds=parsed.tz_offset_s)),
                max_clock_skew=None
                if parsed.max_skew_s is None
                else timedelta(seconds=parsed.max_skew_s),
                watermark_from_items=parsed.items_move_watermark,
            )
        except ValueError as exc:
            raise WindowStateError(f"invalid window configuration in state: {exc}") from exc
        windows._watermark = parsed.watermark
        windows._max_event_time = parsed.max_event_time
        windows._last_arrival = parsed.last_arrival
        for w in parsed.windows:
            start = interval_start(w.start, windows._period, windows._tz)
            if start != w.start:
                raise WindowStateError(f"window start {w.start.isoformat()} is not aligned")
            windows._windows[start] = w
        return windows
