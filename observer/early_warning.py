"""Early warnings: a deploy whose data went away, judged from the points alone.

Missing data is never a regression (nothing is reverted on it), but a service that stopped
reporting after its deploy is news a team wants before the watch ends `inconclusive`. Over the
last `WARN_STEPS` steps of the watch grid, with the baseline before the deploy as reference:

- `vanished`: none of those steps has a point (the queries return no series any more);
- `counters_reset`: the ratio's total is there but counts nothing at every one of those steps
  while the baseline counted traffic (the counters went back to zero and stayed there);
- `traffic_drop`: the ratio's mean total per step over those steps, and its latest step, are
  below `(1 - traffic_drop)` of the baseline's mean per step (the SLI's `traffic_drop`), so a
  drop that already ended is not reported.

A step that has not happened yet is not missing; a warning needs `WARN_STEPS` whole steps of the
watch, so it is raised at the `WARN_STEPS`th step after the drop at the earliest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from observer.sources import TIME_RESOLUTION

WARN_STEPS = 3
"""Consecutive steps the data must be gone for: within the issue's five steps, and more than a
single late scrape."""

Point = tuple[float, float, float]


class WarningReason(StrEnum):
    VANISHED = "vanished"
    COUNTERS_RESET = "counters_reset"
    TRAFFIC_DROP = "traffic_drop"


@dataclass(frozen=True, slots=True)
class EarlyWarning:
    """Why one SLI's data is not what it was before the deploy, in words for people."""

    reason: WarningReason
    detail: str


def early_warning(
    watch: Sequence[Point],
    baseline: Sequence[Point],
    *,
    deployed_at: float,
    step: float,
    end: float,
    ratio: bool,
    traffic_drop: float,
    steps: int = WARN_STEPS,
) -> EarlyWarning | None:
    """The warning the watch's points up to `end` call for, or None.

    `watch` and `baseline` are (t, bad, total) points (ratio) or (t, value, 0) (gauge); the grid
    is `deployed_at + k * step`, k >= 1. No warning without a baseline that had data.
    """
    if step <= 0 or not baseline:
        return None
    done = int((end - deployed_at) / step + 1e-9)
    if done < steps:
        return None
    since = deployed_at + (done - steps) * step + step / 2  # the last `steps` grid points
    recent = [p for p in watch if since <= p[0] <= end + TIME_RESOLUTION]
    span = f"the last {steps} steps ({steps * step:.0f}s)"
    if not recent:
        return EarlyWarning(WarningReason.VANISHED, f"no data in {span} after the deploy; "
                            "the service may have stopped reporting")  # fmt: skip
    before = sum(p[2] for p in baseline) / len(baseline)
    if not ratio or before <= 0:
        return None
    return _traffic(recent, before, steps, traffic_drop, span)


def _traffic(
    recent: Sequence[Point], before: float, steps: int, traffic_drop: float, span: str
) -> EarlyWarning | None:
    """A ratio SLI's traffic over its recent steps against the baseline's mean per step."""
    if len(recent) >= steps and all(p[2] <= 0 for p in recent):
        return EarlyWarning(
            WarningReason.COUNTERS_RESET,
            f"the request counters count nothing in {span} (baseline {before:.4g} per step)",
        )
    now = sum(p[2] for p in recent) / len(recent)  # a step without a point tells nothing
    floor = (1 - traffic_drop) * before
    if 0 < traffic_drop < 1 and now < floor and recent[-1][2] < floor:  # and still low now
        return EarlyWarning(
            WarningReason.TRAFFIC_DROP,
            f"traffic fell {1 - now / before:.0%} against the baseline in {span} "
            f"({now:.4g} vs {before:.4g} requests per step; warns beyond {traffic_drop:.0%})",
        )
    return None
