"""The processor's window routing: items into their hour and day windows, late ones into the
archived period (补传), closed windows out to `stackwatch.period_closing`.

A layer of `stackwatch.processor.StackProcessor` (state in `stackwatch.processor_state`).
Every item goes in typed (`stackwatch.window_items`) and is stored as its JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any, Literal

from stackwatch.alerts import provisional_condition
from stackwatch.compliance import RollingMean
from stackwatch.period_means import STOP_FLAG
from stackwatch.processor_config import Outputs
from stackwatch.processor_state import (
    DAY,
    HOUR,
    LimitsSource,
    ProcessorState,
    from_iso,
    iso,
    limits_on,
)
from stackwatch.quality import QualityConfig
from stackwatch.stack_limits import StackLimits
from stackwatch.window_archive import archived, reopened
from stackwatch.window_items import MinuteItem, StoredItem
from stackwatch.windows import AddResult, AddStatus, ClosedWindow

PeriodKind = Literal["hour", "day"]


class WindowRouting(ProcessorState, ABC):
    """Puts items in the processor's windows and hands closed windows to the closing layer
    (`stackwatch.period_closing.PeriodClosing` implements the three `_close_*` below)."""

    # ------------------------------------------------------------------ closing (next layer)

    @abstractmethod
    def _close_realtime_minute(
        self, closed: ClosedWindow, limits: StackLimits, out: Outputs
    ) -> None:
        """Implemented by `stackwatch.period_closing.PeriodClosing`."""

    @abstractmethod
    def _close_hour(
        self,
        closed: ClosedWindow,
        limits: StackLimits,
        out: Outputs,
        *,
        late: bool = False,
        provisional: bool = False,
    ) -> None:
        """Implemented by `stackwatch.period_closing.PeriodClosing`."""

    @abstractmethod
    def _close_day(self, closed: ClosedWindow, limits: StackLimits, out: Outputs) -> None:
        """Implemented by `stackwatch.period_closing.PeriodClosing`."""

    # ------------------------------------------------------------------ minutes

    def _minute_into_hour(
        self, item: MinuteItem, length: timedelta, limits: LimitsSource, out: Outputs
    ) -> None:
        result = self._add_item("hour", item.placement, iso(item.stamp), item, limits, out)
        if not result.accepted or result.status is AddStatus.DUPLICATE:
            return  # a re-delivered minute: its detectors and rolling mean already saw it
        start, end = item.span(int(length.total_seconds()))
        stack_limits = limits_on(limits, start)
        qcfg = self._quality_cfg(length)
        valid_flags = self.cfg.averaging.flags.valid_flags
        for code, (value, flag, zs) in item.factors.items():
            flag_used = STOP_FLAG if item.stopped else flag
            self._observe_all(self.quality.on_value(code, start, value, flag_used, qcfg), out)
            limit = stack_limits.ultra_low(code)
            if limit is None:
                continue
            basis_value = zs if limit.ref_o2 is not None else value
            valid = basis_value is not None and flag_used in valid_flags
            rolling = self.rolling.setdefault(
                code, RollingMean(min_count=self.cfg.provisional_min_minutes)
            )
            snap = rolling.add(end, basis_value, valid, length.total_seconds() / 60)
            cond = provisional_condition(
                self.stack_id,
                code,
                snap,
                limit.limit_mg_m3,
                ref_o2=limit.ref_o2,
                limit_kind=limit.kind.value,
            )
            if cond is not None:
                self._observe(cond.model_copy(update={"flag": flag_used}), out)

    def _quality_cfg(self, length: timedelta) -> QualityConfig:
        """Detector thresholds for records of `length`: a run continues across one record gap,
        and a record counts for its whole interval."""
        key = int(length.total_seconds())
        cfg = self._quality_cfgs.get(key)
        if cfg is None:
            q = self.cfg.quality
            cfg = q.model_copy(
                update={
                    "minute_interval": length,
                    "run_max_gap": max(q.run_max_gap, length + length / 2),
                }
            )
            self._quality_cfgs[key] = cfg
        return cfg

    # ------------------------------------------------------------------ windows

    def _add_item(
        self,
        kind: PeriodKind,
        at: datetime,
        key: str,
        item: StoredItem,
        limits: LimitsSource,
        out: Outputs,
    ) -> AddResult:
        """Put an item in its hour or day window (as its JSON); a finalised one goes to
        back-fill."""
        windows = self.hours if kind == "hour" else self.days
        data = item.to_json()
        result = windows.add(at, data, key=key, arrival=self.clock_arrival)
        if result.status is AddStatus.TOO_LATE and result.window_start is not None:
            self._backfill(kind, result.window_start, key, at, data, limits, out)
        elif not result.accepted:
            out.late.append(f"{kind} item {key}: {result.reason or result.status.value}")
        return result

    def _backfill(
        self,
        kind: PeriodKind,
        start: datetime,
        key: str,
        at: datetime,
        item: dict[str, Any],
        limits: LimitsSource,
        out: Outputs,
    ) -> None:
        """A record (`item`: its JSON) for a finalised period: recompute the archived period
        (补传)."""
        end = start + (HOUR if kind == "hour" else DAY)
        if self.clock_event is not None and end + self.cfg.backfill_horizon < self.clock_event:
            out.late.append(
                f"{kind} item {key}: period {iso(start)} ended more than "
                f"{self.cfg.backfill_horizon} before the stack's clock {iso(self.clock_event)} "
                "(back-fill horizon)"
            )
            return
        akey = f"{kind}|{iso(start)}"
        entry = self.archive.get(akey) or {"emissions": 0, "items": {}}
        items: dict[str, list[Any]] = dict(entry["items"])
        if key in items and items[key][1] == item:
            return  # the same record again: nothing new
        items[key] = [iso(at), item]
        closed = reopened(start, end, {"emissions": entry["emissions"], "items": items})
        self.archive.put(akey, {"emissions": closed.revision + 1, "items": items})
        self.archived[akey] = iso(end + self.cfg.backfill_horizon)
        if kind == "hour":
            self._close_hour(closed, limits_on(limits, start), out, late=True)
        else:
            self._close_day(closed, limits_on(limits, start), out)

    def _archive_dropped(self) -> None:
        for kind, windows in (("hour", self.hours), ("day", self.days)):
            for closed in windows.dropped:
                akey = f"{kind}|{iso(closed.start)}"
                self.archive.put(akey, archived(closed))
                self.archived[akey] = iso(closed.end + self.cfg.backfill_horizon)
            windows.dropped.clear()

    def _prune_archive(self, clock: datetime) -> None:
        for akey, until in sorted(self.archived.items()):
            if from_iso(until) < clock:
                self.archive.delete(akey)
                del self.archived[akey]

    def _advance(self, clock: datetime, limits: LimitsSource) -> Outputs:
        out = Outputs()
        for closed in self.rt.advance(clock):
            self._close_realtime_minute(closed, limits_on(limits, closed.start), out)
        for closed in self.hours.advance(clock):
            self._close_hour(closed, limits_on(limits, closed.start), out)
        for closed in self.days.advance(clock):
            self._close_day(closed, limits_on(limits, closed.start), out)
        self._archive_dropped()
        return out
