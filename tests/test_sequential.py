"""The step-wise ratio test (`observer.sequential`) on seeded binomial counts, many runs each.

These check the test's probabilities, not single cases: the false-alarm bound over a whole watch
evaluated at every step, the 0.5% -> 2.5% acceptance scenario with noise, and blips that recover.
"""

from __future__ import annotations

import random

import pytest

from observer.detect import DetectorSettings
from observer.sequential import Baseline, Step, assess_ratio_steps, homogeneous, null_rate
from observer.slis import Sli, SliKind
from observer.verdict import Status
from tests.test_detect import binomial

ERRORS = Sli("errors", SliKind.RATIO, bad="b", total="t")


def watch(
    rng: random.Random,
    *,
    sli: Sli = ERRORS,
    rate: float,
    events: int,
    step: float,
    horizon: int,
    baselines: list[Baseline],
    bad_rate_at: dict[int, float] | None = None,
    settings: DetectorSettings | None = None,
    upto: int | None = None,
) -> float | None:
    """Run one watch step by step as the Watch does (the first `upto` of `horizon` steps);
    seconds to `regressed`, or None."""
    steps: list[Step] = []
    for k in range(upto or horizon):
        p = (bad_rate_at or {}).get(k, rate)
        steps.append(Step(step * (k + 1), binomial(rng, events, p), events))
        result = assess_ratio_steps(
            sli,
            baselines,
            steps,
            complete=k == horizon - 1,
            horizon=horizon,
            step_seconds=step,
            settings=settings or DetectorSettings(),
        )
        if result.status is Status.REGRESSED:
            return step * (k + 1)
    return None


def baseline(rng: random.Random, label: str, rate: float, events: int, steps: int) -> Baseline:
    return Baseline(label, sum(binomial(rng, events, rate) for _ in range(steps)), events * steps)


def test_five_fold_errors_at_ten_per_second_are_called_within_two_minutes_with_noise() -> None:
    """0.5% -> 2.5% at 10 requests/s, 15 s steps, binomial counts: >= 95% of runs within 120 s."""
    rng = random.Random(20261102)
    runs, within = 300, 0
    for _ in range(runs):
        baselines = [baseline(rng, label, 0.005, 150, 120) for label in ("before", "1d", "7d")]
        called = watch(
            rng, rate=0.025, events=150, step=15.0, horizon=120, baselines=baselines, upto=8
        )
        within += called is not None
    assert within / runs >= 0.95


@pytest.mark.parametrize(("rate", "events"), [(0.01, 600), (0.002, 3000), (0.05, 40)])
def test_false_alarms_over_a_whole_watch_stay_below_alpha(rate: float, events: int) -> None:
    """Clean watches at the baseline's own rate, no tolerance, alpha 5%, judged at every step."""
    rng = random.Random(int(rate * 1e6) + events)
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", tolerance=0.0)
    settings = DetectorSettings(alpha=0.05)
    runs, fired = 400, 0
    for _ in range(runs):
        baselines = [baseline(rng, "before", rate, events, 30)]
        fired += (
            watch(
                rng,
                sli=sli,
                rate=rate,
                events=events,
                step=30.0,
                horizon=30,
                baselines=baselines,
                settings=settings,
            )
            is not None
        )
    assert fired / runs <= settings.alpha


def test_false_alarms_at_the_null_boundary_stay_below_alpha() -> None:
    """With the baseline rate known exactly (a huge baseline), a watch at the null is rarely
    called: Ville's bound alone, with nothing from the baseline's confidence bound."""
    rng = random.Random(7)
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", tolerance=0.0)
    settings = DetectorSettings(alpha=0.05)
    exact = [Baseline("before", 1e7, 1e9)]
    p_null = null_rate(sli, exact)
    assert p_null is not None
    runs = 400
    fired = sum(
        watch(
            rng,
            sli=sli,
            rate=p_null[0],
            events=500,
            step=30.0,
            horizon=30,
            baselines=exact,
            settings=settings,
        )
        is not None
        for _ in range(runs)
    )
    assert fired / runs <= settings.alpha


def test_blips_that_recover_are_rarely_called() -> None:
    """One 15 s step at 20x the error ratio, anywhere in a clean watch: under 1% regressed."""
    rng = random.Random(5)
    runs, fired = 300, 0
    for index in range(runs):
        rate = (0.001, 0.005, 0.02)[index % 3]
        events = (30, 300, 3000)[index // 3 % 3]
        baselines = [baseline(rng, label, rate, events, 60) for label in ("before", "1d")]
        blip = {rng.randrange(60): min(0.5, 20 * rate)}
        fired += (
            watch(
                rng,
                rate=rate,
                events=events,
                step=15.0,
                horizon=60,
                baselines=baselines,
                bad_rate_at=blip,
            )
            is not None
        )
    assert fired / runs <= 0.01


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ((90, 95, 88), True),
        ((90, 180, 92), False),  # a daily peak a day earlier: not one reference
        ((0, 0), True),
    ],
)
def test_baselines_are_pooled_only_when_they_agree(rates: tuple[int, ...], expected: bool) -> None:
    """Consistent baselines pool (a tighter null); a season that differs keeps its own bound."""
    baselines = [Baseline(f"b{i}", bad, 18_000) for i, bad in enumerate(rates)]
    assert homogeneous(baselines) is expected
    found = null_rate(ERRORS, baselines)
    assert found is not None
    assert ("+" in found[1].label) is expected
