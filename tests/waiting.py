"""Waiting on a condition rather than for a fixed time.

`wait_for` (for sync code) and `wait_for_async` poll a predicate until it returns something
truthy, and return that. Past `within` seconds they raise `TimeoutError` saying what was
awaited, the predicate's last answer and, when given, `detail()` (a server's log tail, say).
The polling interval only says how often to look: a test is as quick as its condition allows
and as patient as `within`, however loaded the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.05
"""Seconds between two looks at the condition."""
_LAST_CHARS = 500


def wait_for(
    predicate: Callable[[], T],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call `predicate` until it returns something truthy; that value, or `TimeoutError`."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(_message(what, within, value, detail))
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    interval: float = INTERVAL,
    detail: Callable[[], str] | None = None,
) -> T:
    """Await `predicate()` until it gives something truthy; that value, or `TimeoutError`."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(_message(what, within, value, detail))
        await asyncio.sleep(interval)


def _message(what: str, within: float, last: object, detail: Callable[[], str] | None) -> str:
    shown = repr(last)
    if len(shown) > _LAST_CHARS:
        shown = shown[:_LAST_CHARS] + "..."
    message = f"waited {within:g}s for {what}; last answer: {shown}"
    return message + (f"\n{detail()}" if detail is not None else "")
