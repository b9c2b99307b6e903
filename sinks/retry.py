"""The sinks' retry loop: exponential backoff with jitter, retried by tenacity.

:func:`retry_transient` is the one retry loop of the storage writers (batch writes, schema and
registry preparation): tenacity runs it, the shared :class:`~stackwatch.backoff.BackoffPolicy`
says how long to wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never

from sinks.db_errors import is_transient
from stackwatch.backoff import BackoffPolicy

__all__ = ["retry_transient"]

T = TypeVar("T")


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: BackoffPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_failure: Callable[[int, BaseException, float], None] | None = None,
    retryable: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run `operation` until it succeeds, sleeping `policy.delay(n, rand())` after each retryable
    failure; any other exception propagates at once. Never gives up by itself: the caller
    stops it by cancellation (worker shutdown)."""

    def should_retry(exc: BaseException) -> bool:
        # Only errors (Exception) are retried: cancellation and exits always propagate.
        return isinstance(exc, Exception) and retryable(exc)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if on_failure is not None and exc is not None:  # only failures are retried
            on_failure(state.attempt_number, exc, state.upcoming_sleep)

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop_never,
        wait=policy.wait(rand),
        retry=retry_if_exception(should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(operation)
