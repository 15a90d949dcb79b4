"""The pure detectors (`observer.detect`) and SLI definitions (`observer.slis`), driven by tables.

Ratio watches are replayed the way a Watch runs them: cumulative counts, evaluated once per step,
complete only at the last step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from observer.detect import (
    ALTERNATIVES,
    DetectorSettings,
    assess_gauge,
    assess_ratio,
    decide,
    mixture_log_lr,
    wilson_upper,
)
from observer.slis import Direction, Sli, SliError, SliKind
from observer.verdict import SliResult, Status

ERRORS = Sli(
    "errors", SliKind.RATIO, bad="sum(increase(e[$step]))", total="sum(increase(r[$step]))"
)
MEMORY = Sli("memory", SliKind.GAUGE, query="sum(rss)", critical=False)

STEPS = 20
PER_STEP = 600


def replay(
    sli: Sli,
    baseline: tuple[float, float],
    steps: Sequence[tuple[float, float]],
    settings: DetectorSettings | None = None,
) -> list[SliResult]:
    """Evaluate a watch at every step over cumulative (bad, total) counts, as the Watch does."""
    results = []
    bad = total = 0.0
    for index, (step_bad, step_total) in enumerate(steps):
        bad, total = bad + step_bad, total + step_total
        complete = index == len(steps) - 1
        if settings is None:
            results.append(assess_ratio(sli, baseline, (bad, total), complete))
        else:
            results.append(assess_ratio(sli, baseline, (bad, total), complete, settings))
    return results


def statuses(results: Sequence[SliResult]) -> set[Status]:
    return {r.status for r in results}


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw by geometric gaps between successes: about n*p draws, not n."""
    count, position = 0, 0
    log_q = math.log1p(-p)
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return count
        count += 1


# -- wilson_upper and mixture_log_lr -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "total", "low", "high"),
    [
        (0, 0, 1.0, 1.0),
        (0, -5, 1.0, 1.0),
        (0, 1000, 0.0055, 0.0075),
        (5, 1000, 0.005, 0.015),
        (50, 10_000, 0.0065, 0.0072),
        (1000, 1000, 0.99, 1.0),
    ],
)
def test_wilson_upper_bounds_the_rate_from_above(
    bad: float, total: float, low: float, high: float
) -> None:
    """The upper bound lies at or above the observed rate and is 1 without data."""
    upper = wilson_upper(bad, total)
    assert low <= upper <= high
    if total > 0:
        assert upper >= bad / total


def test_wilson_upper_tightens_with_more_data() -> None:
    """The same rate over more events gives a lower upper bound."""
    bounds = [wilson_upper(n / 100, n) for n in (100, 1_000, 10_000, 100_000)]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[-1] < 0.011


@pytest.mark.parametrize(
    ("bad", "total", "p_null", "sign"),
    [
        (50, 1000, 0.01, 1),  # five times the null rate: evidence for a regression
        (0, 1000, 0.01, -1),  # no errors at all: evidence against
        (5, 1000, 0.01, -1),  # half the null rate: evidence against
        (10, 10, 0.999, 0),  # no alternative above a null of 0.999: no evidence either way
        (0, 0, 0.01, 0),  # no events: no evidence
    ],
)
def test_mixture_log_lr_points_the_way_of_the_evidence(
    bad: float, total: float, p_null: float, sign: int
) -> None:
    """The log-likelihood ratio is positive above the null rate, negative below, 0 without data."""
    value = mixture_log_lr(bad, total, p_null)
    assert (value > 0) - (value < 0) == sign


@pytest.mark.parametrize(("bad", "total", "p_null"), [(5, 50, 0.02), (0, 40, 0.05), (3, 3, 0.2)])
def test_mixture_log_lr_is_the_log_of_the_mean_likelihood_ratio(
    bad: int, total: int, p_null: float
) -> None:
    """The statistic averages the binomial likelihood ratios of the alternatives (not their max)."""
    ratios = [
        (q**bad * (1 - q) ** (total - bad)) / (p_null**bad * (1 - p_null) ** (total - bad))
        for q in (min(p_null * m, 0.999) for m in ALTERNATIVES)
    ]
    expected = math.log(sum(ratios) / len(ratios))
    assert mixture_log_lr(bad, total, p_null) == pytest.approx(expected, rel=1e-9)


