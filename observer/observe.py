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
import bisect
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
from observer.sequential import Baseline, Step, assess_ratio_state, assess_ratio_steps
from observer.slis import Sli, SliKind
from observer.sources import TIME_RESOLUTION, MetricsError, MetricsSource, QueryRejected, Series
from observer.verdict import SliResult, Status, Verdict
from observer.watch_memory import LATE_SAMPLES, Carried, SliMemory, remember

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
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


async def _pair(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """`_all` for two calls of different types."""
    one, two = await asyncio.gather(first, second, return_exceptions=True)
    for item in (one, two):
        if isinstance(item, BaseException):
            raise item
    return cast(A, one), cast(B, two)


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


def baseline_spans(windows: Windows, now: float) -> dict[str, list[float]]:
    """The baselines' spans (Unix seconds): the window before the deploy and, per seasonal
    offset, the whole watch window that much earlier (capped at `now`)."""
    step = windows.step
    spans = {"before": [windows.deployed_at - windows.baseline + step, windows.deployed_at]}
    for offset in windows.seasonal:
        label = SEASONAL_LABELS.get(offset, f"{offset:.0f}s")
        # The whole watch window, not just its elapsed part: a thin baseline would only widen
        # the null's confidence bound and slow detection without telling more about the season.
        whole = windows.deployed_at + windows.watch
        spans[label] = [windows.deployed_at + step - offset, min(whole - offset, now)]
    return spans


def baselines_end(windows: Windows) -> dict[str, float]:
    """Per baseline, where its last step ends once it is whole."""
    whole = windows.deployed_at + windows.watch
    ends = {"before": windows.deployed_at}
    for offset in windows.seasonal:
        ends[SEASONAL_LABELS.get(offset, f"{offset:.0f}s")] = whole - offset
    return ends


async def fetch_watch(
    source: MetricsSource, sli: Sli, windows: Windows, plan: StepPlan, span: list[float]
) -> dict[str, tuple[Point, ...]]:
    """The watch points over `span` on `plan` (`windows.step` is the plan's): `watch`, and in
    canary mode (one query split by the version label) `watch` for the canary and `stable`;
    raises `MetricsError`."""
    queries = sli.queries(plan.step, plan.range)
    with tracer.start_as_current_span("prometheus.fetch"):
        raw = await _points(source, sli, queries, span, plan.step)
    if not sli.version_label:
        return {"watch": _scaled(_reduce(sli, raw), plan.scale)}
    canary_raw = {k: tuple(_split(v, sli.version_label, windows.version)[0] for v in vs)
                  for k, vs in raw.items()}  # fmt: skip
    stable_raw = {k: tuple(_split(v, sli.version_label, windows.version)[1] for v in vs)
                  for k, vs in raw.items()}  # fmt: skip
    return {
        "watch": _scaled(_reduce(sli, canary_raw), plan.scale),
        "stable": _scaled(_reduce(sli, stable_raw), plan.scale),
    }


async def fetch_baselines(
    source: MetricsSource,
    sli: Sli,
    windows: Windows,
    now: float,
    plan: StepPlan,
    *,
    labels: Sequence[str] | None = None,
) -> tuple[tuple[tuple[str, tuple[Point, ...]], ...], dict[str, list[float]]]:
    """The baselines' points on `plan` (`windows.step` is the plan's) and their spans (only
    `labels` when given), the queries together; none in canary mode (its reference is the
    stable version, read with the watch). Raises `MetricsError`."""
    if sli.version_label:
        return (), {}
    queries = sli.queries(plan.step, plan.range)
    spans = {label: span for label, span in baseline_spans(windows, now).items()
             if labels is None or label in labels}  # fmt: skip
    with tracer.start_as_current_span("prometheus.fetch"):
        fetched = await _all(
            *(_points(source, sli, queries, span, plan.step) for span in spans.values())
        )
    points = [_scaled(_reduce(sli, raw), plan.scale) for raw in fetched]
    return tuple(zip(spans, points, strict=True)), spans


async def fetch_sli(
    source: MetricsSource, sli: Sli, windows: Windows, now: float, plan: StepPlan | None = None
) -> SliData:
    """Query one SLI's watch window so far and its baselines on `plan` (the configured step as
    it is by default), all together; raises `MetricsError`. The baseline before the deploy and
    the watch are one range query when they share a grid (`joined`)."""
    plan = plan if plan is not None else plan_step(sli, windows.step, None)
    windows = replace(windows, step=plan.step)
    watch_span = [windows.deployed_at + plan.step, windows.watch_end(now)]
    if not _reads_joined(sli, windows):
        watch, (baselines, spans) = await _pair(
            fetch_watch(source, sli, windows, plan, watch_span),
            fetch_baselines(source, sli, windows, now, plan),
        )
        return _data(sli, plan, watch, baselines, {"watch": watch_span, **spans})
    every = baseline_spans(windows, now)
    seasonal = [label for label in every if label != "before"]
    (before, points), (others, spans) = await _pair(
        fetch_before_and_watch(source, sli, windows, now, plan),
        fetch_baselines(source, sli, windows, now, plan, labels=seasonal),
    )
    spans = {"before": every["before"], **spans}
    return _data(sli, plan, {"watch": points}, (("before", before), *others),
                 {"watch": watch_span, **spans})  # fmt: skip


def joined(windows: Windows) -> bool:
    """Whether the baseline before the deploy lies on the watch's grid (it is a whole number of
    steps long), so that one range query from its first step to now reads both: each point of a
    range query is evaluated on its own, so the points are the ones two queries would give."""
    steps = windows.baseline / windows.step
    return round(steps) >= 1 and math.isclose(steps, round(steps), rel_tol=1e-9)


def _reads_joined(sli: Sli, windows: Windows) -> bool:
    """Whether the SLI's baseline before the deploy is read with its watch in one range query:
    `joined` windows, and not canary mode (whose reference is the stable version's series)."""
    return not sli.version_label and joined(windows)


async def fetch_before_and_watch(
    source: MetricsSource, sli: Sli, windows: Windows, now: float, plan: StepPlan
) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """The baseline before the deploy and the watch so far, read by one range query per series
    (the windows must be `joined`; `windows.step` is the plan's): (before, watch)."""
    span = [baseline_spans(windows, now)["before"][0], windows.watch_end(now)]
    with tracer.start_as_current_span("prometheus.fetch"):
        raw = await _points(source, sli, sli.queries(plan.step, plan.range), span, plan.step)
    points = _scaled(_reduce(sli, raw), plan.scale)
    cut = bisect.bisect_right(points, windows.deployed_at + TIME_RESOLUTION, key=lambda p: p[0])
    return points[:cut], points[cut:]


def _data(
    sli: Sli,
    plan: StepPlan,
    watch: dict[str, tuple[Point, ...]] | dict[str, list[Point]],
    baselines: tuple[tuple[str, tuple[Point, ...]], ...],
    spans: dict[str, list[float]],
) -> SliData:
    queries = sli.queries(plan.step, plan.range)
    if "stable" in watch:
        stable = (("stable", tuple(watch["stable"])),)
        return SliData(tuple(watch["watch"]), stable, queries, spans, "canary", plan)
    return SliData(tuple(watch["watch"]), baselines, queries, spans, "before_after", plan)


def judge(
    sli: Sli,
    data: SliData,
    windows: Windows,
    upto: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    *,
    carried: Carried | None = None,
) -> SliResult:
    """Judge `data` as it stood at `upto` (Unix seconds): the pure half of an evaluation.

    `carried`: the sequential test's state over the watch points up to its `until`, which a
    Watch keeps between evaluations (`observer.watch_memory`); only the later points are pushed
    (on a copy), and the result is the one the whole series would give."""
    if data.plan is not None:
        windows = replace(windows, step=data.plan.step)
    complete = windows.complete(upto)
    end = windows.watch_end(upto)
    watch = [p for p in data.watch if p[0] <= end + TIME_RESOLUTION]
    if data.mode == "canary":  # the stable version over the same steps only
        baselines = [
            (label, [p for p in pts if p[0] <= end + TIME_RESOLUTION])
            for label, pts in data.baselines
        ]
    else:
        baselines = [(label, list(pts)) for label, pts in data.baselines]
    if sli.kind is SliKind.RATIO:
        sums = [Baseline(label, sum(p[1] for p in pts), sum(p[2] for p in pts))
                for label, pts in baselines]  # fmt: skip
        if carried is not None and data.mode != "canary":
            state = carried.state.copy()
            for t, bad, total in watch:
                if not carried.holds(t):
                    state.push(Step(t - windows.deployed_at, bad, total))
            result = assess_ratio_state(
                sli, sums, state, complete=complete, horizon=windows.horizon,
                step_seconds=windows.step, settings=settings,
            )  # fmt: skip
        else:
            result = assess_ratio_steps(
                sli, sums, [Step(p[0] - windows.deployed_at, p[1], p[2]) for p in watch],
                complete=complete, horizon=windows.horizon, step_seconds=windows.step,
                settings=settings,
            )  # fmt: skip
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
    memory: SliMemory | None = None,
    late: float = LATE_SAMPLES,
) -> tuple[SliResult, SliMemory | None]:
    """Query one SLI and judge it; a source error yields a not-judged result. With `memory`
    (what an earlier evaluation kept), only the watch steps not yet settled are read; the
    memory to keep for the next evaluation comes back with the result (`observer.watch_memory`).
    """
    if windows.watch_end(now) < windows.deployed_at + windows.step:
        return SliResult(sli=sli.name, status=Status.OBSERVING, reason="no watch step yet"), memory
    try:
        if memory is None:
            # Learnt where the baseline ends: the series of the pods a deploy replaces have
            # their ten minutes of samples there, the new pods' series have not yet.
            plan = await step_plan(
                source, sli, windows.step, windows.deployed_at, intervals=intervals,
                scrape_interval=scrape_interval,
            )  # fmt: skip
            if windows.watch_end(now) < windows.deployed_at + plan.step:
                return SliResult(sli=sli.name, status=Status.OBSERVING, step=plan.step,
                                 reason=f"no watch step of {plan.step:g}s yet"), None  # fmt: skip
            data = await fetch_sli(source, sli, windows, now, plan)
            memory = remember(
                sli, plan, data.baselines if data.mode != "canary" else (),
                {k: v for k, v in data.windows.items() if k != "watch"},
                final_at={k: end + late for k, end in baselines_end(windows).items()},
                read_at=now, horizon=windows.horizon, settings=settings,
            )  # fmt: skip
            memory.merge(_growing(data), windows.deployed_at)
        else:
            await _read_on(source, sli, windows, now, memory, settings=settings)
    except MetricsError as exc:
        status = Status.INCONCLUSIVE if windows.complete(now) else Status.OBSERVING
        cause = "query_rejected" if isinstance(exc, QueryRejected) else "source_unavailable"
        failed = SliResult(
            sli=sli.name, status=status, reason=f"metrics source failed: {exc}",
            queries=sli.queries(windows.step), failure=cause,
        )  # fmt: skip
        return failed, memory
    memory.settle(_settled_until(windows, memory.plan.step, now - late), windows.deployed_at)
    data = _data(sli, memory.plan, memory.growing, memory.baselines,
                 {"watch": [windows.deployed_at + memory.plan.step, windows.watch_end(now)],
                  **memory.spans})  # fmt: skip
    result = judge(sli, data, windows, now, settings, carried=memory.carried())
    if not data.watch and not any(points for _, points in data.baselines):
        return replace(result, failure="no_series"), memory
    return result, memory


