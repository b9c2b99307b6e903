"""Backoff policy and the retry loop of the storage writer, with an explicit clock.

The fake clock advances only when the code under test sleeps, so the schedule of retries is
checked exactly and instantly (no real sleeping, no timed assertions).
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from sinks.db_errors import is_transient
from sinks.retry import retry_transient
from stackwatch.backoff import BackoffPolicy


class FakeClock:
    """Monotonic time that moves only when `sleep` is awaited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_delays_double_from_initial_up_to_the_cap() -> None:
    policy = BackoffPolicy(initial_s=0.5, multiplier=2.0, max_s=30.0, jitter=0.2)
    # u = 0.5 → jitter factor 1 − 0.2 + 2·0.2·0.5 = 1.0: the bare exponential.
    # 0.5·2⁰ … 0.5·2⁵ = 0.5, 1, 2, 4, 8, 16; 0.5·2⁶ = 32 > 30 → 30; stays 30.
    assert [policy.delay(n, 0.5) for n in range(1, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert policy.delay(10_000, 0.5) == 30.0  # no overflow for very long outages


def test_jitter_bounds() -> None:
    policy = BackoffPolicy(initial_s=1.0, multiplier=2.0, max_s=30.0, jitter=0.25)
    # attempt 3: base 1·2² = 4 s; u = 0 → 4·0.75 = 3.0; u → 1 → 4·1.25 = 5.0.
    assert policy.delay(3, 0.0) == 3.0
    assert policy.delay(3, 0.999999) == pytest.approx(5.0, abs=1e-5)
    # At the cap the jitter may only lower the delay: 30·1.25 = 37.5 is capped to 30.
    assert policy.delay(20, 0.999999) == 30.0
    assert policy.delay(20, 0.0) == 22.5  # 30 × 0.75


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": 5.0, "max_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy().delay(0)


def test_error_classification() -> None:
    assert is_transient(psycopg.OperationalError("connection refused"))
    assert is_transient(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_transient(psycopg.errors.UndefinedTable("relation does not exist"))  # not migrated
    assert is_transient(ConnectionResetError())
    assert not is_transient(psycopg.errors.CheckViolation("valid_count <= total_count"))
    assert not is_transient(psycopg.errors.InvalidTextRepresentation("bad input"))
    assert not is_transient(psycopg.errors.ProgramLimitExceeded("index row too large"))
    assert not is_transient(ValueError("a bug, not the database"))


async def test_retry_until_the_database_returns() -> None:
    clock = FakeClock()
    failures = [psycopg.OperationalError("down")] * 4
    seen: list[tuple[int, float]] = []

    async def operation() -> str:
        if failures:
            raise failures.pop()
        return f"written at t={clock.now}"

    result = await retry_transient(
        operation,
        policy=BackoffPolicy(initial_s=0.5, multiplier=2.0, max_s=3.0, jitter=0.0),
        sleep=clock.sleep,
        rand=lambda: 0.0,
        on_failure=lambda n, _exc, delay: seen.append((n, delay)),
    )
    # Sleeps 0.5, 1, 2, then 4 capped at 3: t = 0.5 + 1 + 2 + 3 = 6.5 s at the 5th attempt.
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0]
    assert seen == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0)]
    assert result == "written at t=6.5"


async def test_non_transient_errors_propagate_without_sleeping() -> None:
    clock = FakeClock()

    async def operation() -> None:
        raise psycopg.errors.CheckViolation("bad row")

    with pytest.raises(psycopg.errors.CheckViolation):
        await retry_transient(operation, policy=BackoffPolicy(), sleep=clock.sleep)
    assert clock.sleeps == []


async def test_cancellation_is_never_retried_even_when_everything_else_is() -> None:
    clock = FakeClock()

    async def operation() -> None:
        raise asyncio.CancelledError  # worker shutdown: stops the loop at once

    with pytest.raises(asyncio.CancelledError):
        await retry_transient(
            operation, policy=BackoffPolicy(), sleep=clock.sleep, retryable=lambda _exc: True
        )
    assert clock.sleeps == []