# -- assess_ratio --------------------------------------------------------------------------------


def test_clear_regression_is_called_within_two_steps() -> None:
    """0.5% errors before and 5% after, at 600 events a step, is REGRESSED almost at once."""
    baseline = (0.005 * STEPS * PER_STEP, STEPS * PER_STEP)
    results = replay(ERRORS, baseline, [(0.05 * PER_STEP, PER_STEP)] * STEPS)
    first = next(i for i, r in enumerate(results) if r.status is Status.REGRESSED)
    called = results[first]
    assert first <= 1
    assert (
        called.statistic
        >= called.threshold
        == pytest.approx(math.log(1 / DetectorSettings().alpha))
    )
    assert called.effect == pytest.approx(9.0)
    assert "log-LR" in called.reason


def test_identical_rates_observe_then_end_healthy() -> None:
    """The same error rate before and after stays OBSERVING, then HEALTHY when the window ends."""
    baseline = (0.01 * STEPS * PER_STEP, STEPS * PER_STEP)
    results = replay(ERRORS, baseline, [(0.01 * PER_STEP, PER_STEP)] * STEPS)
    assert statuses(results[:-1]) == {Status.OBSERVING}
    assert results[-1].status is Status.HEALTHY
    assert results[-1].statistic < results[-1].threshold


@pytest.mark.parametrize("watch_rate", [0.0, 0.01, 0.5, 1.0])
def test_thin_baseline_is_never_regressed(watch_rate: float) -> None:
    """Below `min_events` of baseline the SLI is OBSERVING, then INCONCLUSIVE, whatever follows."""
    results = replay(ERRORS, (0, ERRORS.min_events - 1), [(watch_rate * 100, 100)] * STEPS)
    assert statuses(results[:-1]) == {Status.OBSERVING}
    assert results[-1].status is Status.INCONCLUSIVE
    assert "below min_events" in results[-1].reason


@pytest.mark.parametrize(
    ("complete", "expected"), [(False, Status.OBSERVING), (True, Status.INCONCLUSIVE)]
)
def test_too_little_watch_traffic_ends_inconclusive(complete: bool, expected: Status) -> None:
    """A quiet watch window is not judged healthy: it is INCONCLUSIVE at the end."""
    result = assess_ratio(ERRORS, (10, 10_000), (0, ERRORS.min_events - 1), complete)
    assert result.status is expected
    if complete:
        assert "too little traffic" in result.reason


def test_no_watch_events_give_no_statistic() -> None:
    """With no events after the deploy there is no evidence and no rate."""
    result = assess_ratio(ERRORS, (10, 10_000), (0, 0), complete=False)
    assert result.status is Status.OBSERVING
    assert result.statistic == 0.0
    assert math.isnan(result.watch_value)


@pytest.mark.parametrize(
    "watch",
    [
        pytest.param([(1, 3)], id="one-bad-of-three"),
        pytest.param([(1, 3)] + [(0, 3)] * 119, id="one-bad-then-clean-for-30m"),
        pytest.param([(0, 3)] * 60 + [(1, 3)] + [(0, 3)] * 59, id="one-bad-mid-window"),
        pytest.param([(1, 3), (1, 3), (0, 3)], id="two-bad-in-nine"),
    ],
)
def test_single_errors_at_low_traffic_are_never_regressed(watch: list[tuple[int, int]]) -> None:
    """At 0.2 req/s (3 events a step) after a clean baseline, one or two errors never regress."""
    results = replay(ERRORS, (0, 1000), watch)
    assert Status.REGRESSED not in statuses(results)


