"""The running form of the ratio test (`observer.sequential_state`) against its definitions.

At every step of many series (clean at the null's edge, regressions from the deploy and late,
bursts that end, gaps and zero traffic, ties, fractional counts), a `RatioState` carried step to
step gives the statistics of `observer.sequential`'s functions over the whole list, and
`assess_ratio_state` the verdict of the full recomputation `assess_ratio_steps` did before the
state existed (`full_recomputation` below, kept verbatim as the oracle).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import fields, replace

import pytest

from observer.detect import ALTERNATIVES, DEFAULT_SETTINGS, DetectorSettings
from observer.sequential import (
    FROM_DEPLOY_SHARE,
    Baseline,
    Step,
    _final,
    _pending,
    assess_ratio_state,
    assess_ratio_steps,
    burst_steps,
    evidence,
    heaviest_stretch,
    null_rate,
    ratio_state,
    references,
    share_evidence,
    share_statistics,
    step_log_lrs,
)
from observer.sequential_state import Evidence, RatioState, Stretch
from observer.slis import Sli, SliKind
from observer.verdict import SliResult, Status

ERRORS = Sli("errors", SliKind.RATIO, bad="b", total="t")


def full_recomputation(
    sli: Sli,
    baselines: Sequence[Baseline],
    steps: Sequence[Step],
    *,
    complete: bool,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> SliResult:
    """`assess_ratio_steps` as it was before `RatioState`: everything over all steps, each time
    (the behaviour the state must not change)."""
    w_bad = sum(s.bad for s in steps)
    w_total = sum(s.total for s in steps)
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
    if found is None:
        reason = (
            f"no baseline has min_events {max(sli.min_events, 1)} "
            f"({', '.join(f'{b.label}: {b.total:.0f}' for b in baselines) or 'no baseline data'})"
        )
        return replace(result, status=_pending(complete), reason=reason)
    p_null, chosen = found
    base_rate = chosen.bad / chosen.total
    burst = burst_steps(sli, settings, step_seconds, horizon)
    excursion_alpha = settings.alpha * (1 - FROM_DEPLOY_SHARE)
    excursion_threshold = math.log(max(horizon, 1) * len(ALTERNATIVES) / excursion_alpha)
    excursion_persist = settings.persist + math.log(max(horizon, 1) * len(ALTERNATIVES))
    ev = evidence(steps, p_null, burst, (excursion_threshold, excursion_persist))
    compared = references(sli, baselines)
    stretch = heaviest_stretch(step_log_lrs(steps, p_null, min(2 * p_null, 0.999)), burst)
    share, share_rest = share_evidence(compared, steps, sli.tolerance, stretch[:2])
    ev = replace(ev, from_deploy=share, from_deploy_rest=share_rest)
    share_floor = max(r.bad / r.total for r in compared) * (1 + sli.tolerance)
    from_deploy_margin = min(ev.from_deploy - threshold, ev.from_deploy_rest - settings.persist)
    excursion_margin = min(
        ev.excursion - excursion_threshold, ev.excursion_rest - excursion_persist
    )
    use_excursion = ev.onset_index < len(steps) and excursion_margin > from_deploy_margin
    statistic = (
        ev.excursion - (excursion_threshold - threshold) if use_excursion else ev.from_deploy
    )
    rest, rest_bar = (
        (ev.excursion_rest, excursion_persist)
        if use_excursion
        else (ev.from_deploy_rest, settings.persist)
    )
    onset = steps[ev.onset_index].t - step_seconds if use_excursion and steps else 0.0
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
    status, reason = _final(sli, len(steps), horizon, w_total, healthy)
    return replace(result, status=status, reason=reason)


def close(a: object, b: object) -> bool:
    """Equal, floats to a relative 1e-9 (NaN equal to NaN): running sums add in another order
    than `sum` does on Python 3.12+."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float)
        assert isinstance(b, int | float)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def differences(got: Evidence | SliResult, want: Evidence | SliResult) -> list[str]:
    """The fields where two records differ (status and reason exactly, floats by `close`)."""
    return [
        f"{f.name}: {getattr(got, f.name)!r} != {getattr(want, f.name)!r}"
        for f in fields(got)
        if not close(getattr(got, f.name), getattr(want, f.name))
    ]


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw (n small enough to draw each event)."""
    return sum(rng.random() < p for _ in range(n))


Series = Callable[[random.Random, float, int], list[Step]]


def rates(per_step: Callable[[int], float], events: int = 200, scale: float = 1.0) -> Series:
    """Steps of `events` (times `scale`: fractional counts, as Prometheus's `increase` gives)
    with bad events at `per_step(k)` times the rate `p`, `t` = 60 s a step."""

    def make(rng: random.Random, p: float, n: int) -> list[Step]:
        return [
            Step(60.0 * (k + 1), binomial(rng, events, min(p * per_step(k), 1.0)) * scale,
                 events * scale)
            for k in range(n)
        ]  # fmt: skip

    return make


def gaps(rng: random.Random, p: float, n: int) -> list[Step]:
    """Missing steps (`t` skips), zero-traffic steps, a step with more bad than total (counters
    reset apart), and a regression among them."""
    steps = []
    for k in range(n):
        if k % 7 == 3:
            continue
        if k % 5 == 1:
            steps.append(Step(60.0 * (k + 1), 0.0, 0.0))
        elif k == 11:
            steps.append(Step(60.0 * (k + 1), 9.0, 4.0))
        else:
            multiple = 4.0 if k >= n // 2 else 1.0
            steps.append(Step(60.0 * (k + 1), binomial(rng, 100, min(p * multiple, 1.0)), 100.0))
    return steps


def ties(rng: random.Random, p: float, n: int) -> list[Step]:
    """Runs of identical steps: zero traffic (equal prefix sums), identical zero-bad steps,
    identical bad steps, and pairs that cancel."""
    del rng, p
    pattern = [Step(0, 0, 0)] * 4 + [Step(0, 0, 100)] * 5 + [Step(0, 3, 100)] * 3
    pattern += [Step(0, 0, 0), Step(0, 5, 100), Step(0, 0, 0), Step(0, 5, 100), Step(0, 0, 0)]
    return [Step(60.0 * (k + 1), s.bad, s.total) for k, s in enumerate((pattern * 4)[:n])]


SERIES: dict[str, Series] = {
    "clean at the null's edge": rates(lambda k: 1.0),
    "clean, fractional counts": rates(lambda k: 1.0, events=150, scale=1.37),
    "regression from the deploy": rates(lambda k: 3.0),
    "regression starting late": rates(lambda k: 1.0 if k < 22 else 5.0),
    "a burst that ends": rates(lambda k: 25.0 if 8 <= k < 11 else 0.8),
    "two bursts, then a regression": rates(
        lambda k: 30.0 if k in (4, 5, 14) else (6.0 if k >= 30 else 1.0), scale=0.5
    ),
    "gaps and zero traffic": gaps,
    "ties": ties,
}
P_NULLS = (1e-6, 0.002, 0.03, 0.3, 0.99)
BURSTS = (0, 1, 3, 9)


def cases() -> list[tuple[str, float, int]]:
    return [(name, p, burst) for name in SERIES for p in P_NULLS for burst in BURSTS]


@pytest.mark.parametrize(("name", "p_null", "burst"), cases())
def test_the_state_gives_the_definitions_statistics_at_every_step(
    name: str, p_null: float, burst: int
) -> None:
    """Evidence and the share test's inputs, from a state pushed one step at a time, equal the
    functions over the steps so far."""
    steps = SERIES[name](random.Random(f"{name} {p_null}"), p_null, 45)
    state = RatioState.start(p_null, burst)
    for k in range(len(steps) + 1):
        if k:
            state.push(steps[k - 1])
        seen = steps[:k]
        for bars in ((0.0, 0.0), (12.0, 7.5), (-1.0, 30.0)):
            assert differences(state.evidence(bars), evidence(seen, p_null, burst, bars)) == []
        start, end, _ = heaviest_stretch(step_log_lrs(seen, p_null, min(2 * p_null, 0.999)), burst)
        gone = seen[start:end]
        want_rest = (sum(s.bad for s in seen) - sum(s.bad for s in gone),
                     sum(s.total for s in seen) - sum(s.total for s in gone))  # fmt: skip
        (bad, total), rest = state.share_counts()
        assert close(bad, sum(s.bad for s in seen))
        assert close(total, sum(s.total for s in seen))
        assert close(rest[0], want_rest[0])
        assert close(rest[1], want_rest[1])
        reference = [Baseline("before", 20.0, 10000.0)]
        got = share_statistics(reference, 0.1, (bad, total), rest)
        want = share_evidence(reference, seen, 0.1, (start, end))
        assert close(got[0], want[0])
        assert close(got[1], want[1])


@pytest.mark.parametrize("width", [0, 1, 2, 3, 9])
def test_the_running_stretch_picks_the_definitions_stretch_ties_included(width: int) -> None:
    """On terms with many equal prefix sums (small integers, exact in floats), the running
    stretch picks the same `[start, end)` as `heaviest_stretch`: the earliest least start, moved
    only by a strictly heavier stretch."""
    rng = random.Random(width)
    for _ in range(300):
        terms = [float(rng.choice((-2, -1, 0, 0, 1, 1, 2))) for _ in range(rng.randrange(30))]
        stretch = Stretch(width)
        for k, value in enumerate(terms, start=1):
            stretch.push(value)
            assert stretch.best == heaviest_stretch(terms[:k], width)
            assert stretch.total == sum(terms[:k])


BASELINES: dict[str, list[Baseline]] = {
    "one before": [Baseline("before", 12.0, 10000.0)],
    "seasons that agree (pooled)": [Baseline("before", 50.0, 1e4), Baseline("1d", 56.0, 1e4)],
    "seasons that disagree": [Baseline("before", 50.0, 1e4), Baseline("1d", 300.0, 1e4)],
    "no bad events before": [Baseline("before", 0.0, 50000.0)],
    "a high rate": [Baseline("before", 3000.0, 10000.0)],
    "too thin to use": [Baseline("before", 1.0, 40.0)],
}  # fmt: skip
WIDTHS: dict[int, tuple[Sli, float, int]] = {
    0: (replace(ERRORS, max_blip=0.0), 60.0, 40),
    1: (ERRORS, 60.0, 15),
    3: (ERRORS, 60.0, 40),
    9: (replace(ERRORS, max_blip=120.0), 15.0, 90),
}
"""Per burst width: an SLI, step seconds and horizon that give it."""


def carried_results(
    sli: Sli,
    baselines: Sequence[Baseline],
    steps: Sequence[Step],
    *,
    horizon: int,
    step_seconds: float,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    revisable: int = 4,
) -> list[tuple[SliResult, SliResult]]:
    """Per evaluation k = 0..len(steps), as the Watch will run it (the settled steps folded into
    a carried state, the last `revisable` pushed on a copy) and as the full recomputation."""
    settled = ratio_state(
        sli, baselines, horizon=horizon, step_seconds=step_seconds, settings=settings
    )
    pairs = []
    for k in range(len(steps) + 1):
        if k > revisable:
            settled.push(steps[k - revisable - 1])
        state = settled.copy()
        for step in steps[max(k - revisable, 0) : k]:
            state.push(step)
        complete = k == len(steps)
        got = assess_ratio_state(sli, baselines, state, complete=complete, horizon=horizon,
                                 step_seconds=step_seconds, settings=settings)  # fmt: skip
        want = full_recomputation(sli, baselines, steps[:k], complete=complete, horizon=horizon,
                                  step_seconds=step_seconds, settings=settings)  # fmt: skip
        pairs.append((got, want))
    return pairs


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("baselines", list(BASELINES))
@pytest.mark.parametrize("name", list(SERIES))
def test_a_carried_state_is_judged_as_the_full_recomputation(
    name: str, baselines: str, width: int
) -> None:
    """At every step, the verdict from a carried state (copy, recent steps pushed) is the old
    full recomputation's: status and reason exactly, every number."""
    sli, step_seconds, horizon = WIDTHS[width]
    refs = BASELINES[baselines]
    assert burst_steps(sli, DEFAULT_SETTINGS, step_seconds, horizon) == width
    found = null_rate(sli, refs)
    steps = SERIES[name](random.Random(name), found[0] if found else 0.01, horizon)
    results = carried_results(sli, refs, steps, horizon=horizon, step_seconds=step_seconds)
    for k, (got, want) in enumerate(results):
        assert differences(got, want) == [], f"step {k}"
    assert differences(
        assess_ratio_steps(sli, refs, steps, complete=True, horizon=horizon,
                           step_seconds=step_seconds),
        results[-1][1],
    ) == []  # fmt: skip


def test_the_cases_reach_every_verdict() -> None:
    """The table above is not all `observing`: it calls regressions (from the deploy and since
    a later onset), healthy and inconclusive watches."""
    seen: set[tuple[Status, bool]] = set()
    for name in ("clean at the null's edge", "regression from the deploy",
                 "regression starting late", "gaps and zero traffic"):  # fmt: skip
        for label in ("one before", "too thin to use"):
            sli, step_seconds, horizon = WIDTHS[3]
            found = null_rate(sli, BASELINES[label])
            steps = SERIES[name](random.Random(name), found[0] if found else 0.01, horizon)
            for got, _ in carried_results(sli, BASELINES[label], steps, horizon=horizon,
                                          step_seconds=step_seconds):  # fmt: skip
                seen.add((got.status, "since" in got.reason))
    assert {
        (Status.REGRESSED, False),
        (Status.REGRESSED, True),
        (Status.HEALTHY, False),
        (Status.INCONCLUSIVE, False),
        (Status.OBSERVING, False),
    } <= seen


def test_pushing_on_a_copy_leaves_the_original_as_it_was() -> None:
    """A copy shares nothing mutable: the original still gives the statistics of its own steps,
    and pushing the same steps on both gives the same."""
    steps = SERIES["two bursts, then a regression"](random.Random(3), 0.01, 40)
    original = RatioState.start(0.01, 3)
    for step in steps[:20]:
        original.push(step)
    before = (original.evidence((5.0, 5.0)), original.share_counts(), original.steps)
    copy = original.copy()
    for step in steps[20:]:
        copy.push(step)
    assert (original.evidence((5.0, 5.0)), original.share_counts(), original.steps) == before
    assert copy.steps == 40
    assert differences(copy.evidence((5.0, 5.0)), evidence(steps, 0.01, 3, (5.0, 5.0))) == []
    for step in steps[20:]:
        original.push(step)
    assert original.evidence((5.0, 5.0)) == copy.evidence((5.0, 5.0))
    assert original.share_counts() == copy.share_counts()


def test_a_state_for_other_baselines_or_settings_is_refused() -> None:
    """The state is built for one null rate and burst width; judging it against another
    raises instead of mixing the two."""
    refs = BASELINES["one before"]
    state = ratio_state(ERRORS, refs, horizon=40, step_seconds=60.0)
    assess_ratio_state(ERRORS, refs, state, complete=False, horizon=40, step_seconds=60.0)
    for other, step_seconds in (
        ("a high rate", 60.0),
        ("too thin to use", 60.0),
        ("one before", 15.0),
    ):
        with pytest.raises(ValueError, match="not for these baselines"):
            assess_ratio_state(ERRORS, BASELINES[other], state, complete=False, horizon=40,
                               step_seconds=step_seconds)  # fmt: skip


def random_watch(rng: random.Random) -> tuple[Sli, list[Baseline], list[Step], int, float]:
    """A watch of random shape: segments of rates and traffic, gaps, fractional counts, one to
    three baselines, an SLI's tolerance, min_events and max_blip."""
    sli = replace(
        ERRORS,
        tolerance=rng.choice((0.0, 0.1, 0.5)),
        min_events=rng.choice((0, 100, 1000)),
        max_blip=rng.choice((None, 0.0, 30.0, 120.0, 600.0)),
    )
    baselines = [
        Baseline(label, binomial(rng, total, rate) * 1.0, float(total))
        for label, rate, total in (
            (label, rng.choice((0.0, 0.001, 0.01, 0.1, 0.5)), rng.choice((50, 2000, 20000)))
            for label in ("before", "1d", "7d")[: rng.randint(1, 3)]
        )
    ]
    step_seconds = rng.choice((15.0, 30.0, 60.0))
    n = rng.randrange(61)
    base = rng.choice((0.001, 0.01, 0.05, 0.3))
    steps: list[Step] = []
    k = 0
    while k < n:
        length = rng.randint(1, 12)
        multiple = rng.choice((0.0, 0.5, 1.0, 1.0, 1.5, 3.0, 10.0))
        events = rng.choice((0, 5, 50, 300))
        scale = rng.choice((1.0, 1.0, 0.73))
        for _ in range(length):
            k += 1
            if rng.random() < 0.1:
                continue
            bad = binomial(rng, events, min(base * multiple, 1.0)) * scale
            steps.append(Step(step_seconds * k, bad, events * scale))
    horizon = max(k + rng.randrange(5), 1)
    return sli, baselines, steps, horizon, step_seconds


def test_random_watches_are_judged_as_the_full_recomputation() -> None:
    """A seeded sweep over a few hundred random watches, every step, with 0 to 4 revisable
    steps and random settings."""
    rng = random.Random(20261203)
    regressed = 0
    for run in range(300):
        sli, baselines, steps, horizon, step_seconds = random_watch(rng)
        settings = DetectorSettings(alpha=rng.choice((0.005, 0.05)), min_bad=rng.choice((1, 3)))
        results = carried_results(
            sli, baselines, steps, horizon=horizon, step_seconds=step_seconds,
            settings=settings, revisable=rng.randrange(5),
        )  # fmt: skip
        for k, (got, want) in enumerate(results):
            assert differences(got, want) == [], f"run {run}, step {k}"
        regressed += any(got.status is Status.REGRESSED for got, _ in results)
    assert 20 <= regressed <= 280
