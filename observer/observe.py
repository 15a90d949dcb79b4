"""One evaluation of a deploy's SLIs: query the source, align the series, run the detectors.

This is the observer's only I/O; everything it decides comes from the pure functions in
`sequential`, `gauge` and `detect`. Fetching and judging are separate (`fetch_sli`, `judge`) so
that a backtest can fetch a whole watch once and judge it step by step exactly as the Watch did.

Baselines: the window before the deploy plus, where history exists, the same watch window one day
and one week earlier (`Windows.seasonal`); in canary mode (an SLI with `version_label`) the
stable version over the same steps. A source failure on one SLI makes that SLI not yet judged
(and inconclusive at the end of the window), never regressed.

Scrape intervals: each SLI is queried on the step its data allows (`observer.scrape_interval`:
learnt from the samples, the step widened to a whole multiple of the interval, a log line the
first time); the result keeps the `step` and `scrape_interval` it was judged at. Coverage: a
`healthy` result needs at least `MIN_COVERAGE` of the watch's steps so far to hold data, else it
is `inconclusive` with the share found (a Prometheus outage over much of the watch is no evidence
of health).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from opentelemetry import trace

from observer.detect import DEFAULT_SETTINGS, DetectorSettings, decide
from observer.early_warning import early_warning
from observer.gauge import assess_gauge_baselines
from observer.scrape_interval import ScrapeIntervals, StepPlan, plan_step, step_too_short
from observer.sequential import Baseline, Step, assess_ratio_steps
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource, QueryRejected, Series
from observer.verdict import SliResult, Status, Verdict

T = TypeVar("T")
log = logging.getLogger(__name__)
tracer = trace.get_tracer("rearguard.observer")

SEASONAL_LABELS = {86400.0: "1d", 604800.0: "7d"}
MIN_COVERAGE = 0.8
"""The share of the watch's steps (so far) that must hold data for an SLI to be `healthy`."""

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
    plan: StepPlan | None = None
    """The step, range and scale the queries were made with; None: the configured step."""


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
    source: MetricsSource, sli: Sli, span: list[float], step: float, plan: StepPlan | None = None
) -> tuple[Point, ...]:
    """One SLI's per-step points over `span` (ratio: (t, bad, total); gauge: (t, value, 0)),
    on `plan` (its step replaces `step`) when given."""
    if plan is None:
        return _reduce(sli, await _points(source, sli, sli.queries(step), span, step))
    raw = await _points(source, sli, sli.queries(plan.step, plan.range), span, plan.step)
    return _scaled(_reduce(sli, raw), plan.scale)


def _scaled(points: tuple[Point, ...], scale: float) -> tuple[Point, ...]:
    """Ratio counts with Prometheus' extrapolation undone (`StepPlan.scale`)."""
    if scale == 1.0:
        return points
    return tuple((t, bad * scale, total * scale) for t, bad, total in points)


async def step_plan(
    source: MetricsSource,
    sli: Sli,
    step: float,
    now: float,
    *,
    intervals: ScrapeIntervals | None = None,
    scrape_interval: float | None = None,
) -> StepPlan:
    """How `sli` is queried at the configured `step`: its data's interval (the SLI's own
    override, else `scrape_interval`, else learnt), the widened step, its range and scale.
    Logs the widening once per SLI and interval; raises `MetricsError`."""
    book = intervals if intervals is not None else ScrapeIntervals()
    interval = await book.interval(source, sli, now, scrape_interval)
    plan = plan_step(sli, step, interval)
    message = step_too_short(sli.name, step, interval)
    if (
        message is not None
        and interval is not None
        and (sli.name, step, interval) not in book.widened
    ):
        book.widened.add((sli.name, step, interval))
        log.warning("%s", message)
    return plan


async def fetch_sli(
    source: MetricsSource, sli: Sli, windows: Windows, now: float, plan: StepPlan | None = None
) -> SliData:
    """Query one SLI's watch window so far and its baselines on `plan` (the configured step as
    it is by default); raises `MetricsError`."""
    plan = plan if plan is not None else plan_step(sli, windows.step, None)
    windows = replace(windows, step=plan.step)
    step = windows.step
    queries = sli.queries(step, plan.range)
    watch_span = [windows.deployed_at + step, windows.watch_end(now)]
    spans = {"watch": watch_span}
    if sli.version_label:
        with tracer.start_as_current_span("prometheus.fetch"):
            raw = await _points(source, sli, queries, watch_span, step)
        canary_raw = {k: tuple(_split(v, sli.version_label, windows.version)[0] for v in vs)
                      for k, vs in raw.items()}  # fmt: skip
        stable_raw = {k: tuple(_split(v, sli.version_label, windows.version)[1] for v in vs)
                      for k, vs in raw.items()}  # fmt: skip
        stable = (("stable", _scaled(_reduce(sli, stable_raw), plan.scale)),)
        canary = _scaled(_reduce(sli, canary_raw), plan.scale)
        return SliData(canary, stable, queries, spans, "canary", plan)
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
    points = [_scaled(_reduce(sli, r), plan.scale) for r in fetched]
    baselines = tuple(zip(labels[1:], points[1:], strict=True))
    return SliData(points[0], baselines, queries, spans, "before_after", plan)


