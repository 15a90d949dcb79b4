"""Pure detectors: counts and values in, `SliResult`/`Verdict` out. No I/O, no clock.

Ratio SLIs are judged by the Watch's step-wise sequential test in `observer.sequential` (which
recovery uses too); this module holds what it stands on: the multiples of the null rate its
mixture alternative averages over (`ALTERNATIVES`), the baseline's upper Wilson bound and the
null rate raised from it by the SLI's tolerance (`wilson_upper`, `null_bound`), and the knobs of
a watch (`DetectorSettings`).

Gauge SLIs use a robust median/MAD test on the latest points, and the shift must persist: the last
`gauge_persist` points must all lie past the band. `decide` combines the per-SLI results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from observer.slis import Direction, Sli
from observer.verdict import SliResult, Status, Verdict

ALTERNATIVES = (1.25, 1.5, 2.0, 4.0, 10.0)
"""Multiples of the null rate that the mixture alternative averages over.

Evidence only grows for a watch rate above the smallest alternative's break-even point, about
`p_null * (m - 1) / ln(m)`: 1.12 * p_null for 1.25 (1.23 * p_null for 1.5, which left a 30%
worsening past a 10% tolerance undetectable however much traffic there was).
"""

Z_UPPER = 2.576
"""Upper confidence bound (99%, one-sided ~99.5%) on the baseline bad rate."""


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Knobs shared by every SLI of a watch."""

    alpha: float = 0.005
    gauge_points: int = 3
    gauge_mad_factor: float = 5.0
    gauge_persist: int = 4
    """Consecutive latest gauge points that must each lie past the band: a level shift or a
    leak persists, a burst of spikes between normal points does not (tuned on a training half
    of the NAB series, see bench/detection/tune_gauge.py)."""
    blip: float = 120.0
    """Seconds of a burst that ends and is never a regression: the stretch of consecutive steps,
    this long, that weighs most for a regression is left out of the evidence that must persist
    (an SLI's `max_blip` overrides it)."""
    persist: float = 2.3
    """Log-LR a ratio regression must keep with its heaviest blip-long stretch left out: the
    evidence has to persist beyond a blip (see `observer.sequential`). exp(-2.3) = 10% bounds
    the share of blips on clean traffic that could pass; measured, well under 1%
    (tests/test_sequential.py)."""
    min_bad: int = 3
    """Bad events a ratio regression needs behind it: one retried error is never a regression."""


DEFAULT_SETTINGS = DetectorSettings()


def wilson_upper(bad: float, total: float, z: float = Z_UPPER) -> float:
    """Upper Wilson score bound on a binomial rate; 1.0 when there is no data."""
    if total <= 0:
        return 1.0
    p = min(max(bad / total, 0.0), 1.0)
    denom = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return min((centre + spread) / denom, 1.0)


def null_bound(sli: Sli, upper: float) -> float:
    """The null rate from a baseline's upper bound: raised by the SLI's tolerance, kept within
    [1e-6, 0.99] so that every log-likelihood ratio against it stays finite."""
    return max(min(upper * (1 + sli.tolerance), 0.99), 1e-6)


def _pending(complete: bool) -> Status:
    """Not judged yet: inconclusive once the window is over, still observing before."""
    return Status.INCONCLUSIVE if complete else Status.OBSERVING


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the middle two for an even count) of a non-empty sequence."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def gauge_margin(
    sli: Sli, base: Sequence[float], centre: float, mad: float, settings: DetectorSettings
) -> float:
    """How far past the baseline median a gauge must move in the bad direction to count.

    At least k robust deviations, and past the baseline's own extreme by the tolerance: real
    series wander within a window more than a median/MAD band admits, and a level the service
    already showed before the deploy is not a regression.
    """
    extreme = max(base) - centre if sli.direction is Direction.UP else centre - min(base)
    floor = sli.tolerance * abs(centre)
    return max(settings.gauge_mad_factor * mad, extreme + floor, floor, 1e-9)


def assess_gauge(
    sli: Sli,
    baseline: Sequence[float],
    watch: Sequence[float],
    complete: bool,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge a gauge SLI: the median of the latest points against baseline median + k*MAD."""
    base = [v for v in baseline if math.isfinite(v)]
    recent = [v for v in watch if math.isfinite(v)][-settings.gauge_points :]
    if len(base) < settings.gauge_points:
        reason = f"baseline has {len(base)} points, too few to judge"
        return SliResult(sli=sli.name, status=_pending(complete), reason=reason)
    centre = median(base)
    mad = 1.4826 * median([abs(v - centre) for v in base])
    margin = gauge_margin(sli, base, centre, mad, settings)
    if len(recent) < settings.gauge_points:
        reason = f"watch has {len(recent)} points, too few to judge"
        return SliResult(
            sli=sli.name, status=_pending(complete), reason=reason, baseline_value=centre
        )
    now = median(recent)
    sign = 1.0 if sli.direction is Direction.UP else -1.0
    statistic = sign * (now - centre) / margin
    result = SliResult(
        sli=sli.name,
        status=Status.OBSERVING,
        reason="within the baseline band",
        baseline_value=centre,
        watch_value=now,
        statistic=statistic,
        threshold=1.0,
        effect=(now / centre - 1) if centre else math.nan,
    )
    band = f"median of last {len(recent)} points {now:.4g} vs baseline {centre:.4g} ± {margin:.4g}"
    edge = centre + sign * margin
    tail = [v for v in watch if math.isfinite(v)][-settings.gauge_persist :]
    persists = len(tail) >= settings.gauge_persist and all(sign * (v - edge) > 0 for v in tail)
    if statistic > 1.0 and persists:
        reason = f"{band}; the last {len(tail)} points all past {edge:.4g}"
        return replace(result, status=Status.REGRESSED, reason=reason)
    if not complete:
        return result
    return replace(result, status=Status.HEALTHY, reason=band)


def decide(slis: Sequence[Sli], results: Sequence[SliResult], complete: bool) -> Verdict:
    """Combine per-SLI results: a critical SLI (or two others) regressed decides `regressed`.

    Healthy needs every critical SLI healthy at the end of the window; anything else at the end
    is inconclusive, with the reasons.
    """
    by_name = {s.name: s for s in slis}
    regressed = [r for r in results if r.status is Status.REGRESSED]
    critical = [r for r in regressed if by_name[r.sli].critical]
    if critical or len(regressed) >= 2:  # noqa: PLR2004 - two non-critical SLIs agree
        culprit = (critical or regressed)[0]
        return Verdict(
            Status.REGRESSED, f"{culprit.sli}: {culprit.reason}", tuple(results), culprit.sli
        )
    if not complete:
        return Verdict(Status.OBSERVING, "watching", tuple(results))
    unhealthy = [r for r in results if by_name[r.sli].critical and r.status is not Status.HEALTHY]
    if not results or unhealthy:
        reasons = "; ".join(f"{r.sli}: {r.reason}" for r in unhealthy) or "no SLI results"
        return Verdict(Status.INCONCLUSIVE, reasons, tuple(results))
    return Verdict(Status.HEALTHY, "every critical SLI within its baseline", tuple(results))
