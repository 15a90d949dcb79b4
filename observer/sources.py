"""The `MetricsSource` boundary: where series come from (Prometheus, recorded, simulated).

Exception tree::

    MetricsError               anything a source could not answer
    ├── SourceUnavailable      the backend is down, timed out or answered 5xx: try again later
                               (also an `observer.retry.Retryable`; no source retries inline)
    └── QueryRejected          the backend refused the query (bad PromQL, too many points)

"No data" is not an error: a source returns an empty list and the detector calls it inconclusive.

`BoundedSource` is a view of a source that runs at most so many of its queries at once: the loop
gives each Watch step one, so a Watch's queries are bounded by its own limit and never wait for
another Watch's (a shared limit is one that hung queries fill).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from observer.retry import Retryable


class MetricsError(Exception):
    """A source could not answer a query; the message says which query and why."""


class SourceUnavailable(MetricsError, Retryable):
    """The backend is unreachable, timed out or failed; the same query may work later."""


class QueryRejected(MetricsError):
    """The backend refused the query itself; retrying will not help."""


TIME_RESOLUTION = 1e-3
"""Seconds a point's time may sit from the grid time it was asked for: Prometheus rounds a range
query's start and end to the nearest millisecond and answers times in whole milliseconds, so for
a deploy timed by `time.time()` each point comes back up to half a millisecond early or late."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One point: `t` in Unix seconds, `value` as a float (NaN kept as NaN)."""

    t: float
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One labelled series of a range query, samples in time order."""

    labels: dict[str, str] = field(hash=False)
    samples: tuple[Sample, ...]


class MetricsSource(Protocol):
    """Answers PromQL range queries; times are Unix seconds, `step` is seconds."""

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at `start, start+step, …, end`; raise `MetricsError` on failure."""
        ...


class BoundedSource:
    """`source`, running at most `limit` of the queries made through this view at once."""

    def __init__(self, source: MetricsSource, limit: int) -> None:
        if limit < 1:
            raise ValueError("a source needs room for at least one query")
        self._source = source
        self._gate = asyncio.Semaphore(limit)

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        async with self._gate:
            return await self._source.query_range(query, start, end, step)
