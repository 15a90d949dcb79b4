"""How promptly the Watches are evaluated, told to whoever counts it (the app's `/metrics`).

Each step of an observing Watch (one evaluation of its SLIs) reports an `Evaluation` to
`WatchDeps.pace`: its lag (seconds from its `next_due` to the start of the evaluation, once the
Watch is read), the watch steps that passed without an evaluation because it came a step or more
late, and the Prometheus queries it made, counted through a view of the step's own source. The
app hands `loop.api.metrics.OwnMetrics`, which keeps them as histograms and counters; the demo and
the tests keep the default, `NoPace`, which drops them. Issue 14's target is read off them: lag
p99 under 3 s, no step skipped.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from observer.sources import MetricsSource, Series

if TYPE_CHECKING:
    from loop.watch.deps import WatchDeps

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One observing Watch's evaluation, as the scheduler's health sees it."""

    lag: float
    """Seconds from when it was due to when it started (never negative)."""
    skipped: int
    """Watch steps that passed without an evaluation of their own (`skipped_steps`)."""
    queries: int
    """Queries the evaluation made of the metrics source."""


class PaceRecorder(Protocol):
    """Takes each evaluation's pace; called on the event loop, so it must not block."""

    def evaluated(self, evaluation: Evaluation) -> None: ...


class NoPace:
    """The recorder when nothing counts: every evaluation is dropped."""

    def evaluated(self, evaluation: Evaluation) -> None:
        return None


def skipped_steps(lag: float, step: float) -> int:
    """Watch steps an evaluation `lag` seconds late leaves unevaluated: the next is due on the
    grid after it (`loop.watch.steps.next_step_due`), so each whole step of lag is one grid point
    that got no evaluation of its own."""
    if step <= 0 or lag <= 0:
        return 0
    return math.floor(lag / step + 1e-9)


class CountingSource:
    """`source`, counting the queries made through this view."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source
        self.queries = 0

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        self.queries += 1
        return await self._source.query_range(query, start, end, step)


async def paced(
    deps: WatchDeps, due: float, step: float, evaluate: Callable[[WatchDeps], Awaitable[T]]
) -> T:
    """Run one evaluation (`evaluate` over `deps` with its source counted) and report its pace
    to `deps.pace`, whether it ended in a transition or an error."""
    started = deps.clock.now()
    counted = CountingSource(deps.source)
    try:
        return await evaluate(replace(deps, source=counted))
    finally:
        lag = max(started - due, 0.0)
        deps.pace.evaluated(Evaluation(lag, skipped_steps(lag, step), counted.queries))
