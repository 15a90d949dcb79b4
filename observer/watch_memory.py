"""What a Watch keeps of each SLI between its evaluations, so a step costs the new points only.

The baselines (the window before the deploy and its seasonal copies) cannot change once the
deploy has happened: they are read once, on the step plan learnt at the first evaluation, and
kept, here and (by the loop) in the store, so a restart reads them back instead of asking
Prometheus for every Watch's baselines at once. They are read again only while samples for their
last step may still be arriving (`late` seconds after their end).

The watch window is read incrementally: each evaluation asks only for the steps from the first
one not yet *settled* to now. Prometheus ingests with a delay (a scrape's samples appear once
the scrape has ended; remote write and agents add more), so a step's count may still grow after
an evaluation has read it: a step is settled once it has been read at least `late` seconds after
its end, and until then every evaluation reads it again and replaces what it held. Settled steps
are folded into the sequential test's state (`observer.sequential_state.RatioState`) once, in
order; an evaluation judges a copy with the few unsettled steps pushed on it, so its cost does
not grow with the watch's length.

In canary mode the reference (the stable version over the same steps) grows with the watch, so
its points are kept and read like the watch's, and the test is judged over all of them (its null
moves with every step: there is no state to carry). Gauges are judged over their points too.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from observer.detect import DetectorSettings
from observer.scrape_interval import StepPlan
from observer.sequential import Baseline, Step, ratio_state
from observer.sequential_state import RatioState
from observer.slis import Sli, SliKind
from observer.sources import TIME_RESOLUTION

Point = tuple[float, float, float]
"""(t, bad, total) for ratio SLIs, (t, value, 0) for gauges; `t` in Unix seconds."""

LATE_SAMPLES = 30.0
"""Seconds after a step's end that its samples may still arrive (`[prometheus] late_samples`):
two steps of the default 15 s, past a scrape's own timeout (10 s by default) with room for a
remote-write or agent hop. On a local Prometheus scraping every 1-5 s, a sample was queryable
at most about 0.1 s after its timestamp (README, "Capacity")."""


@dataclass(frozen=True, slots=True)
class Carried:
    """The sequential test's state over the watch points at or before `until` (Unix seconds)."""

    state: RatioState
    until: float

    def holds(self, t: float) -> bool:
        """Whether the point at `t` (as Prometheus answered it) is already in `state`."""
        return t <= self.until + TIME_RESOLUTION


@dataclass(slots=True)
class SliMemory:
    """One Watch's SLI between evaluations: its plan, baselines and the watch points so far."""

    plan: StepPlan
    baselines: tuple[tuple[str, tuple[Point, ...]], ...]
    spans: dict[str, list[float]]
    """The baselines' spans as they were queried (Unix seconds), for the results' `windows`."""
    final_at: dict[str, float]
    """Per baseline, from when a read of it is final: its last step's end plus `late`."""
    read_at: float
    """When the baselines were last read (Unix seconds)."""
    growing: dict[str, list[Point]] = field(default_factory=dict)
    """Series read incrementally: `watch`, and `stable` in canary mode; in time order."""
    settled: float = -math.inf
    """Watch points at or before this time are final (folded into `state`)."""
    state: RatioState | None = None
    saved: bool = False
    """The baselines are in the store (the loop keeps them there once final)."""

    def stale(self) -> list[str]:
        """The baselines whose last read came before their samples could all be in."""
        return [label for label, _ in self.baselines if self.read_at < self.final_at[label]]

    def merge(self, fresh: dict[str, tuple[Point, ...]], start: float) -> None:
        """Replace every point at or after `start` (a grid time) with what was just read from
        there on."""
        for label, points in fresh.items():
            kept = self.growing.setdefault(label, [])
            cut = bisect.bisect_left(kept, start - TIME_RESOLUTION, key=lambda p: p[0])
            kept[cut:] = points

    def reread(
        self,
        fresh: tuple[tuple[str, tuple[Point, ...]], ...],
        read_at: float,
        sli: Sli,
        *,
        deployed_at: float,
        horizon: int,
        settings: DetectorSettings,
    ) -> None:
        """Take the baselines read again at `read_at`; the test's state starts over on them
        (it happens in the first steps only, while few watch points are settled)."""
        again = dict(fresh)
        self.baselines = tuple((label, again.get(label, pts)) for label, pts in self.baselines)
        self.read_at = read_at
        self.state = _state(sli, self.baselines, self.plan.step, horizon, settings)
        settled, self.settled = self.settled, -math.inf
        self.settle(settled, deployed_at)

    def settle(self, upto: float, deployed_at: float) -> None:
        """Fold the watch points in `(settled, upto]` into the state, in order; `upto` only
        moves forward."""
        if upto <= self.settled:
            return
        if self.state is not None:
            watch = self.growing.get("watch", [])
            first = bisect.bisect_right(watch, self.settled + TIME_RESOLUTION, key=lambda p: p[0])
            for t, bad, total in watch[first:]:
                if t > upto + TIME_RESOLUTION:
                    break
                self.state.push(Step(t - deployed_at, bad, total))
        self.settled = upto

    def carried(self) -> Carried | None:
        return None if self.state is None else Carried(self.state, self.settled)


def _state(
    sli: Sli,
    baselines: tuple[tuple[str, tuple[Point, ...]], ...],
    step: float,
    horizon: int,
    settings: DetectorSettings,
) -> RatioState | None:
    """The sequential test's empty state for a ratio SLI judged before/after, else None."""
    if sli.kind is not SliKind.RATIO or sli.version_label:
        return None
    sums = [Baseline(label, sum(p[1] for p in pts), sum(p[2] for p in pts))
            for label, pts in baselines]  # fmt: skip
    return ratio_state(sli, sums, horizon=horizon, step_seconds=step, settings=settings)


def remember(
    sli: Sli,
    plan: StepPlan,
    baselines: tuple[tuple[str, tuple[Point, ...]], ...],
    spans: dict[str, list[float]],
    *,
    final_at: dict[str, float],
    read_at: float,
    horizon: int,
    settings: DetectorSettings,
) -> SliMemory:
    """A new memory over `baselines` (read at `read_at`, or back from the store); the watch
    points come in through `merge`. A ratio SLI judged before/after carries the test's state."""
    state = _state(sli, baselines, plan.step, horizon, settings)
    return SliMemory(plan, baselines, spans, final_at, read_at, state=state)


def plan_json(plan: StepPlan) -> dict[str, Any]:
    """`plan` as the store keeps it."""
    return {
        "step": plan.step,
        "range": plan.range,
        "scale": plan.scale,
        "interval": plan.interval,
        "configured_step": plan.configured_step,
    }


def plan_from_json(kept: dict[str, Any]) -> StepPlan:
    interval = kept.get("interval")
    return StepPlan(
        float(kept["step"]),
        float(kept["range"]),
        float(kept["scale"]),
        None if interval is None else float(interval),
        float(kept["configured_step"]),
    )


def baselines_json(baselines: tuple[tuple[str, tuple[Point, ...]], ...]) -> list[Any]:
    return [[label, [list(p) for p in points]] for label, points in baselines]


def baselines_from_json(kept: list[Any]) -> tuple[tuple[str, tuple[Point, ...]], ...]:
    return tuple(
        (str(label), tuple((float(t), float(a), float(b)) for t, a, b in points))
        for label, points in kept
    )