@pytest.mark.parametrize(
    ("tolerance", "before", "after"),
    [
        (0.1, 0.01, 0.0105),  # +5%
        (0.1, 0.01, 0.0109),  # +9%
        (0.1, 0.05, 0.054),  # +8%
        (0.5, 0.01, 0.014),  # +40%, inside a 50% tolerance
        (1.0, 0.02, 0.038),  # +90%, inside a 100% tolerance
    ],
)
def test_change_inside_the_tolerance_is_not_regressed(
    tolerance: float, before: float, after: float
) -> None:
    """A worsening smaller than `tolerance` is not a regression, however much traffic there is."""
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", tolerance=tolerance)
    events = 100_000
    results = replay(sli, (before * 1_000_000, 1_000_000), [(after * events, events)] * STEPS)
    assert Status.REGRESSED not in statuses(results)
    assert results[-1].status is Status.HEALTHY


def test_change_beyond_the_tolerance_is_regressed() -> None:
    """A 30% worsening, past a 10% tolerance, is called once the traffic makes it decisive."""
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", tolerance=0.1)
    events = 100_000
    results = replay(sli, (10_000, 1_000_000), [(0.013 * events, events)] * STEPS)
    assert Status.REGRESSED in statuses(results)


@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clean_watches_are_rarely_called_regressed(alpha: float) -> None:
    """Evaluating at every step keeps the false-alarm share of clean watches under alpha."""
    rng = random.Random(20250303)
    settings = DetectorSettings(alpha=alpha)
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", tolerance=0.0)
    watches, fired = 2000, 0
    for _ in range(watches):
        base_bad = sum(binomial(rng, PER_STEP, 0.01) for _ in range(STEPS))
        steps = [(binomial(rng, PER_STEP, 0.01), PER_STEP) for _ in range(STEPS)]
        results = replay(sli, (base_bad, STEPS * PER_STEP), steps, settings)
        fired += Status.REGRESSED in statuses(results)
    assert fired / watches <= alpha


def test_mixture_crosses_its_threshold_at_most_alpha_of_the_time_under_the_null() -> None:
    """At the exact null rate the running log-LR reaches log(1/alpha) in at most alpha of runs."""
    rng = random.Random(99)
    alpha, p_null, runs, crossed = 0.05, 0.01, 2000, 0
    for _ in range(runs):
        bad = total = 0
        for _ in range(STEPS):
            bad, total = bad + binomial(rng, PER_STEP, p_null), total + PER_STEP
            if mixture_log_lr(bad, total, p_null) >= math.log(1 / alpha):
                crossed += 1
                break
    assert crossed / runs <= alpha


# -- assess_gauge --------------------------------------------------------------------------------


def gauge_replay(sli: Sli, baseline: Sequence[float], watch: Sequence[float]) -> list[SliResult]:
    """Evaluate a gauge watch at every step over the points so far."""
    return [
        assess_gauge(sli, baseline, watch[: i + 1], complete=i == len(watch) - 1)
        for i in range(len(watch))
    ]


def noisy(rng: random.Random, level: float, spread: float, points: int) -> list[float]:
    return [level * (1 + rng.gauss(0, spread)) for _ in range(points)]


def test_memory_growing_after_a_deploy_is_regressed() -> None:
    """Memory climbing 2% a minute after the deploy is called once it clears the tolerance band."""
    rng = random.Random(1)
    baseline = noisy(rng, 500e6, 0.005, 120)
    watch = [500e6 * 1.02 ** (i / 4) * (1 + rng.gauss(0, 0.005)) for i in range(1, 121)]
    results = gauge_replay(MEMORY, baseline, watch)
    first = next(i for i, r in enumerate(results) if r.status is Status.REGRESSED)
    assert 4 * 4 <= first <= 4 * 8  # between 4 and 8 minutes in: 10% tolerance at 2%/min
    assert results[first].statistic > results[first].threshold == 1.0
    assert results[first].effect > 0.1


def test_flat_noisy_memory_is_not_regressed() -> None:
    """Memory that only wobbles around its baseline level stays OBSERVING and ends HEALTHY."""
    rng = random.Random(2)
    results = gauge_replay(MEMORY, noisy(rng, 500e6, 0.02, 120), noisy(rng, 500e6, 0.02, 120))
    assert statuses(results[:-1]) == {Status.OBSERVING}
    assert results[-1].status is Status.HEALTHY


