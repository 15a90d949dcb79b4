"""A `MetricsSource` computed from functions of time, for the demo and replays without a server.

Each PromQL string the configuration resolves to is bound to a function `(t, step) -> value`; the
source answers range queries by evaluating it at every step. An unknown query is rejected the way
Prometheus rejects bad PromQL, so a demo config that drifts from its simulation fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable

from observer.sources import QueryRejected, Sample, Series

Signal = Callable[[float, float], float]


class SimulatedSource:
    """Answers `query_range` from registered signal functions."""

    def __init__(self, signals: dict[str, Signal] | None = None) -> None:
        self._signals: dict[str, Signal] = dict(signals or {})

    def bind(self, query: str, signal: Signal) -> None:
        """Answer `query` (exactly as resolved, `$step` substituted) with `signal`."""
        self._signals[query] = signal

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        signal = self._signals.get(query)
        if signal is None:
            raise QueryRejected(f"simulated source has no series for query {query!r}")
        if step <= 0:
            raise QueryRejected(f"step must be positive, got {step}")
        samples = []
        t = start
        while t <= end + 1e-9:
            samples.append(Sample(t, signal(t, step)))
            t += step
        return [Series(labels={}, samples=tuple(samples))] if samples else []
