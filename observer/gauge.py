"""Gauge SLIs against several baselines: the most lenient band decides, so seasonality is not a
regression.

The band of one baseline is its median ± max(k·MAD, tolerance·|median|) (see
`detect.assess_gauge`). With the window before the deploy, the same window a day and a week
earlier, or the stable version in canary mode, the band that allows the most in the bad direction
is used: a CPU peak that also showed yesterday at this hour does not roll a deploy back, while a
leak that grows past every baseline does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from observer.detect import (
    DEFAULT_SETTINGS,
    DetectorSettings,
    assess_gauge,
    gauge_margin,
    median,
)
from observer.slis import Direction, Sli
from observer.verdict import SliResult


def band_edge(sli: Sli, values: Sequence[float], settings: DetectorSettings) -> float | None:
    """The level past which a watch is worse than this baseline; None when it is too short."""
    base = [v for v in values if math.isfinite(v)]
    if len(base) < settings.gauge_points:
        return None
    centre = median(base)
    mad = 1.4826 * median([abs(v - centre) for v in base])
    margin = gauge_margin(sli, base, centre, mad, settings)
    return centre + margin if sli.direction is Direction.UP else centre - margin


def assess_gauge_baselines(
    sli: Sli,
    baselines: Sequence[tuple[str, Sequence[float]]],
    watch: Sequence[float],
    complete: bool,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge a gauge against the most lenient of `baselines` ((label, values) pairs)."""
    edges = [(band_edge(sli, values, settings), label, values) for label, values in baselines]
    usable = [(edge, label, values) for edge, label, values in edges if edge is not None]
    if not usable:
        first = baselines[0][1] if baselines else ()
        return assess_gauge(sli, first, watch, complete, settings)
    pick = max if sli.direction is Direction.UP else min
    edge, label, values = pick(usable, key=lambda item: item[0])
    result = assess_gauge(sli, values, watch, complete, settings)
    reason = result.reason if len(baselines) == 1 else f"{result.reason} ({label} baseline)"
    return replace(result, reason=reason, null_value=edge)
