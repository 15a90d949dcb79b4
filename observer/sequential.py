"""The step-wise sequential test of a ratio SLI: per-step (bad, total) counts in, `SliResult` out.

Pure and deterministic; the Watch, recovery after a revert (`observer.recovery`), `rearguard
backtest` and the detection benchmark all call `assess_ratio_steps` with the steps seen so far,
once per step. The functions over steps here (`evidence`, `heaviest_stretch`, `without_burst`,
`share_evidence`) are the readable definitions; the judge itself, `assess_ratio_state`, reads
their running form, a `RatioState` (`observer.sequential_state`) the steps are folded into one at
a time, so that an evaluation costs O(1) in the watch's length for a caller that carries it
(`ratio_state` builds it; `assess_ratio_steps` folds every step into a fresh one).
tests/test_sequential_state.py holds the two forms equal.

The references are the available baselines (before the deploy, the same window a day and a week
earlier, or the stable version in canary mode): pooled when they agree, else each one. Two
families of likelihood ratios, each a mixture or a union over `ALTERNATIVES` (multiples of the
null):

- from the deploy on (the regression starts at the deploy): the watch's share of all bad events
  of reference and watch (`share_log_lr`; given their total, binomial with a parameter set by
  the rate ratio alone), the ratio `1 + tolerance` against the alternatives' multiples of it,
  the least over the references (the most pessimistic season), against `log(1 / (0.8 alpha))`.
  The reference's rate drops out instead of being bounded, which at moderate traffic is most of
  the power (the old upper Wilson bound on the most pessimistic baseline sat 30% above a
  0.5% rate at 20 requests/s);
- from the start of the current excursion (a CUSUM per alternative, for a regression that starts
  later in the watch), against a null at the upper Wilson bound (99.5%) of the most pessimistic
  reference raised by `tolerance`, against `log(horizon * len(ALTERNATIVES) / (0.2 alpha))`.

Each likelihood ratio from a fixed start and alternative is a non-negative supermartingale under
the null (also when the rate moves below the null from step to step), so by Ville's inequality
and a union bound over starts and alternatives the chance of ever calling a regression during a
clean watch is at most `alpha`, however often it is evaluated, plus the 0.5% chance that the
baseline's bound falls below its true rate for the excursion family. For the share statistic
this rests on the Bayes factor with the scale-invariant prior on the unknown rate; the tests
simulate it (clean watches at the null's edge, evaluated at every step, stay below `alpha`).

A burst that ends is not a regression: the evidence must persist. Besides crossing its threshold,
the statistic must keep more than `persist` (log-LR; for an excursion, plus the same union term)
with any stretch of up to `r` consecutive steps left out (the stretch that weighs most), `r` =
the steps a burst of the SLI's `max_blip` (two minutes by default) can touch, `ceil(max_blip /
step) + 1` as it need not start on a step boundary, at most a tenth of the watch. A
burst no longer than `max_blip` (pods restarting, a cold cache) then leaves only the clean steps
around it, which clear that bar with probability at most exp(-persist) by Ville's inequality
again; a regression that stays keeps growing outside any one stretch. Both conditions are needed,
so the false-alarm bound above is untouched. The cost is delay: a regression is called no sooner
than `r` steps plus the evidence for `persist` after it starts, about `max_blip` later than the
threshold alone would allow for a strong one, nothing for one too weak to cross before then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from observer.detect import (
    ALTERNATIVES,
    DEFAULT_SETTINGS,
    DetectorSettings,
    null_bound,
    wilson_upper,
)
from observer.sequential_state import Evidence, LogLr, RatioState, alternatives, log_mean_exp
from observer.slis import Sli
from observer.verdict import SliResult, Status


@dataclass(frozen=True, slots=True)
class Baseline:
    """Counts of one reference window: `label` says which (`before`, `1d`, `7d`, `stable`)."""

    label: str
    bad: float
    total: float


@dataclass(frozen=True, slots=True)
class Step:
    """One watch step's counts; `t` is seconds after the deploy (the step's end)."""

    t: float
    bad: float
    total: float


def null_rate(sli: Sli, baselines: Sequence[Baseline]) -> tuple[float, Baseline] | None:
    """The conservative null rate over baselines with at least `min_events`, and which one set it.

    Baselines that agree with each other (a homogeneity test at `HOMOGENEITY_Z`) are one
    reference measured longer, so they are pooled and their upper bound is tighter. When they
    disagree, a daily or weekly peak that shows in an earlier window raises the null (the most
    pessimistic upper bound) instead of being mistaken for a regression. A baseline too thin to
    trust is left out rather than trusted.
    """
    usable = [b for b in baselines if b.total >= max(sli.min_events, 1)]
    if not usable:
        return None
    if len(usable) > 1 and homogeneous(usable):
        chosen = Baseline(
            "+".join(b.label for b in usable),
            sum(b.bad for b in usable),
            sum(b.total for b in usable),
        )
        upper = wilson_upper(chosen.bad, chosen.total)
    else:
        upper, chosen = max(
            ((wilson_upper(b.bad, b.total), b) for b in usable), key=lambda pair: pair[0]
        )
    return null_bound(sli, upper), chosen


HOMOGENEITY_Z = 2.326
"""One-sided 99% normal quantile: baselines whose rates differ past the chi-square quantile at
this level are treated as different seasons, not pooled."""


def homogeneous(baselines: Sequence[Baseline]) -> bool:
    """Whether the baselines' bad rates are consistent with one common rate (Pearson's
    chi-square against the Wilson-Hilferty quantile with len - 1 degrees of freedom)."""
    bad = sum(b.bad for b in baselines)
    total = sum(b.total for b in baselines)
    rate = bad / total
    if rate <= 0 or rate >= 1:
        return all(b.bad == 0 for b in baselines) or all(b.bad == b.total for b in baselines)
    chi2 = sum((b.bad - b.total * rate) ** 2 / (b.total * rate * (1 - rate)) for b in baselines)
    df = len(baselines) - 1
    quantile = df * (1 - 2 / (9 * df) + HOMOGENEITY_Z * math.sqrt(2 / (9 * df))) ** 3
    return chi2 <= quantile


def step_log_lrs(steps: Sequence[Step], p_null: float, p_alt: float) -> list[float]:
    """Per step, the log-likelihood ratio of bad rate `p_alt` against `p_null` (positive where
    the step favours `p_alt`).

    The Watch tests a baseline's bound (null) against regressed rates above it; recovery sets
    the roles the other way round: still at the regressed rate (null) against back at the bound.
    """
    llr = LogLr.between(p_null, p_alt)
    return [llr.of(s) for s in steps]


def heaviest_stretch(llrs: Sequence[float], width: int) -> tuple[int, int, float]:
    """The stretch `[start, end)` of at most `width` consecutive terms whose sum weighs most for
    a regression, and that sum (an empty stretch, 0, when nothing weighs). One pass over prefix
    sums, each step's stretch looking back at most `width` terms: a running quantity."""
    prefix = [0.0]
    for value in llrs:
        prefix.append(prefix[-1] + value)
    best = (0, 0, 0.0)
    for end in range(1, len(prefix)):
        start = min(range(max(0, end - width), end), key=prefix.__getitem__, default=end)
        if prefix[end] - prefix[start] > best[2]:
            best = (start, end, prefix[end] - prefix[start])
    return best


