"""One evaluation of a deploy's SLIs: query the source, align the series, run the detectors.

This is the observer's only I/O; everything it decides comes from the pure functions in
`sequential`, `gauge` and `detect`. Fetching and judging are separate (`fetch_sli`, `judge`) so
that a backtest can fetch a whole watch once and judge it step by step exactly as the Watch did.

Baselines: the window before the deploy plus, where history exists, the same watch window one day
and one week earlier (`Windows.seasonal`); in canary mode (an SLI with `version_label`) the
stable version over the same steps. A source failure on one SLI makes that SLI not yet judged
(and inconclusive at the end of the window), never regressed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from opentelemetry import trace

from observer.detect import DEFAULT_SETTINGS, DetectorSettings, decide
from observer.early_warning import early_warning
from observer.gauge import assess_gauge_baselines
from observer.sequential import Baseline, Step, assess_ratio_steps
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource, QueryRejected, Series
from observer.verdict import SliResult, Status, Verdict

T = TypeVar("T")
tracer = trace.get_tracer("rearguard.observer")

SEASONAL_LABELS = {86400.0: "1d", 604800.0: "7d"}

Point = tuple[float, float, float]
"""(t, bad, total) for ratio SLIs, (t, value, 0) for gauges; `t` in Unix seconds."""


@dataclass(frozen=True, slots=True)
class Windows:
    """The baseline window before the deploy and the watch window after it, in Unix seconds.

    `seasonal` holds offsets (seconds) of earlier copies of the watch window used as extra
    baselines; `version` is the deployed version a canary-mode SLI's label is matched against.
    """

    deployed_at: float
    baseline: float
    watch: float
    step: float
    seasonal: tuple[float, ...] = ()
    version: str = ""

    def watch_end(self, now: float) -> float:
        return min(now, self.deployed_at + self.watch)

    def complete(self, now: float) -> bool:
        return now >= self.deployed_at + self.watch

    @property
    def horizon(self) -> int:
        """Steps in the whole watch window."""
        return max(1, round(self.watch / self.step))


@dataclass(frozen=True, slots=True)
class SliData:
    """What one SLI's queries returned: per-step points of the watch and of each baseline.

    Ratio points are (t, bad, total), gauge points (t, value, 0); `t` is Unix seconds.
    """

    watch: tuple[Point, ...]
    baselines: tuple[tuple[str, tuple[Point, ...]], ...]
    queries: dict[str, str]
    windows: dict[str, list[float]]
    mode: str


def _matches(value: str, version: str) -> bool:
    return (
        bool(value) and bool(version) and (version.startswith(value) or value.startswith(version))
    )


def _split(series: Sequence[Series], label: str, version: str) -> tuple[list[Series], list[Series]]:
    """Canary-mode split: series whose `label` names `version`, and every other series."""
    canary = [s for s in series if _matches(s.labels.get(label, ""), version)]
    stable = [s for s in series if not _matches(s.labels.get(label, ""), version)]
    return canary, stable


def _sum_by_time(series: Sequence[Series]) -> dict[float, float]:
    """Sum all series point-wise (a query without `sum()` may return one series per label set)."""
    out: dict[float, float] = {}
    for s in series:
        for sample in s.samples:
            if math.isfinite(sample.value):
                out[sample.t] = out.get(sample.t, 0.0) + sample.value
    return out


def _ratio_points(bad: Sequence[Series], total: Sequence[Series]) -> tuple[Point, ...]:
    """Steps where the total is known; a missing bad series with traffic means zero bad events."""
    b, t = _sum_by_time(bad), _sum_by_time(total)
    return tuple(
        (ts, min(max(b.get(ts, 0.0), 0.0), t[ts]), t[ts]) for ts in sorted(t) if t[ts] >= 0
    )


def _gauge_points(series: Sequence[Series]) -> tuple[Point, ...]:
    points = _sum_by_time(series)
    return tuple((t, points[t], 0.0) for t in sorted(points))


async def _points(
    source: MetricsSource, sli: Sli, queries: dict[str, str], span: list[float], step: float
) -> dict[str, tuple[list[Series], ...]]:
    """Raw series per role for one window."""
    start, end = span
    if sli.kind is SliKind.RATIO:
        bad, total = await _all(
            source.query_range(queries["bad"], start, end, step),
            source.query_range(queries["total"], start, end, step),
        )
        return {"ratio": (bad, total)}
    return {"gauge": (await source.query_range(queries["value"], start, end, step),)}


async def _all(*calls: Awaitable[T]) -> list[T]:
    """Await the queries together (each one round trip to the source, not one after another);
    the first error is raised once all have ended, so none is left running or unobserved."""
    done = await asyncio.gather(*calls, return_exceptions=True)
    for item in done:
        if isinstance(item, BaseException):
            raise item
    return cast(list[T], done)


def _reduce(sli: Sli, raw: dict[str, tuple[list[Series], ...]]) -> tuple[Point, ...]:
    if sli.kind is SliKind.RATIO:
        bad, total = raw["ratio"]
        return _ratio_points(bad, total)
    return _gauge_points(raw["gauge"][0])


async def fetch_points(
    source: MetricsSource, sli: Sli, span: list[float], step: float
) -> tuple[Point, ...]:
    """One SLI's per-step points over `span` (ratio: (t, bad, total); gauge: (t, value, 0))."""
    return _reduce(sli, await _points(source, sli, sli.queries(step), span, step))


