"""How often the SLI's series are scraped, learnt from the samples, and the step that follows.

Why: `increase(x[$step])` needs two samples inside its range, and ranges that overlap count the
same events in two steps, which breaks a test that treats step counts as independent.

What is learnt: for every range selector of an SLI's queries (`metric{...}[$step]`), one instant
evaluation (a `query_range` with `start == end == now`) of

    quantile(0.5, (timestamp(SEL) - timestamp(SEL offset 10m)) / count_over_time(SEL[10m]))

that is, per series, the time from the last sample at or before `now - 10m` to the last sample
before `now`, over the samples between them: the series' mean scrape interval, exact to the
millisecond whatever the phase of the scrapes (a count over the window alone is off by one sample
in ten). The median over series keeps one series with a gap (a target that was down) from
widening everyone's step; the largest value over the selectors is the SLI's interval. A query
without a range selector, or whose series are younger than ten minutes, teaches nothing (None);
`[prometheus] scrape_interval` (and an SLI's own `scrape_interval`) overrides the learnt value.

How counts are built (the choice the issue asks for): steps aligned to whole multiples of the
interval, and `$step` replaced by the step *plus one interval* (less a millisecond), so each
range holds the last sample of the step before and every sample of its own step: `k + 1`
samples for a step of `k` intervals, whose first-to-last difference is exactly the counter's
increase over one step, and consecutive ranges share one boundary sample and no interval, so no
event is counted twice or lost (resets are handled by `increase` itself, per series). Prometheus
extrapolates that difference from the `k` intervals it spans to the whole range (both ends lie
within 1.1 average intervals of a sample), a factor of `(step + interval) / step` that the counts
are multiplied back by (`StepPlan.scale`). This keeps the user's PromQL as written, needs one query
per role as before, and works on every PromQL backend; taking counter values at step boundaries
and differencing them client-side would need the raw per-series counters, not the user's `sum()`.
The millisecond keeps a sample that lies exactly on the range's far end out of it in Prometheus
2.x, whose ranges are closed at both ends (3.x ranges are left-open).

A step shorter than one interval, or not a whole multiple of it, is widened to the next multiple
(`effective_step`); `step_too_short` is the message that says so, for the log at the first
evaluation and for `rearguard check`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from observer.slis import Sli, SliKind
from observer.sources import MetricsSource, QueryRejected

LEARN_WINDOW = 600.0
"""Seconds of history the interval is measured over."""
RELEARN_AFTER = 600.0
"""Seconds a learnt interval is kept before it is asked again."""
_EDGE = 0.001
"""Seconds taken off each range so a sample exactly on its far end stays out (Prometheus 2.x)."""
_SNAP = 0.01
"""A learnt interval within 1% of a whole second is that second (jitter, not a real interval)."""

_SELECTOR = re.compile(
    r"(?P<sel>(?:[A-Za-z_:][A-Za-z0-9_:]*\s*(?:\{[^{}]*\})?|\{[^{}]*\}))\s*\[[^\]:]+\]"
)
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset"})


def selectors(query: str) -> list[str]:
    """The vector selectors that stand under a range (`x{a="b"}` of `x{a="b"}[$step]`), in order,
    without repeats; subqueries (`(...)[5m:1m]`) are not selectors and are left out."""
    found: list[str] = []
    for match in _SELECTOR.finditer(query):
        selector = match.group("sel").strip()
        name = selector.split("{", 1)[0].strip()
        if name in _KEYWORDS or selector in found:
            continue
        found.append(selector)
    return found


def interval_query(selector: str, window: float = LEARN_WINDOW) -> str:
    """The PromQL whose value is the median scrape interval (seconds) of `selector`'s series.

    The count's range is a millisecond short of the window: a sample exactly at `now - window`
    is the one `offset` finds, and Prometheus 2.x ranges are closed, so a full-length range would
    count it too (scrapes on a grid aligned with the query time read 600/41 s for 15 s)."""
    w = promql_duration(window)
    inside = promql_duration(window - _EDGE)
    return (
        f"quantile(0.5, (timestamp({selector}) - timestamp({selector} offset {w})) "
        f"/ count_over_time({selector}[{inside}]))"
    )


def snap(interval: float) -> float:
    """The learnt mean to the millisecond, or to the whole second it is within 1% of."""
    whole = round(interval)
    if whole >= 1 and abs(interval - whole) <= _SNAP * whole:
        return float(whole)
    return round(interval, 3)


async def learn_interval(source: MetricsSource, query: str, now: float) -> float | None:
    """The scrape interval (seconds) of the series under `query`'s range selectors at `now`:
    the largest over its selectors, or None when no selector has ten minutes of samples.
    Raises `MetricsError` as the source does."""
    learnt: list[float] = []
    for selector in selectors(query):
        series = await source.query_range(interval_query(selector), now, now, 1.0)
        values = [
            s.value for one in series for s in one.samples if math.isfinite(s.value) and s.value > 0
        ]
        if values:
            learnt.append(snap(max(values)))
    return max(learnt) if learnt else None


def smallest_step(interval: float) -> float:
    """The shortest step whose ranges hold two samples: one interval (the range is then two)."""
    return interval


def effective_step(step: float, interval: float | None) -> float:
    """`step`, or the next whole multiple of `interval` at or above it (at least one interval)."""
    if interval is None or interval <= 0:
        return step
    multiples = max(1, math.ceil(step / interval - 1e-9))
    return round(multiples * interval, 3)


def step_too_short(sli: str, step: float, interval: float | None) -> str | None:
    """Why `step` does not fit data scraped every `interval` seconds, naming the SLI, the interval
    found and the smallest step that works; None when it fits (or the interval is unknown)."""
    if interval is None or effective_step(step, interval) == step:
        return None
    used = effective_step(step, interval)
    kind = "shorter than" if step < interval else "not a whole multiple of"
    return (
        f"SLI {sli!r}: the step of {_seconds(step)} is {kind} the scrape interval found, "
        f"{_seconds(interval)}; the smallest step that works is "
        f"{_seconds(smallest_step(interval))} (this SLI is evaluated every {_seconds(used)})"
    )


@dataclass(frozen=True, slots=True)
class StepPlan:
    """How one SLI is queried: every `step` seconds, `$step` replaced by `range` seconds, ratio
    counts multiplied by `scale` (Prometheus' extrapolation undone); `interval` None when
    unknown (then the configured step is used as it is, `$step` being the step)."""

    step: float
    range: float
    scale: float
    interval: float | None
    configured_step: float

    @property
    def widened(self) -> bool:
        return self.step != self.configured_step


def plan_step(sli: Sli, step: float, interval: float | None) -> StepPlan:
    """The plan for `sli` at the configured `step` over data scraped every `interval` seconds."""
    used = effective_step(step, interval)
    if interval is None or sli.kind is not SliKind.RATIO:
        return StepPlan(used, used, 1.0, interval, step)
    span = round(used + interval - _EDGE, 3)
    return StepPlan(used, span, used / span, interval, step)


def promql_duration(seconds: float) -> str:
    """A PromQL duration for `seconds`: `15s`, or `29999ms` when it is not whole."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


@dataclass(slots=True)
class ScrapeIntervals:
    """The interval of each SLI's data: the SLI's own `scrape_interval`, else `override`
    (`[prometheus] scrape_interval`), else learnt from the source and kept for `RELEARN_AFTER`
    seconds (a minute when nothing was learnt), so an evaluation every step does not ask each
    time. One instance per process; `widened` remembers which SLIs were logged as widened."""

    clock: Callable[[], float] = time.monotonic
    widened: set[tuple[str, float, float]] = field(default_factory=set)
    _known: dict[tuple[str, ...], tuple[float, float | None]] = field(default_factory=dict)

    async def interval(
        self, source: MetricsSource, sli: Sli, now: float, override: float | None = None
    ) -> float | None:
        """The interval for `sli` at `now` (Unix seconds); raises `SourceUnavailable`."""
        if sli.scrape_interval is not None:
            return sli.scrape_interval
        if override is not None:
            return override
        key = tuple(sli.queries(1.0).values())
        kept = self._known.get(key)
        if kept is not None and self.clock() - kept[0] < (RELEARN_AFTER if kept[1] else 60.0):
            return kept[1]
        found = [await _learn_or_none(source, query, now) for query in key]
        learnt = max((f for f in found if f is not None), default=None)
        self._known[key] = (self.clock(), learnt)
        return learnt


async def _learn_or_none(source: MetricsSource, query: str, now: float) -> float | None:
    """`learn_interval`, None where the source refuses the question (a source that is not
    Prometheus, such as the demo's simulation): the SLI is then queried at its configured step.
    An unavailable source raises, as the SLI's own queries would."""
    try:
        return await learn_interval(source, query, now)
    except QueryRejected:
        return None


def _seconds(value: float) -> str:
    return f"{value:g}s"