def without_burst(llrs: Sequence[float], width: int) -> float:
    """Sum of `llrs` without the stretch of at most `width` consecutive terms that weighs most
    (a burst that ended weighs nothing)."""
    return sum(llrs) - heaviest_stretch(llrs, width)[2]


def share_log_lr(
    reference: Baseline, bad: float, total: float, ratio: float, tolerance: float
) -> float:
    """Log-LR that the watch's bad rate is `ratio` times the reference's against `1 + tolerance`
    times it, from the watch's share of all bad events of reference and watch together.

    Given the total bad count, the watch's share is binomial with a parameter set by the rate
    ratio alone (Poisson counts), so the reference's unknown rate drops out instead of being
    bounded from above: the most powerful comparison of the two windows. With the scale-invariant
    prior on that rate, this is the Bayes factor of the two ratios; its false-alarm rate over a
    watch evaluated at every step stays below `alpha` (tests/test_sequential.py simulates it).
    """
    if total <= 0 or reference.total <= 0:
        return 0.0
    null = 1 + tolerance
    alt = null * ratio
    events = reference.bad + bad
    return bad * math.log(alt / null) + events * (
        math.log(reference.total + null * total) - math.log(reference.total + alt * total)
    )


def share_evidence(
    references: Sequence[Baseline],
    steps: Sequence[Step],
    tolerance: float,
    left_out: tuple[int, int],
) -> tuple[float, float]:
    """The mixture over `ALTERNATIVES` of `share_log_lr` from the deploy, the least over the
    references (each a null the watch must beat), and the same with the steps `left_out`
    (a stretch `[start, end)`, the burst) taken away. Sums over steps only."""
    bad = sum(s.bad for s in steps)
    total = sum(s.total for s in steps)
    gone = steps[left_out[0] : left_out[1]]
    rest_bad = bad - sum(s.bad for s in gone)
    rest_total = total - sum(s.total for s in gone)
    return share_statistics(references, tolerance, (bad, total), (rest_bad, rest_total))


