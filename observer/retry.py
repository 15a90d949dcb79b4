"""Trying a failed call again: one retryable-error base, one growing delay, one inline retry loop.

Every edge that speaks to a remote service maps that service's failures onto its own errors, and
the ones worth trying again later derive from `Retryable`, carrying the server's `retry_after`
when it named one::

    Retryable                      the same call may succeed later
    ├── observer.sources.SourceUnavailable     Prometheus down, slow, 5xx, 408/429
    ├── rollback.forge.ForgeUnavailable        GitHub 5xx, timeout, rate limit beyond the wait
    ├── rollback.notify.NotifyRetryable        Slack 429, 5xx, timeout
    └── rollback.fixer.FixerUnavailable        Anthropic overloaded, 429, 5xx, timeout

A failure is retried at two distances. Inside one call, `retry_inline` tries again a few times
after short waits (GitHub, Slack, Anthropic; Prometheus leaves it to the loop). Between Watch
steps, the loop leaves the action pending and comes back after `retry_delay` (`loop.watch.retry`),
which is also the growing backoff of the inline retries.

This module sits in `observer`, the bottom package, so that `observer`, `rollback` and `loop` can
all import it; it knows nothing of metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]

MAX_RETRY_AFTER = 3600.0
"""The longest wait a server's `retry-after` may impose (GitHub's primary limit resets hourly)."""


class Retryable(Exception):
    """A call failed in a way worth trying again later.

    `retry_after`, when the server said how long to wait (a rate limit), is in seconds.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`, after `attempt` (1-based) failed.

    The delay doubles per attempt from `base` up to `cap`; a positive `retry_after` is believed
    when it is longer, up to `MAX_RETRY_AFTER`, so a bogus header cannot park a caller for a day.
    """
    grown = min(base * 2.0 ** max(attempt - 1, 0), cap)
    if retry_after is not None and retry_after > 0:
        return max(grown, min(retry_after, MAX_RETRY_AFTER))
    return grown


Classify = Callable[[Exception, int], float | None]
"""Given a failure and its 1-based attempt: the seconds to wait before trying again, None when
the failure is not worth another try, or an exception raised (the edge's own, `from` it)."""


async def retry_inline(
    call: Callable[[], Awaitable[T]],
    classify: Classify,
    *,
    attempts: int,
    sleep: Sleep = asyncio.sleep,
    on_retry: Callable[[Exception, int, float], object] | None = None,
) -> T:
    """Await `call()` until it succeeds, `classify` refuses a failure, or `attempts` are spent.

    Every failure is shown to `classify`, the last one too (so it can still raise its own error
    for it); a refused failure, and the failure of the last attempt, propagate unchanged for the
    edge to map. `on_retry(failure, attempt, wait)` runs before each wait.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            wait = classify(exc, attempt)
            if wait is None or attempt >= attempts:
                raise
            if on_retry is not None:
                on_retry(exc, attempt, wait)
        await sleep(wait)
        attempt += 1