async def fetch_sli(source: MetricsSource, sli: Sli, windows: Windows, now: float) -> SliData:
    """Query one SLI's watch window so far and its baselines; raises `MetricsError`."""
    step = windows.step
    queries = sli.queries(step)
    watch_span = [windows.deployed_at + step, windows.watch_end(now)]
    spans = {"watch": watch_span}
    if sli.version_label:
        with tracer.start_as_current_span("prometheus.fetch"):
            raw = await _points(source, sli, queries, watch_span, step)
        canary_raw = {k: tuple(_split(v, sli.version_label, windows.version)[0] for v in vs)
                      for k, vs in raw.items()}  # fmt: skip
        stable_raw = {k: tuple(_split(v, sli.version_label, windows.version)[1] for v in vs)
                      for k, vs in raw.items()}  # fmt: skip
        stable = (("stable", _reduce(sli, stable_raw)),)
        return SliData(_reduce(sli, canary_raw), stable, queries, spans, "canary")
    spans["before"] = [windows.deployed_at - windows.baseline + step, windows.deployed_at]
    for offset in windows.seasonal:
        label = SEASONAL_LABELS.get(offset, f"{offset:.0f}s")
        # The whole watch window, not just its elapsed part: a thin baseline would only widen
        # the null's confidence bound and slow detection without telling more about the season.
        whole = windows.deployed_at + windows.watch
        spans[label] = [watch_span[0] - offset, min(whole - offset, now)]
    labels = list(spans)  # "watch" first, then the baselines in order
    with tracer.start_as_current_span("prometheus.fetch"):
        fetched = await _all(
            *(_points(source, sli, queries, spans[label], step) for label in labels)
        )
    points = [_reduce(sli, r) for r in fetched]
    baselines = tuple(zip(labels[1:], points[1:], strict=True))
    return SliData(points[0], baselines, queries, spans, "before_after")


def judge(
    sli: Sli,
    data: SliData,
    windows: Windows,
    upto: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge `data` as it stood at `upto` (Unix seconds): the pure half of an evaluation."""
    complete = windows.complete(upto)
    end = windows.watch_end(upto)
    watch = [p for p in data.watch if p[0] <= end + 1e-6]
    if data.mode == "canary":  # the stable version over the same steps only
        baselines = [
            (label, [p for p in pts if p[0] <= end + 1e-6]) for label, pts in data.baselines
        ]
    else:
        baselines = [(label, list(pts)) for label, pts in data.baselines]
    if sli.kind is SliKind.RATIO:
        result = assess_ratio_steps(
            sli,
            [
                Baseline(label, sum(p[1] for p in pts), sum(p[2] for p in pts))
                for label, pts in baselines
            ],
            [Step(p[0] - windows.deployed_at, p[1], p[2]) for p in watch],
            complete=complete,
            horizon=windows.horizon,
            step_seconds=windows.step,
            settings=settings,
        )
    else:
        result = assess_gauge_baselines(
            sli, [(label, [p[1] for p in pts]) for label, pts in baselines if pts],
            [p[1] for p in watch], complete, settings,
        )  # fmt: skip
    windows_json = {**data.windows, "watch": [data.windows["watch"][0], end]}
    before = next((pts for label, pts in baselines if label == "before"), [])
    warning = early_warning(
        watch, before, deployed_at=windows.deployed_at, step=windows.step, end=end,
        ratio=sli.kind is SliKind.RATIO, traffic_drop=sli.traffic_drop,
    )  # fmt: skip
    return replace(
        result, queries=dict(data.queries), windows=windows_json, mode=data.mode,
        warning=str(warning.reason) if warning else "",
        warning_detail=warning.detail if warning else "",
    )  # fmt: skip


async def observe_sli(
    source: MetricsSource,
    sli: Sli,
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Query one SLI over its windows and judge it; a source error yields a not-judged result."""
    if windows.watch_end(now) < windows.deployed_at + windows.step:
        return SliResult(sli=sli.name, status=Status.OBSERVING, reason="no watch step yet")
    try:
        data = await fetch_sli(source, sli, windows, now)
    except MetricsError as exc:
        status = Status.INCONCLUSIVE if windows.complete(now) else Status.OBSERVING
        cause = "query_rejected" if isinstance(exc, QueryRejected) else "source_unavailable"
        return SliResult(
            sli=sli.name, status=status, reason=f"metrics source failed: {exc}",
            queries=sli.queries(windows.step), failure=cause,
        )  # fmt: skip
    result = judge(sli, data, windows, now, settings)
    if not data.watch and not any(points for _, points in data.baselines):
        return replace(result, failure="no_series")
    return result


async def evaluate(
    source: MetricsSource,
    slis: Sequence[Sli],
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> Verdict:
    """Evaluate every SLI of a deploy once, their queries together (a slow source then costs
    one timeout per evaluation, not one per SLI), and combine the results into a verdict."""
    results = await _all(*(observe_sli(source, sli, windows, now, settings) for sli in slis))
    return decide(slis, results, windows.complete(now))
