"""The fitted parts of attribution: the calibration map, route specificity and the size prior."""

from __future__ import annotations

import itertools

import pytest

from attribution import calibration
from attribution.calibration import calibrated, fit_isotonic, rescale
from attribution.diffs import FileChange
from attribution.evidence import PrChange
from attribution.priors import History, score_priors
from attribution.signals import specificity
from tests.test_suspects import pr

GRID = [i / 100 for i in range(101)]


@pytest.mark.parametrize(
    "knots",
    [calibration.KNOTS, ((0.0, 0.1), (0.5, 0.5), (1.0, 0.97)), ((0.0, 0.0), (1.0, 1.0))],
)
def test_calibration_map_is_monotone_and_bounded(knots: tuple[tuple[float, float], ...]) -> None:
    """The shipped map and other maps: never decreasing, never outside [0, 1], defined beyond
    the unit interval by clamping."""
    values = [calibrated(p, knots) for p in GRID]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert calibrated(-1.0, knots) == values[0]
    assert calibrated(2.0, knots) == values[-1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.0, 0.1), (0.25, 0.3), (0.5, 0.5), (0.75, 0.735), (1.0, 0.97)],
)
def test_calibration_interpolates_between_knots(raw: float, expected: float) -> None:
    knots = ((0.0, 0.1), (0.5, 0.5), (1.0, 0.97))
    assert calibrated(raw, knots) == pytest.approx(expected)


@pytest.mark.parametrize(
    "probabilities",
    [
        [0.9, 0.05],
        [0.3, 0.3, 0.2, 0.1],
        [0.12, 0.11, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        [1.0, 0.0],
        [0.5],
    ],
)
def test_rescale_keeps_the_order_and_the_mass(probabilities: list[float]) -> None:
    """The top is calibrated, the rest fit in what it leaves and never pass it."""
    knots = ((0.0, 0.2), (0.5, 0.4), (1.0, 0.99))
    out = rescale(probabilities, knots)
    assert out[0] == pytest.approx(calibrated(probabilities[0], knots))
    assert all(a >= b for a, b in itertools.pairwise(out))
    assert sum(out) <= 1.0 + 1e-9


@pytest.mark.parametrize(
    ("pairs", "min_block"),
    [
        ([(i / 100, i % 3 == 0) for i in range(100)], 10),
        ([(0.9, True)] * 30 + [(0.1, False)] * 30 + [(0.5, True)] * 5 + [(0.6, False)] * 5, 5),
        ([(0.2, True), (0.8, False)], 1),
    ],
)
def test_isotonic_fit_is_monotone_bounded_and_covers_the_interval(
    pairs: list[tuple[float, bool]], min_block: int
) -> None:
    """Whatever the data, the fitted knots rise (or stay) and span 0 to 1."""
    knots = fit_isotonic(pairs, min_block)
    xs, ys = [x for x, _ in knots], [y for _, y in knots]
    assert (xs[0], xs[-1]) == (0.0, 1.0)
    assert xs == sorted(xs)
    assert ys == sorted(ys)
    assert all(0.0 <= y <= 1.0 for y in ys)


def test_isotonic_fit_pools_a_violation() -> None:
    """Right at 0.2 and wrong at 0.8: the violation pools into one flat level of 0.5."""
    assert [y for _, y in fit_isotonic([(0.2, True), (0.8, False)], 1)] == [0.5, 0.5, 0.5]


ROUTES = {
    "/pay": ("svc/src/pay/pay_0*.py",),
    "/refund": ("svc/src/pay/pay_1*.py",),
    "/cart": ("svc/src/cart/**",),
}


def _change(number: int, *files: tuple[str, int]) -> PrChange:
    return PrChange(pr(number), tuple(FileChange(p, "modified", n, 0, ((1, n),)) for p, n in files))


@pytest.mark.parametrize(
    ("files", "route", "low", "high"),
    [
        ((("svc/src/pay/pay_01.py", 10),), "/pay", 1.0, 1.0),  # confined to the route
        ((("svc/src/pay/pay_01.py", 10), ("svc/src/cart/c.py", 10)), "/pay", 0.5, 0.5),
        ((("svc/src/pay/pay_01.py", 30), ("svc/src/cart/c.py", 10)), "/pay", 0.5, 0.75),
        (
            (
                ("svc/src/pay/pay_01.py", 10),
                ("svc/src/pay/pay_11.py", 30),
                ("svc/src/cart/c.py", 5),
            ),
            "/pay",
            0.2,
            0.34,
        ),
        ((("svc/src/cart/c.py", 10),), "/pay", 0.0, 0.0),  # does not touch it
        ((("svc/src/lib/l.py", 10),), "/pay", 0.0, 0.0),
    ],
)
def test_route_specificity(
    files: tuple[tuple[str, int], ...], route: str, low: float, high: float
) -> None:
    """A PR confined to the regressed route explains it fully; one spread over several routes
    less so, more when more of its changed lines are in the route; one elsewhere not at all."""
    assert low <= specificity(_change(1, *files), route, ROUTES) <= high


@pytest.mark.parametrize(("small", "large"), [(1, 2), (5, 50), (40, 400)])
def test_size_prior_favours_the_larger_pr_when_nothing_else_is_known(
    small: int, large: int
) -> None:
    """Same agent, no history, no sensitive paths: the larger PR has the larger prior, so with
    nothing else known Rearguard's first suspect is "largest first"'s."""
    changes = [_change(1, ("svc/src/a.py", small)), _change(2, ("svc/src/b.py", large))]
    weights = {s.number: s.ratio for s in score_priors(changes, History())}
    assert weights[2] > weights[1]
