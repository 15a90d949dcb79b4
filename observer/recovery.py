"""Recovery: is a regressed SLI back within the baseline it had before the regression?

After a revert is deployed, the SLI is judged over the window since that deploy against the
incident's own baseline (the window before the bad deploy), never against the window just before
the revert deploy, which is the regression itself. Two sequential tests run side by side:

- still regressed: the detection test itself (`assess_ratio`) against the old baseline;
- recovered: the Watch's likelihood ratio (`observer.sequential.step_log_lrs`, against the same
  null bound) with the roles set for recovery: "back at the baseline's null bound" against
  "still at the regressed rate", stopping once it crosses log(1/alpha) with the bad rate at or
  below the bound — so a clear recovery is confirmed in a few steps instead of at the end of a
  whole watch window.

At the end of the window without a decision, the detection test's verdict stands (healthy means
recovered). Gauge SLIs use the gauge test against the old baseline. Pure functions, plus one
`observe_recovery` that queries the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from observer.detect import (
    DEFAULT_SETTINGS,
    DetectorSettings,
    assess_gauge,
    assess_ratio,
    null_bound,
    wilson_upper,
)
from observer.observe import fetch_points
from observer.sequential import Step, step_log_lrs
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource
from observer.verdict import SliResult, Status


def assess_recovery(
    sli: Sli,
    baseline: tuple[float, float],
    regressed_rate: float,
    window: tuple[float, float],
    complete: bool,
    *,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """HEALTHY: recovered; REGRESSED: still regressed; OBSERVING: not yet; INCONCLUSIVE: no data."""
    check = assess_ratio(sli, baseline, window, complete, settings)
    if check.status is Status.REGRESSED:
        return replace(check, reason=f"still regressed: {check.reason}")
    b_bad, b_total = baseline
    w_bad, w_total = window
    if b_total < sli.min_events or check.status is Status.INCONCLUSIVE:
        return check
    p_null = null_bound(sli, wilson_upper(b_bad, b_total))
    threshold = math.log(1 / settings.alpha)
    if math.isfinite(regressed_rate) and regressed_rate > p_null and w_total >= sli.min_events:
        # The window as one step: the log-LR of the sums is the sum of the steps' log-LRs.
        since = [Step(0.0, w_bad, w_total)]
        statistic = sum(step_log_lrs(since, min(regressed_rate, 0.999), p_null))
        if statistic >= threshold and w_bad / w_total <= p_null:
            reason = (
                f"back within baseline: bad rate {w_bad / w_total:.4%} vs baseline "
                f"{b_bad / b_total:.4%} (bound {p_null:.4%}, regressed {regressed_rate:.4%}); "
                f"recovery log-LR {statistic:.2f} >= {threshold:.2f}"
            )
            return replace(
                check,
                status=Status.HEALTHY,
                reason=reason,
                statistic=statistic,
                threshold=threshold,
            )
    if check.status is Status.HEALTHY:
        return replace(
            check, reason=f"back within baseline at the end of the window: {check.reason}"
        )
    return check


@dataclass(frozen=True, slots=True)
class RecoveryWindows:
    """The incident's baseline (before the bad deploy) and the window since the revert deploy."""

    baseline_start: float
    baseline_end: float
    since: float
    length: float
    step: float

    def end(self, now: float) -> float:
        return min(now, self.since + self.length)

    def complete(self, now: float) -> bool:
        return now >= self.since + self.length


async def observe_recovery(
    source: MetricsSource,
    sli: Sli,
    windows: RecoveryWindows,
    regressed_rate: float,
    now: float,
    *,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Query the SLI over both windows and judge recovery; a source error is not a decision."""
    step, complete = windows.step, windows.complete(now)
    b_start, b_end = windows.baseline_start + step, windows.baseline_end
    w_start, w_end = windows.since + step, windows.end(now)
    try:
        if w_end < w_start:
            return SliResult(
                sli=sli.name, status=Status.OBSERVING, reason="no step since the revert"
            )
        base = await fetch_points(source, sli, [b_start, b_end], step)
        since = await fetch_points(source, sli, [w_start, w_end], step)
        if sli.kind is SliKind.RATIO:
            return assess_recovery(
                sli, _sums(base), regressed_rate, _sums(since), complete, settings=settings
            )
        return assess_gauge(sli, [p[1] for p in base], [p[1] for p in since], complete, settings)
    except MetricsError as exc:
        status = Status.INCONCLUSIVE if complete else Status.OBSERVING
        return SliResult(sli=sli.name, status=status, reason=f"metrics source failed: {exc}")


def _sums(points: tuple[tuple[float, float, float], ...]) -> tuple[float, float]:
    """(bad, total) over the steps of a ratio SLI."""
    return sum(p[1] for p in points), sum(p[2] for p in points)
