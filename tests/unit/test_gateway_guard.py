"""The gateway guard's pure parts with a hand-driven clock: token bucket, back-off and bans,
per-IP connection caps, trusted connections and the log throttle. Expected figures are worked
out by hand in the comments."""

from __future__ import annotations

import pytest

from stackwatch.settings import GatewayGuardSettings
from stackwatch.token_bucket import TokenBucket
from streams.gateway_guard import FailureTracker, GatewayGuard, LogThrottle


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert b.take(0.0) == pytest.approx(0.5)  # 1 token at 2/s
    assert b.take(0.25) == pytest.approx(0.25)  # half a token there, half to go
    assert b.take(0.5) == 0.0
    assert [b.take(100.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]  # capped


def test_back_off_doubles_then_ban() -> None:
    s = GatewayGuardSettings(free_attempts=3, backoff_base_s=2, backoff_max_s=300, ban_after=6,
                             ban_s=100, window_s=1000)
    t = FailureTracker(s)
    assert t.failure("MN", 0.0) == (None, False)
    assert t.failure("MN", 1.0) == (None, False)
    block, _ = t.failure("MN", 2.0)  # third: back-off 2·2⁰ = 2 s, until 4
    assert block is not None and (block.reason, block.until) == ("locked_out", 4.0)
    assert t.blocked("MN", 3.9) is not None and t.blocked("MN", 4.0) is None
    assert t.failure("MN", 4.0)[0].until == 8.0  # type: ignore[union-attr]  # 2·2¹ = 4 s
    assert t.failure("MN", 8.0)[0].until == 16.0  # type: ignore[union-attr]  # 2·2² = 8 s
    block, new_ban = t.failure("MN", 16.0)  # sixth: banned for 100 s
    assert new_ban and block is not None and (block.reason, block.until) == ("banned", 116.0)
    assert t.blocked("MN", 115.9) is not None
    assert t.blocked("MN", 116.0) is None and t.failures("MN", 116.0) == 0  # slate wiped
    assert t.blocked("OTHER", 50.0) is None


def test_failures_leave_the_window() -> None:
    s = GatewayGuardSettings(free_attempts=3, backoff_base_s=0, ban_after=3, window_s=10)
    t = FailureTracker(s)
    t.failure("MN", 0.0)
    t.failure("MN", 5.0)
    assert t.failure("MN", 10.5) == (None, False)  # the one at 0 left the window: 2 in it
    assert t.failure("MN", 11.0)[1]  # 5, 10.5, 11: the third within 10 s bans


def test_guard_refuses_blocked_mn_and_ip_but_not_a_trusted_connection() -> None:
    clock = Clock()
    g = GatewayGuard(GatewayGuardSettings(backoff_base_s=0, ban_after=2, ban_s=60,
                                          exempt_networks=["127.0.0.1/32"]), clock)
    clock.t = 10.0
    assert g.bad_password("10.0.0.9", "MN") == []
    clock.t = 11.0
    assert g.bad_password("10.0.0.9", "MN") == [("mn", "MN", 2), ("ip", "10.0.0.9", 2)]
    assert g.refusal("10.0.0.9", "MN", None) == ("banned", "ip")
    assert g.refusal("10.0.0.9", "MN", 5.0) == ("", "")  # its MN proved before: served
    assert g.refusal("10.0.0.8", "MN", None) == ("banned", "mn")
    assert g.refusal("10.0.0.8", "MN", 11.0) == ("banned", "mn")  # proved at the ban: no
    assert g.refusal("10.0.0.8", "MN", 5.0) == ("", "")  # proved before it: still served
    assert g.refusal("10.0.0.8", "MN2", None) == ("", "")
    assert g.admit("10.0.0.9") == "banned_ip"
    # this host is exempt from per-IP counting: its wrong passwords only count per MN
    assert g.bad_password("127.0.0.1", "MN3") == []
    assert g.bad_password("127.0.0.1", "MN3") == [("mn", "MN3", 2)]
    clock.t = 71.0
    assert g.refusal("10.0.0.9", "MN", None) == ("", "")  # both bans served


def test_connections_per_ip() -> None:
    g = GatewayGuard(GatewayGuardSettings(max_connections_per_ip=2, exempt_networks=["::1/128"]),
                     Clock())
    assert [g.admit("10.0.0.1") for _ in range(3)] == [None, None, "max_connections_per_ip"]
    g.release("10.0.0.1")
    assert g.admit("10.0.0.1") is None
    assert g.admit("10.0.0.2") is None  # another source has its own cap
    assert all(g.admit("::1") is None for _ in range(5))  # exempt


def test_rate_limit_per_ip_uses_the_bucket() -> None:
    clock = Clock()
    g = GatewayGuard(GatewayGuardSettings(frames_per_s_per_ip=10, burst_per_ip=2,
                                          exempt_networks=[]), clock)
    assert [g.wait_for_token("10.0.0.1") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    assert g.wait_for_token("10.0.0.2") == 0.0
    clock.t = 0.1
    assert g.wait_for_token("10.0.0.1") == 0.0


def test_log_throttle() -> None:
    t = LogThrottle(10.0)
    assert t.allow(0.0) == 0
    assert t.allow(1.0) is None and t.allow(9.9) is None
    assert t.allow(10.0) == 2  # two lines held back
    assert LogThrottle(0.0).allow(0.0) == 0 and LogThrottle(0.0).allow(0.0) == 0