@pytest.mark.parametrize(
    ("direction", "after", "expected"),
    [
        (Direction.DOWN, 600.0, Status.REGRESSED),  # throughput fell 40%: worse
        (Direction.DOWN, 1400.0, Status.HEALTHY),  # throughput rose: better
        (Direction.UP, 600.0, Status.HEALTHY),  # a fall where up is worse: fine
        (Direction.UP, 1400.0, Status.REGRESSED),
    ],
)
def test_gauge_direction_says_which_way_is_worse(
    direction: Direction, after: float, expected: Status
) -> None:
    """`direction = down` calls a drop, and ignores a rise; `up` the other way round."""
    rng = random.Random(3)
    sli = Sli("throughput", SliKind.GAUGE, query="q", direction=direction)
    result = assess_gauge(sli, noisy(rng, 1000, 0.01, 60), noisy(rng, after, 0.01, 10), True)
    assert result.status is expected


@pytest.mark.parametrize(
    ("baseline", "watch", "complete", "expected"),
    [
        ([1.0, 1.0], [5.0, 5.0, 5.0], False, Status.OBSERVING),  # thin baseline
        ([1.0, 1.0], [5.0, 5.0, 5.0], True, Status.INCONCLUSIVE),
        ([1.0, 1.0, 1.0], [5.0, 5.0], False, Status.OBSERVING),  # too few watch points yet
        ([1.0, 1.0, 1.0], [5.0, 5.0], True, Status.INCONCLUSIVE),
        ([1.0, math.nan, 1.0, math.inf], [5.0, 5.0, 5.0], False, Status.OBSERVING),  # 2 finite
        ([1.0, 1.0, 1.0], [math.nan, 5.0, 5.0, 5.0, 5.0], False, Status.REGRESSED),
    ],
)
def test_gauge_without_enough_points_is_not_judged(
    baseline: list[float], watch: list[float], complete: bool, expected: Status
) -> None:
    """Fewer than `gauge_points` finite points on either side: OBSERVING, then INCONCLUSIVE."""
    assert assess_gauge(MEMORY, baseline, watch, complete).status is expected


@pytest.mark.parametrize(
    ("watch", "expected"),
    [
        pytest.param([40.0, 1.0, 38.0, 40.0, 1.0, 39.0], Status.HEALTHY, id="spikes"),
        pytest.param([1.0, 1.0, 40.0, 40.0, 40.0, 1.0], Status.HEALTHY, id="three-then-back"),
        pytest.param([1.0, 1.0, 40.0, 40.0, 40.0, 40.0], Status.REGRESSED, id="four-high-persist"),
    ],
)
def test_gauge_regression_must_persist(watch: list[float], expected: Status) -> None:
    """A gauge is regressed only when its last `gauge_persist` points all lie past the band."""
    baseline = [1.0, 1.1, 0.9, 1.0, 1.2, 0.8] * 4
    assert DetectorSettings().gauge_persist == 4
    results = gauge_replay(MEMORY, baseline, watch)
    final = Status.REGRESSED if Status.REGRESSED in statuses(results) else results[-1].status
    assert final is expected


# -- decide --------------------------------------------------------------------------------------

SLIS = (
    ERRORS,
    Sli("latency", SliKind.RATIO, bad="b", total="t", critical=False),
    MEMORY,
)
H, O, R, I = Status.HEALTHY, Status.OBSERVING, Status.REGRESSED, Status.INCONCLUSIVE  # noqa: E741


