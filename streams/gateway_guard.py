"""Throttling, back-off and bans at the gateway: password guessing and floods (no I/O).

A logger's PW is short; without limits anyone reaching the port could try every six-digit
value, and every distinct guess costs a scrypt (`stackwatch.registry_hash`). So the gateway
counts wrong passwords per MN and per source IP (`FailureTracker`): after `free_attempts` each
further attempt waits an exponentially growing back-off, and `ban_after` wrong passwords
within `window_s` ban the MN or the IP for `ban_s` and raise a security alert. While an MN or
an IP is blocked its frames are refused *without* checking the password, so the answer says
nothing about whether a guess was right. A connection that proved the MN's password before
the block began keeps its MN, whatever the block (the real logger is not locked out by someone
guessing its PW, nor by a neighbour behind the same NAT address).

Per source IP there is also a connection cap and a token bucket (frames/s) that delays reading
(TCP backpressure) instead of refusing. Sources in `exempt_networks` (by default this host:
replays and benchmarks) skip the per-IP limits; per-MN limits apply to everyone.
Every clock is injected (`monotonic` seconds), so tests drive time by hand.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stackwatch.settings import GatewayGuardSettings
from stackwatch.token_bucket import TokenBucket

__all__ = ["Block", "FailureTracker", "GatewayGuard", "LogThrottle"]

Clock = Callable[[], float]

#: The gateway's reasons for frames refused unchecked.
REASON_BANNED = "banned"
REASON_LOCKED_OUT = "locked_out"


@dataclass(frozen=True)
class Block:
    """Why attempts for a key are refused right now, and until when (monotonic seconds)."""

    reason: str  # REASON_BANNED or REASON_LOCKED_OUT
    since: float
    until: float


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    block: Block | None = None


class FailureTracker:
    """Wrong passwords of one kind of key (MN or source IP) with back-off and bans."""

    def __init__(self, settings: GatewayGuardSettings) -> None:
        self.s = settings
        self._keys: dict[str, _Failures] = {}

    def blocked(self, key: str, now: float) -> Block | None:
        """The block in force for `key` at `now`, if any."""
        entry = self._keys.get(key)
        if entry is None or entry.block is None:
            return None
        if now >= entry.block.until:
            if entry.block.reason == REASON_BANNED:
                entry.times.clear()  # a ban served wipes the slate
            entry.block = None
            return None
        return entry.block

    def failures(self, key: str, now: float) -> int:
        """Wrong passwords of `key` still inside the window."""
        entry = self._keys.get(key)
        if entry is None:
            return 0
        self._expire(entry, now)
        return len(entry.times)

    def _expire(self, entry: _Failures, now: float) -> None:
        while entry.times and entry.times[0] <= now - self.s.window_s:
            entry.times.popleft()

    def failure(self, key: str, now: float) -> tuple[Block | None, bool]:
        """Record a wrong password: the block it starts, and whether that is a new ban (the
        moment of the security alert)."""
        entry = self._keys.setdefault(key, _Failures())
        current = self.blocked(key, now)  # first: a ban served ends (and wipes its slate)
        was_banned = current is not None and current.reason == REASON_BANNED
        self._expire(entry, now)
        entry.times.append(now)
        n = len(entry.times)
        if n >= self.s.ban_after:
            entry.block = Block(REASON_BANNED, now, now + self.s.ban_s)
        elif n >= self.s.free_attempts and self.s.backoff_base_s > 0:
            delay = min(self.s.backoff_base_s * 2.0 ** (n - self.s.free_attempts),
                        self.s.backoff_max_s)
            entry.block = Block(REASON_LOCKED_OUT, now, now + delay)
        if len(self._keys) > self.s.max_tracked:
            self._prune(now)
        new_ban = entry.block is not None and entry.block.reason == REASON_BANNED
        return entry.block, new_ban and not was_banned

    def _prune(self, now: float) -> None:
        """Forget keys with nothing in the window and no block (bounds memory)."""
        for key in list(self._keys):
            entry = self._keys[key]
            self._expire(entry, now)
            if not entry.times and self.blocked(key, now) is None:
                del self._keys[key]


class LogThrottle:
    """At most one line per `interval_s`; says how many were held back in between."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = float("-inf")
        self.suppressed = 0

    def allow(self, now: float) -> int | None:
        """None = stay quiet; else log now, with the count of lines suppressed since the last."""
        if now < self._next:
            self.suppressed += 1
            return None
        held, self.suppressed = self.suppressed, 0
        self._next = now + self.interval_s
        return held


class GatewayGuard:
    """The gateway's per-MN and per-IP limits (one instance per gateway)."""

    def __init__(self, settings: GatewayGuardSettings, clock: Clock) -> None:
        self.s = settings
        self.clock = clock
        self.by_mn = FailureTracker(settings)
        self.by_ip = FailureTracker(settings)
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in settings.exempt_networks]
        self._connections: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def exempt(self, host: str) -> bool:
        """Whether `host` skips the per-IP limits (a source in `exempt_networks`)."""
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(addr in net for net in self._exempt)

    # --- connections ------------------------------------------------------------------------

    def admit(self, host: str) -> str | None:
        """Count a new connection from `host`; the refusal reason instead if it may not."""
        if not self.exempt(host):
            if self.by_ip.blocked(host, self.clock()) is not None:
                return "banned_ip"
            if self._connections.get(host, 0) >= self.s.max_connections_per_ip:
                return "max_connections_per_ip"
        self._connections[host] = self._connections.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        """An admitted connection from `host` ended."""
        left = self._connections.get(host, 0) - 1
        if left > 0:
            self._connections[host] = left
        else:
            self._connections.pop(host, None)
            self._buckets.pop(host, None)

    def wait_for_token(self, host: str) -> float:
        """Seconds the connection must wait before its next frame (0 = go on)."""
        if self.exempt(host):
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(
                self.s.frames_per_s_per_ip, self.s.burst_per_ip, now
            )
        return bucket.take(now)

    # --- passwords ----------------------------------------------------------------------------

    def refusal(self, host: str, mn: str | None, trusted_since: float | None) -> tuple[str, str]:
        """(reason, scope) if a frame of `mn` from `host` is refused unchecked, else ("", "").

        `trusted_since`: when this connection first proved the MN's password; a block (of the
        MN or of the IP) that began later does not apply to its frames of that MN.
        """
        now = self.clock()

        def applies(block: Block | None) -> bool:
            return block is not None and (trusted_since is None or trusted_since >= block.since)

        if not self.exempt(host):
            block = self.by_ip.blocked(host, now)
            if block is not None and applies(block):
                return block.reason, "ip"
        if mn is not None:
            block = self.by_mn.blocked(mn, now)
            if block is not None and applies(block):
                return block.reason, "mn"
        return "", ""

    def bad_password(self, host: str, mn: str | None) -> list[tuple[str, str, int]]:
        """Record a wrong password; the bans it starts as (scope, key, failures)."""
        now = self.clock()
        banned: list[tuple[str, str, int]] = []
        if mn is not None and self.by_mn.failure(mn, now)[1]:
            banned.append(("mn", mn, self.by_mn.failures(mn, now)))
        if not self.exempt(host) and self.by_ip.failure(host, now)[1]:
            banned.append(("ip", host, self.by_ip.failures(host, now)))
        return banned