def _growing(data: SliData) -> dict[str, tuple[Point, ...]]:
    """The series of a whole fetch that a memory keeps reading on."""
    if data.mode == "canary":
        return {"watch": data.watch, "stable": dict(data.baselines)["stable"]}
    return {"watch": data.watch}


async def _read_on(
    source: MetricsSource,
    sli: Sli,
    windows: Windows,
    now: float,
    memory: SliMemory,
    *,
    settings: DetectorSettings,
) -> None:
    """Read the watch steps from the first one not yet settled to now (none when no step has
    ended since), and a baseline again while samples for its last step may still come in."""
    plan = memory.plan
    windows = replace(windows, step=plan.step)
    start = max(memory.settled + plan.step, windows.deployed_at + plan.step)
    end = windows.watch_end(now)
    stale = memory.stale()
    watch: dict[str, tuple[Point, ...]] = {}
    if "before" in stale and _reads_joined(sli, windows):
        # The baseline before the deploy read again with the watch, in the same range query.
        others = [label for label in stale if label != "before"]
        (before, points), (fresh, spans) = await _pair(
            fetch_before_and_watch(source, sli, windows, now, plan),
            fetch_baselines(source, sli, windows, now, plan, labels=others),
        )
        watch = {"watch": tuple(p for p in points if p[0] >= start - TIME_RESOLUTION)}
        memory.spans.update({"before": baseline_spans(windows, now)["before"], **spans})
        memory.reread((("before", before), *fresh), now, sli, deployed_at=windows.deployed_at,
                      horizon=windows.horizon, settings=settings)  # fmt: skip
    elif stale:
        watch, (fresh, spans) = await _pair(
            _watch_from(source, sli, windows, plan, [start, end]),
            fetch_baselines(source, sli, windows, now, plan, labels=stale),
        )
        memory.spans.update(spans)
        memory.reread(fresh, now, sli, deployed_at=windows.deployed_at, horizon=windows.horizon,
                      settings=settings)  # fmt: skip
    else:
        watch = await _watch_from(source, sli, windows, plan, [start, end])
    memory.merge(watch, start)