def share_statistics(
    references: Sequence[Baseline],
    tolerance: float,
    watch: tuple[float, float],
    rest: tuple[float, float],
) -> tuple[float, float]:
    """`share_evidence` from the sums it takes over steps: the watch's (bad, total) and the same
    with the stretch left out."""

    def mixture(reference: Baseline, counts: tuple[float, float]) -> float:
        return log_mean_exp([share_log_lr(reference, *counts, m, tolerance) for m in ALTERNATIVES])

    return (
        min(mixture(r, watch) for r in references),
        min(mixture(r, rest) for r in references),
    )


def references(sli: Sli, baselines: Sequence[Baseline]) -> list[Baseline]:
    """The baselines a watch is compared with in the share test: pooled when they agree, else
    each one with `min_events` (the watch must beat every season, the most pessimistic too)."""
    usable = [b for b in baselines if b.total >= max(sli.min_events, 1)]
    if len(usable) > 1 and homogeneous(usable):
        return [
            Baseline(
                "+".join(b.label for b in usable),
                sum(b.bad for b in usable),
                sum(b.total for b in usable),
            )
        ]
    return usable


def evidence(
    steps: Sequence[Step], p_null: float, burst: int, bars: tuple[float, float] = (0.0, 0.0)
) -> Evidence:
    """The mixture log-LR from the deploy and the best CUSUM excursion, each also with the stretch
    of up to `burst` steps that weighs most left out (what is left once a burst is discounted).

    The best excursion is the one nearest to clearing both `bars` (its threshold and the
    evidence it must keep without the blip)."""
    rates = alternatives(p_null)
    if not rates or not steps:
        return Evidence(0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, steps[0].t if steps else math.nan)
    per_alt = [step_log_lrs(steps, p_null, p_alt) for p_alt in rates]
    from_deploy = log_mean_exp([sum(llrs) for llrs in per_alt])
    from_deploy_rest = log_mean_exp([without_burst(llrs, burst) for llrs in per_alt])
    best, best_rest, onset = 0.0, 0.0, len(steps)
    score = -math.inf
    for llrs in per_alt:
        level, start = 0.0, 0
        for index, value in enumerate(llrs):
            if level + value <= 0:
                level, start = 0.0, index + 1
            else:
                level += value
        if start < len(llrs):
            rest = without_burst(llrs[start:], burst)
            if min(level - bars[0], rest - bars[1]) > score:
                score = min(level - bars[0], rest - bars[1])
                best, best_rest, onset = level, rest, start
    since = steps[onset:]
    return Evidence(
        from_deploy,
        from_deploy_rest,
        best,
        best_rest,
        onset,
        sum(s.bad for s in since),
        sum(s.total for s in since),
        steps[onset].t if since else math.nan,
    )


