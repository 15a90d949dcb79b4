"""One evaluation of a deploy's SLIs: query the source, align the series, run the detectors.

This is the observer's only I/O; everything it decides comes from the pure functions in `detect`.
A source failure on one SLI makes that SLI not yet judged (and inconclusive at the end of the
window), never regressed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from observer.detect import DEFAULT_SETTINGS, DetectorSettings, assess_gauge, assess_ratio, decide
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource, Series
from observer.verdict import SliResult, Status, Verdict


@dataclass(frozen=True, slots=True)
class Windows:
    """The baseline window before the deploy and the watch window after it, in Unix seconds."""

    deployed_at: float
    baseline: float
    watch: float
    step: float

    def watch_end(self, now: float) -> float:
        return min(now, self.deployed_at + self.watch)

    def complete(self, now: float) -> bool:
        return now >= self.deployed_at + self.watch


def _sum_by_time(series: Sequence[Series]) -> dict[float, float]:
    """Sum all series point-wise (a query without `sum()` may return one series per label set)."""
    out: dict[float, float] = {}
    for s in series:
        for sample in s.samples:
            if math.isfinite(sample.value):
                out[sample.t] = out.get(sample.t, 0.0) + sample.value
    return out


async def _pairs(
    source: MetricsSource, queries: dict[str, str], start: float, end: float, step: float
) -> tuple[float, float]:
    bad = _sum_by_time(await source.query_range(queries["bad"], start, end, step))
    total = _sum_by_time(await source.query_range(queries["total"], start, end, step))
    # Only steps where both are known count: a missing bad series with traffic means zero errors.
    times = [t for t in total if total[t] > 0]
    return sum(bad.get(t, 0.0) for t in times), sum(total[t] for t in times)


async def _values(
    source: MetricsSource, query: str, start: float, end: float, step: float
) -> list[float]:
    points = _sum_by_time(await source.query_range(query, start, end, step))
    return [points[t] for t in sorted(points)]


async def observe_sli(
    source: MetricsSource,
    sli: Sli,
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Query one SLI over both windows and judge it; a source error yields a not-judged result."""
    step = windows.step
    b_start, b_end = windows.deployed_at - windows.baseline + step, windows.deployed_at
    w_start, w_end = windows.deployed_at + step, windows.watch_end(now)
    complete = windows.complete(now)
    queries = sli.queries(step)
    try:
        if w_end < w_start:
            return SliResult(sli=sli.name, status=Status.OBSERVING, reason="no watch step yet")
        if sli.kind is SliKind.RATIO:
            baseline = await _pairs(source, queries, b_start, b_end, step)
            watch = await _pairs(source, queries, w_start, w_end, step)
            return assess_ratio(sli, baseline, watch, complete, settings)
        base_values = await _values(source, queries["value"], b_start, b_end, step)
        watch_values = await _values(source, queries["value"], w_start, w_end, step)
        return assess_gauge(sli, base_values, watch_values, complete, settings)
    except MetricsError as exc:
        status = Status.INCONCLUSIVE if complete else Status.OBSERVING
        return SliResult(sli=sli.name, status=status, reason=f"metrics source failed: {exc}")


async def evaluate(
    source: MetricsSource,
    slis: Sequence[Sli],
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> Verdict:
    """Evaluate every SLI of a deploy once and combine the results into a verdict."""
    results = [await observe_sli(source, sli, windows, now, settings) for sli in slis]
    return decide(slis, results, windows.complete(now))