@pytest.mark.parametrize(
    ("given", "complete", "expected", "culprit"),
    [
        pytest.param((R, O, O), False, R, "errors", id="critical-regressed-decides"),
        pytest.param((R, R, O), False, R, "errors", id="critical-named-before-others"),
        pytest.param((O, R, O), False, O, None, id="one-non-critical-alone-waits"),
        pytest.param((O, R, R), False, R, "latency", id="two-non-critical-decide"),
        pytest.param((H, R, H), True, H, None, id="one-non-critical-alone-at-end"),
        pytest.param((H, H, H), True, H, None, id="all-healthy-at-end"),
        pytest.param((I, H, H), True, I, None, id="critical-inconclusive-at-end"),
        pytest.param((O, H, H), True, I, None, id="critical-still-observing-at-end"),
        pytest.param((H, I, I), True, H, None, id="non-critical-inconclusive-at-end"),
        pytest.param((O, O, O), False, O, None, id="all-observing"),
    ],
)
def test_decide_combines_sli_results(
    given: tuple[Status, Status, Status],
    complete: bool,
    expected: Status,
    culprit: str | None,
) -> None:
    """A critical SLI or two others regressed decide; healthy needs every critical SLI healthy."""
    results = [
        SliResult(sli=name, status=status, reason=f"{name} is {status}")
        for name, status in zip(("errors", "latency", "memory"), given, strict=True)
    ]
    verdict = decide(SLIS, results, complete)
    assert verdict.status is expected
    assert verdict.culprit_sli == culprit
    assert verdict.results == tuple(results)
    if expected is Status.INCONCLUSIVE:
        assert "errors:" in verdict.reason


def test_decide_without_results_is_inconclusive_at_the_end() -> None:
    """No SLI results at the end of the window is INCONCLUSIVE, never HEALTHY."""
    verdict = decide(SLIS, [], complete=True)
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.reason == "no SLI results"


# -- Sli -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Sli("", SliKind.RATIO, bad="b", total="t"), "needs a name"),
        (lambda: Sli("e", SliKind.RATIO, total="t"), "`bad` and `total`"),
        (lambda: Sli("e", SliKind.RATIO, bad="b"), "`bad` and `total`"),
        (lambda: Sli("m", SliKind.GAUGE), "needs `query`"),
        (lambda: Sli("m", SliKind.GAUGE, bad="b", total="t"), "needs `query`"),
        (lambda: Sli("e", SliKind.RATIO, bad="b", total="t", tolerance=-0.1), "tolerance"),
        (lambda: Sli("e", SliKind.RATIO, bad="b", total="t", min_events=-1), "min_events"),
    ],
)
def test_unusable_sli_definitions_are_refused(make: Callable[[], Sli], message: str) -> None:
    """An SLI missing its queries or with a negative bar raises `SliError` naming the field."""
    with pytest.raises(SliError, match=message):
        make()


@pytest.mark.parametrize(
    ("sli", "step", "expected"),
    [
        (ERRORS, 15.0, {"bad": "sum(increase(e[15s]))", "total": "sum(increase(r[15s]))"}),
        (ERRORS, 60, {"bad": "sum(increase(e[60s]))", "total": "sum(increase(r[60s]))"}),
        (
            Sli("m", SliKind.GAUGE, query="max_over_time(rss[$step]) / avg(rss[$step])"),
            30.0,
            {"value": "max_over_time(rss[30s]) / avg(rss[30s])"},
        ),
        (MEMORY, 15.0, {"value": "sum(rss)"}),
    ],
)
def test_queries_substitute_the_step(sli: Sli, step: float, expected: dict[str, str]) -> None:
    """`$step` in every query becomes the step as a PromQL duration."""
    assert sli.queries(step) == expected


def test_a_handful_of_errors_below_min_events_is_not_a_regression() -> None:
    """Four failed requests out of four, after a clean baseline, wait for `min_events` traffic."""
    sli = Sli(name="errors", kind=SliKind.RATIO, bad="b", total="t", min_events=100)
    early = assess_ratio(sli, (0.0, 1000.0), (4.0, 4.0), complete=False)
    assert early.status is Status.OBSERVING
    assert early.statistic >= early.threshold  # the evidence alone would have called it
    later = assess_ratio(sli, (0.0, 1000.0), (40.0, 100.0), complete=False)
    assert later.status is Status.REGRESSED