def ratio_state(
    sli: Sli,
    baselines: Sequence[Baseline],
    *,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> RatioState:
    """The state a watch's steps are folded into (`RatioState.push`), for its null rate (None when
    no baseline can set one) and burst width: both depend only on the baselines and settings."""
    found = null_rate(sli, baselines)
    burst = burst_steps(sli, settings, step_seconds, horizon)
    return RatioState.start(None if found is None else found[0], burst)


def assess_ratio_steps(
    sli: Sli,
    baselines: Sequence[Baseline],
    steps: Sequence[Step],
    *,
    complete: bool,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge a ratio SLI from its baselines and the watch steps so far (`horizon` steps in all):
    `assess_ratio_state` on every step folded into a fresh `ratio_state`."""
    state = ratio_state(
        sli, baselines, horizon=horizon, step_seconds=step_seconds, settings=settings
    )
    for step in steps:
        state.push(step)
    return assess_ratio_state(
        sli,
        baselines,
        state,
        complete=complete,
        horizon=horizon,
        step_seconds=step_seconds,
        settings=settings,
    )


def assess_ratio_state(
    sli: Sli,
    baselines: Sequence[Baseline],
    state: RatioState,
    *,
    complete: bool,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """Judge a ratio SLI from its baselines and the state of the watch steps so far (`horizon`
    steps in all), built by `ratio_state` from the same baselines and settings.

    `regressed` needs the evidence, at least `settings.min_bad` bad events behind it and
    `min_events` of watch traffic. At the end, a watch with data in under `DEFAULT_MIN_COVERAGE`
    of its `horizon` steps is `inconclusive`, as is one with too little traffic. Nothing here can
    turn missing data into `regressed`: a step without data contributes no evidence.
    """
    w_bad, w_total = state.bad, state.total
    primary = baselines[0] if baselines else Baseline("before", 0.0, 0.0)
    watch_rate = w_bad / w_total if w_total > 0 else math.nan
    alpha_share = settings.alpha * FROM_DEPLOY_SHARE
    threshold = math.log(1 / alpha_share)
    result = SliResult(
        sli=sli.name,
        status=Status.OBSERVING,
        reason="evidence not yet decisive",
        baseline_value=primary.bad / primary.total if primary.total > 0 else math.nan,
        watch_value=watch_rate,
        baseline_bad=primary.bad,
        baseline_total=primary.total,
        watch_bad=w_bad,
        watch_total=w_total,
        threshold=threshold,
    )
    found = null_rate(sli, baselines)
    burst = burst_steps(sli, settings, step_seconds, horizon)
    if (None if found is None else found[0], burst) != (state.p_null, state.burst):
        raise ValueError(
            f"the state was built for p_null {state.p_null} and burst {state.burst}, "
            "not for these baselines and settings"
        )
    if found is None:
        reason = (
            f"no baseline has min_events {max(sli.min_events, 1)} "
            f"({', '.join(f'{b.label}: {b.total:.0f}' for b in baselines) or 'no baseline data'})"
        )
        return replace(result, status=_pending(complete), reason=reason)
    p_null, chosen = found
    base_rate = chosen.bad / chosen.total
    excursion_alpha = settings.alpha * (1 - FROM_DEPLOY_SHARE)
    excursion_threshold = math.log(max(horizon, 1) * len(ALTERNATIVES) / excursion_alpha)
    # The evidence left once the blip is discounted must clear `persist`; for an excursion that
    # bar carries the same union over starts and alternatives as its threshold.
    excursion_persist = settings.persist + math.log(max(horizon, 1) * len(ALTERNATIVES))
    ev = state.evidence((excursion_threshold, excursion_persist))
    # From the deploy, the watch's share of the bad events against the references themselves
    # (no bound on their rate), with the stretch that weighs most for a regression left out.
    compared = references(sli, baselines)
    share, share_rest = share_statistics(compared, sli.tolerance, *state.share_counts())
    ev = replace(ev, from_deploy=share, from_deploy_rest=share_rest)
    share_floor = max(r.bad / r.total for r in compared) * (1 + sli.tolerance)
    # Report the larger statistic as a multiple of its own threshold, in log-LR units.
    from_deploy_margin = min(ev.from_deploy - threshold, ev.from_deploy_rest - settings.persist)
    excursion_margin = min(
        ev.excursion - excursion_threshold, ev.excursion_rest - excursion_persist
    )
    use_excursion = ev.onset_index < state.steps and excursion_margin > from_deploy_margin
    statistic = (
        ev.excursion - (excursion_threshold - threshold) if use_excursion else ev.from_deploy
    )
    rest, rest_bar = (
        (ev.excursion_rest, excursion_persist)
        if use_excursion
        else (ev.from_deploy_rest, settings.persist)
    )
    onset = ev.onset_t - step_seconds if use_excursion else 0.0
    effect = (watch_rate / base_rate - 1) if base_rate > 0 and w_total > 0 else math.nan
    result = replace(
        result,
        baseline_value=base_rate,
        baseline_bad=chosen.bad,
        baseline_total=chosen.total,
        statistic=statistic,
        effect=effect,
        null_value=p_null,
        onset=onset,
    )
    rates = (
        f"bad rate {watch_rate:.4%} vs baseline {base_rate:.4%} ({chosen.label}; "
        f"null bound {p_null:.4%})"
    )
    bad_behind, total_behind = (
        (ev.bad_since_onset, ev.total_since_onset) if use_excursion else (w_bad, w_total)
    )
    if (
        statistic >= threshold
        and rest > rest_bar
        and total_behind > 0
        and bad_behind / total_behind > (p_null if use_excursion else share_floor)
        and bad_behind >= settings.min_bad
        and w_total >= sli.min_events
    ):
        since = f" since {onset:.0f}s after the deploy" if use_excursion else ""
        reason = (
            f"{rates}; log-LR{since} {statistic:.2f} >= {threshold:.2f}, "
            f"{rest:.2f} > {rest_bar:.2f} without the heaviest {burst} consecutive step(s)"
        )
        return replace(result, status=Status.REGRESSED, reason=reason)
    if not complete:
        return result
    healthy = f"{rates}; log-LR {statistic:.2f} < {threshold:.2f}"
    status, reason = _final(sli, state.steps, horizon, w_total, healthy)
    return replace(result, status=status, reason=reason)


def burst_steps(sli: Sli, settings: DetectorSettings, step_seconds: float, horizon: int) -> int:
    """The longest stretch of steps a burst may fill and still not count: the steps that a burst
    of the SLI's `max_blip` (else the watch's `blip`) seconds can touch, at most a tenth of the
    watch (one step at the least), so a watch of a few long steps is not mostly left out.

    A burst starts wherever it likes, not on a step boundary: one of `m` seconds touches up to
    `ceil(m / step) + 1` steps (a 2-minute burst fills 3 steps of 60 s, not 2). Counting only
    `ceil(m / step)` left a part of every unaligned burst in the evidence, which at 30 s and 60 s
    steps was enough to call one burst in seven `regressed` (bench-detection, stop 16)."""
    seconds = settings.blip if sli.max_blip is None else sli.max_blip
    if step_seconds <= 0 or seconds <= 0:
        return 0
    steps = math.ceil(seconds / step_seconds - 1e-9) + 1
    return min(steps, max(1, horizon // 10))


def _final(sli: Sli, seen: int, horizon: int, w_total: float, healthy: str) -> tuple[Status, str]:
    """The end-of-watch verdict when no regression was called: gaps and thin traffic first."""
    coverage = seen / horizon if horizon > 0 else 1.0
    if coverage < DEFAULT_MIN_COVERAGE:
        return Status.INCONCLUSIVE, f"gaps: only {seen} of {horizon} watch steps had data"
    if w_total < sli.min_events:
        reason = (
            f"too little traffic: {w_total:.0f} events in the watch window, "
            f"below min_events {sli.min_events}"
        )
        return Status.INCONCLUSIVE, reason
    return Status.HEALTHY, healthy


FROM_DEPLOY_SHARE = 0.8
"""The share of `alpha` spent on the from-deploy family: most regressions start at the deploy;
the excursion family is already spread over every start and alternative, where a share of
0.2 instead of 0.5 costs it log(2.5) against the union bound's log(horizon * 5)."""

DEFAULT_MIN_COVERAGE = 0.5
"""Below this share of watch steps with data, a watch without a regression is inconclusive."""


def _pending(complete: bool) -> Status:
    return Status.INCONCLUSIVE if complete else Status.OBSERVING