async def _watch_from(
    source: MetricsSource, sli: Sli, windows: Windows, plan: StepPlan, span: list[float]
) -> dict[str, tuple[Point, ...]]:
    """`fetch_watch` over `span`; nothing (no query) when no step has ended in it."""
    if span[0] > span[1] + 1e-6:
        return {}
    return await fetch_watch(source, sli, windows, plan, span)


def _settled_until(windows: Windows, step: float, upto: float) -> float:
    """The last step end of the deploy's grid at or before `upto` (and inside the watch)."""
    done = math.floor((min(upto, windows.deployed_at + windows.watch) - windows.deployed_at)
                      / step + 1e-9)  # fmt: skip
    return windows.deployed_at + max(done, 0) * step


async def evaluate(
    source: MetricsSource,
    slis: Sequence[Sli],
    windows: Windows,
    now: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    *,
    intervals: ScrapeIntervals | None = None,
    scrape_interval: float | None = None,
    memory: dict[str, SliMemory] | None = None,
    late: float = LATE_SAMPLES,
) -> Verdict:
    """Evaluate every SLI of a deploy once, their queries together (a slow source then costs
    one timeout per evaluation, not one per SLI), and combine the results into a verdict.
    `intervals` keeps learnt scrape intervals between evaluations (one is made when None);
    `scrape_interval` is `[prometheus] scrape_interval`. `memory` (by SLI name) is what the
    Watch keeps between evaluations, updated in place; without it everything is read."""
    book = intervals if intervals is not None else ScrapeIntervals()
    kept = memory if memory is not None else {}
    done = await _all(
        *(
            observe_sli(
                source,
                sli,
                windows,
                now,
                settings,
                intervals=book,
                scrape_interval=scrape_interval,
                memory=kept.get(sli.name),
                late=late,
            )
            for sli in slis
        )
    )
    for sli, (_, remembered) in zip(slis, done, strict=True):
        if remembered is not None:
            kept[sli.name] = remembered
    return decide(slis, [result for result, _ in done], windows.complete(now))
