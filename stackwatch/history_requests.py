"""When the gateway asks a logger for its history (补传 on request; HJ 212-2017 App. C part 2).

A logger that was off the network comes back and goes on from *now*: what it measured in
between is in its memory, not on the platform. The gateway sees the hole in the DataTimes of
its minute (2051) or hour (2061) uploads and asks for that range with a 2051/2061 request
carrying BeginTime/EndTime; the logger answers 9011, re-sends the records (RF=1 in HJ
212-2025) and ends with 9012. The worker then back-fills the hours they belong to.

Requests are rate-limited per logger (`min_interval_s`) and over the gateway (a token bucket of
`per_minute`), so a flapping link or a storm of reconnects cannot flood loggers or the
platform. Operators can ask for a range too (`stackwatch history request`). Pure: the
gateway (streams/gateway.py) sends what this decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

GAP_CNS = ("2051", "2061")


class HistorySettings(BaseModel):
    """When and how often the gateway asks loggers for their history."""

    enabled: bool = Field(default=True, description="Ask loggers for the data of their gaps.")
    min_gap_s: float = Field(
        default=900.0,
        gt=0,
        description="A hole this long between a logger's consecutive minute (or hour) records.",
    )
    min_interval_s: float = Field(
        default=600.0, ge=0, description="At most one request per logger this often."
    )
    per_minute: int = Field(
        default=30, ge=1, description="At most this many requests per minute, all loggers."
    )


@dataclass(frozen=True)
class HistoryRequest:
    """One range of one logger's uploads to ask for."""

    mn: str
    cn: str
    begin: datetime
    end: datetime
    reason: str


@dataclass
class _Logger:
    last: dict[str, datetime] = field(default_factory=dict)
    asked_at: float | None = None


class HistoryPlanner:
    """Finds the holes in loggers' uploads and decides which requests may go out now."""

    def __init__(
        self, settings: HistorySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._loggers: dict[str, _Logger] = {}
        self._tokens = float(settings.per_minute)
        self._refilled = clock()

    def on_upload(
        self, mn: str, cn: str | None, data_time: datetime | None, *, resent: bool
    ) -> HistoryRequest | None:
        """An accepted upload; the request to send for the hole before it, if one is due.

        Re-sent records (RF=1) fill holes; they never open one.
        """
        if cn not in GAP_CNS or data_time is None or resent or not self.settings.enabled:
            return None
        state = self._loggers.setdefault(mn, _Logger())
        previous = state.last.get(cn)
        if previous is not None and data_time <= previous:
            return None
        state.last[cn] = data_time
        if previous is None:
            return None
        gap = data_time - previous
        if gap < timedelta(seconds=self.settings.min_gap_s):
            return None
        step = timedelta(seconds=1)
        return self._allowed(
            state,
            HistoryRequest(mn, cn, previous + step, data_time - step,
                           f"no {cn} upload for {gap} before {data_time.isoformat()}"),
        )

    def on_operator(self, request: HistoryRequest) -> HistoryRequest | None:
        """An operator's request: only the gateway-wide cap applies (someone asked on
        purpose, so the per-logger spacing of automatic requests does not)."""
        state = self._loggers.setdefault(request.mn, _Logger())
        return self._allowed(state, request, per_logger=False)

    def _allowed(
        self, state: _Logger, request: HistoryRequest, *, per_logger: bool = True
    ) -> HistoryRequest | None:
        now = self.clock()
        spacing = self.settings.min_interval_s
        if per_logger and state.asked_at is not None and now - state.asked_at < spacing:
            return None
        self._tokens = min(
            float(self.settings.per_minute),
            self._tokens + (now - self._refilled) * self.settings.per_minute / 60.0,
        )
        self._refilled = now
        if self._tokens < 1.0:
            return None
        self._tokens -= 1.0
        state.asked_at = now
        return request
