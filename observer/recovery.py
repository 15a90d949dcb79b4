"""Recovery: is a regressed SLI back within the baseline it had before the regression?

After a revert is deployed, the SLI is judged step by step over the window since that deploy
against the incident's own baseline (the window before the bad deploy), never against the window
just before the revert deploy, which is the regression itself. Two sequential tests run side by
side over the same steps:

- still regressed: the Watch's own test (`observer.sequential.assess_ratio_steps`), with the
  incident's baseline as its one `before` baseline and the recovery window as its watch — the
  same null bound, evidence, blip rule, `min_bad` and coverage rules that called the regression;
- recovered: the Watch's likelihood ratio (`observer.sequential.step_log_lrs`, against the same
  null bound) with the roles set for recovery: "back at the baseline's null bound" against
  "still at the regressed rate", stopping once it crosses log(1/alpha) with the bad rate at or
  below the bound — so a clear recovery is confirmed in a few steps instead of at the end of a
  whole watch window.

At the end of the window without a decision, the Watch's test's verdict stands (healthy means
recovered; gaps or too little traffic are inconclusive). A baseline too thin for the Watch's
test (below `min_events`, or without any event) decides nothing either way. Gauge SLIs use the
gauge test against the old baseline. Pure functions, plus one `observe_recovery` that queries
the source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from observer.detect import DEFAULT_SETTINGS, DetectorSettings, assess_gauge
from observer.observe import fetch_points, step_plan
from observer.scrape_interval import ScrapeIntervals
from observer.sequential import Baseline, Step, assess_ratio_steps, step_log_lrs
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource
from observer.verdict import SliResult, Status


def assess_recovery(
    sli: Sli,
    baseline: Baseline,
    regressed_rate: float,
    steps: Sequence[Step],
    *,
    complete: bool,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge the steps since the revert deploy (`horizon` steps in all) against the incident's
    `baseline` and the rate it regressed to (NaN when unknown: only the end can say recovered).

    HEALTHY: recovered; REGRESSED: still regressed; OBSERVING: not yet; INCONCLUSIVE: no
    usable baseline, gaps or too little traffic by the end of the window.
    """
    check = assess_ratio_steps(
        sli,
        [baseline],
        steps,
        complete=complete,
        horizon=horizon,
        step_seconds=step_seconds,
        settings=settings,
    )
    if check.status is Status.REGRESSED:
        return replace(check, reason=f"still regressed: {check.reason}")
    # The Watch's test sets its null only from a baseline it can use: none, nothing to be back in.
    p_null = check.null_value
    if check.status is Status.INCONCLUSIVE or not math.isfinite(p_null):
        return check
    w_bad, w_total = check.watch_bad, check.watch_total
    threshold = math.log(1 / settings.alpha)
    if (
        math.isfinite(regressed_rate)
        and regressed_rate > p_null
        and w_total >= max(sli.min_events, 1)
    ):
        statistic = sum(step_log_lrs(steps, min(regressed_rate, 0.999), p_null))
        if statistic >= threshold and w_bad / w_total <= p_null:
            reason = (
                f"back within baseline: bad rate {w_bad / w_total:.4%} vs baseline "
                f"{check.baseline_value:.4%} (bound {p_null:.4%}, regressed "
                f"{regressed_rate:.4%}); recovery log-LR {statistic:.2f} >= {threshold:.2f}"
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

    @property
    def horizon(self) -> int:
        """Steps in the whole recovery window."""
        return max(1, round(self.length / self.step))


async def observe_recovery(
    source: MetricsSource,
    sli: Sli,
    windows: RecoveryWindows,
    regressed_rate: float,
    now: float,
    *,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    intervals: ScrapeIntervals | None = None,
    scrape_interval: float | None = None,
) -> SliResult:
    """Query the SLI over both windows and judge recovery; a source error is not a decision.
    Both windows are queried on the step the SLI's data allows (`observer.scrape_interval`)."""
    complete = windows.complete(now)
    try:
        plan = await step_plan(source, sli, windows.step, windows.baseline_end,
                               intervals=intervals, scrape_interval=scrape_interval)  # fmt: skip
        windows = replace(windows, step=plan.step)
        step = windows.step
        b_start, b_end = windows.baseline_start + step, windows.baseline_end
        w_start, w_end = windows.since + step, windows.end(now)
        if w_end < w_start:
            return SliResult(
                sli=sli.name, status=Status.OBSERVING, reason="no step since the revert"
            )
        base = await fetch_points(source, sli, [b_start, b_end], step, plan)
        since = await fetch_points(source, sli, [w_start, w_end], step, plan)
        if sli.kind is SliKind.RATIO:
            return assess_recovery(
                sli,
                Baseline("before", sum(p[1] for p in base), sum(p[2] for p in base)),
                regressed_rate,
                [Step(p[0] - windows.since, p[1], p[2]) for p in since],
                complete=complete,
                horizon=windows.horizon,
                step_seconds=step,
                settings=settings,
            )
        return assess_gauge(sli, [p[1] for p in base], [p[1] for p in since], complete, settings)
    except MetricsError as exc:
        status = Status.INCONCLUSIVE if complete else Status.OBSERVING
        return SliResult(sli=sli.name, status=status, reason=f"metrics source failed: {exc}")
