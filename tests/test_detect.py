"""The pure detectors (`observer.detect`) and SLI definitions (`observer.slis`), driven by tables.

The ratio test itself is the Watch's step-wise test, in tests/test_sequential.py.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from observer.detect import DetectorSettings, assess_gauge, decide, wilson_upper
from observer.slis import Direction, Sli, SliError, SliKind
from observer.verdict import SliResult, Status

ERRORS = Sli(
    "errors", SliKind.RATIO, bad="sum(increase(e[$step]))", total="sum(increase(r[$step]))"
)
MEMORY = Sli("memory", SliKind.GAUGE, query="sum(rss)", critical=False)


def statuses(results: Sequence[SliResult]) -> set[Status]:
    return {r.status for r in results}


# -- wilson_upper --------------------------------------------------------------------------------


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