def judge(
    sli: Sli,
    data: SliData,
    windows: Windows,
    upto: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge `data` as it stood at `upto` (Unix seconds): the pure half of an evaluation."""
    if data.plan is not None:
        windows = replace(windows, step=data.plan.step)
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
    interval = data.plan.interval if data.plan is not None else None
    # A canary is judged against the stable version over the same steps: its series vanishing
    # or counting nothing while the stable's count is news; its traffic is only the canary's
    # share of the stable's, so no drop is measured against it.
    canary = data.mode == "canary"
    reference = next((pts for label, pts in baselines
                      if label == ("stable" if canary else "before")), [])  # fmt: skip
    warning = early_warning(
        watch, reference, deployed_at=windows.deployed_at, step=windows.step, end=end,
        ratio=sli.kind is SliKind.RATIO, traffic_drop=0.0 if canary else sli.traffic_drop,
    )  # fmt: skip
    return replace(
        covered(result, len(watch), windows, end), queries=dict(data.queries),
        windows=windows_json, mode=data.mode, step=windows.step,
        scrape_interval=math.nan if interval is None else interval,
        warning=str(warning.reason) if warning else "",
        warning_detail=warning.detail if warning else "",
    )  # fmt: skip


def covered(result: SliResult, with_data: int, windows: Windows, end: float) -> SliResult:
    """`result`, made `inconclusive` when it is `healthy` on fewer than `MIN_COVERAGE` of the
    watch steps up to `end` holding data (a Prometheus outage is no evidence of health)."""
    if result.status is not Status.HEALTHY:
        return result
    expected = min(windows.horizon, math.floor((end - windows.deployed_at) / windows.step + 1e-9))
    if expected <= 0 or with_data >= MIN_COVERAGE * expected:
        return result
    reason = (
        f"only {with_data} of {expected} watch steps had data ({with_data / expected:.0%}; "
        f"healthy needs {MIN_COVERAGE:.0%}): {result.reason}"
    )
    return replace(result, status=Status.INCONCLUSIVE, reason=reason)


async def observe_sli(
    source: MetricsSource,
    sli: Sli,
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    *,
    intervals: ScrapeIntervals | None = None,
    scrape_interval: float | None = None,
) -> SliResult:
    """Query one SLI over its windows and judge it; a source error yields a not-judged result."""
    if windows.watch_end(now) < windows.deployed_at + windows.step:
        return SliResult(sli=sli.name, status=Status.OBSERVING, reason="no watch step yet")
    try:
        # Learnt where the baseline ends: the series of the pods a deploy replaces have their
        # ten minutes of samples there, the new pods' series have not yet.
        plan = await step_plan(
            source, sli, windows.step, windows.deployed_at, intervals=intervals,
            scrape_interval=scrape_interval,
        )  # fmt: skip
        if windows.watch_end(now) < windows.deployed_at + plan.step:
            return SliResult(sli=sli.name, status=Status.OBSERVING, step=plan.step,
                             reason=f"no watch step of {plan.step:g}s yet")  # fmt: skip
        data = await fetch_sli(source, sli, windows, now, plan)
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
    *,
    intervals: ScrapeIntervals | None = None,
    scrape_interval: float | None = None,
) -> Verdict:
    """Evaluate every SLI of a deploy once, their queries together (a slow source then costs
    one timeout per evaluation, not one per SLI), and combine the results into a verdict.
    `intervals` keeps learnt scrape intervals between evaluations (one is made when None);
    `scrape_interval` is `[prometheus] scrape_interval`."""
    book = intervals if intervals is not None else ScrapeIntervals()
    results = await _all(
        *(
            observe_sli(
                source, sli, windows, now, settings, intervals=book, scrape_interval=scrape_interval
            )
            for sli in slis
        )
    )
    return decide(slis, results, windows.complete(now))
