"""When the loop tries a failed action again: a growing, bounded backoff that honours
`retry-after`.

A Watch never sleeps on a failing forge or chat: a retryable failure (`observer.retry.Retryable`)
leaves the action `pending` and the Watch is scheduled again after `retry_delay`, so other deploys
keep moving. The delay doubles per attempt from `base` up to `cap`; a server that says how long to
wait (`retry-after`, a rate limit's reset) is believed up to `MAX_RETRY_AFTER`, so a bogus header
cannot park a Watch for a day. Both come from `observer.retry`, the one retry policy of every edge.
"""

from __future__ import annotations

from observer.retry import MAX_RETRY_AFTER, retry_delay

__all__ = ["INLINE_WAIT", "MAX_RETRY_AFTER", "ActionRetry", "retry_delay"]

INLINE_WAIT = 5.0
"""The longest a forge call may wait inside a Watch step (a short `retry-after`); a longer wait
is handed back to the loop as `ForgeUnavailable.retry_after` and becomes the Watch's next due."""


class ActionRetry(Exception):
    """An action failed in a way worth retrying later; the Watch is due again after `delay`."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay
