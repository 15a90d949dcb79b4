"""When the loop tries a failed action again: a growing, bounded backoff that honours
`retry-after`.

A Watch never sleeps on a failing forge or chat: a retryable failure leaves the action `pending`
and the Watch is scheduled again after `retry_delay`, so other deploys keep moving. The delay
doubles per attempt from `base` up to `cap`; a server that says how long to wait (`retry-after`,
a rate limit's reset) is believed up to `MAX_RETRY_AFTER`, so a bogus header cannot park a Watch
for a day.
"""

from __future__ import annotations

INLINE_WAIT = 5.0
"""The longest a forge call may wait inside a Watch step (a short `retry-after`); a longer wait
is handed back to the loop as `ForgeUnavailable.retry_after` and becomes the Watch's next due."""

MAX_RETRY_AFTER = 3600.0
"""The longest wait a server's `retry-after` may impose (GitHub's primary limit resets hourly)."""


class ActionRetry(Exception):
    """An action failed in a way worth retrying later; the Watch is due again after `delay`."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1`, after `attempt` (1-based) failed."""
    grown = min(base * 2.0 ** max(attempt - 1, 0), cap)
    if retry_after is not None and retry_after > 0:
        return max(grown, min(retry_after, MAX_RETRY_AFTER))
    return grown
