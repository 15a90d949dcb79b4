"""The calibration map: from the ranking's raw top probability to how often such a top suspect
is the culprit.

The likelihood ratios are fitted by maximum likelihood (`bench/attribution/fit.py`), but a product
of ratios from sources that are not quite independent still errs at the extremes: a lone route
hit among twenty PRs is right more often than its raw 0.1 says, and two weak agreeing sources
are not as sure as their product. An isotonic regression of "the top suspect was a culprit" on
the raw top probability, fitted on the training seeds (1, 4 and 5; never the benchmark's seeds
2 and 3), corrects that; it is shipped as `KNOTS` and read with linear interpolation, so it is
monotone and stays in [0, 1] by construction. `rank` maps the top suspect's probability and
scales the others into what is left, never above the top, so the order never changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

Knot = tuple[float, float]

KNOTS: tuple[Knot, ...] = (
    (0.0000, 0.0962), (0.0873, 0.0962), (0.1226, 0.1513), (0.1606, 0.1731), (0.1920, 0.2885),
    (0.2662, 0.3431), (0.3507, 0.4423), (0.4620, 0.4804), (0.5469, 0.5962), (0.5902, 0.6346),
    (0.6820, 0.7157), (0.8150, 0.9038), (0.8965, 0.9408), (0.9456, 0.9570), (0.9749, 0.9702),
    (0.9925, 0.9944), (1.0000, 0.9944),
)  # fmt: skip
"""(raw, calibrated) points of the map, raw ascending; fitted by `fit_isotonic`."""
MIN_BLOCK = 25
"""Fewest incidents behind each step of the fitted map, so that it does not chase noise."""


def calibrated(raw: float, knots: Sequence[Knot] | None = None) -> float:
    """The calibrated probability of a raw one: linear between knots, flat beyond them."""
    knots = KNOTS if knots is None else knots
    raw = min(max(raw, 0.0), 1.0)
    if raw <= knots[0][0]:
        return knots[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(knots):
        if raw <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
    return knots[-1][1]


def rescale(probabilities: Sequence[float], knots: Sequence[Knot] | None = None) -> list[float]:
    """Probabilities best first: the top one calibrated, the others scaled into the rest of the
    mass it leaves, capped at the top one (so the order and the sum's bound hold)."""
    if not probabilities:
        return []
    top = probabilities[0]
    new_top = calibrated(top, knots)
    rest = 1.0 - top
    scale = (1.0 - new_top) / rest if rest > 0 else 0.0
    return [new_top] + [min(p * scale, new_top) for p in probabilities[1:]]


def fit_isotonic(pairs: Sequence[tuple[float, bool]], min_block: int = MIN_BLOCK) -> list[Knot]:
    """Pool-adjacent-violators over (raw probability, was right) sorted by probability, each
    block holding at least `min_block` pairs; one knot per block at its mean raw probability,
    plus the ends (0, first) and (1, last). Monotone non-decreasing by construction, and inside
    (0, 1): a block's rate is shrunk by half an incident toward 1/2."""
    ordered = sorted(pairs)
    blocks: list[list[float]] = []  # [sum raw, sum right, count]
    for start in range(0, len(ordered), min_block):
        chunk = ordered[start : start + min_block]
        if blocks and len(chunk) < min_block:
            blocks[-1] = [a + b for a, b in zip(blocks[-1], _block(chunk), strict=True)]
        else:
            blocks.append(_block(chunk))
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    if not blocks:
        return list(KNOTS)
    # Each level shrunk half an incident toward 1/2 (Jeffreys), so no step says 0 or 1.
    knots = [(b[0] / b[2], (b[1] + 0.5) / (b[2] + 1.0)) for b in blocks]
    return [(0.0, knots[0][1]), *knots, (1.0, knots[-1][1])]


def _block(chunk: Sequence[tuple[float, bool]]) -> list[float]:
    return [sum(p for p, _ in chunk), float(sum(ok for _, ok in chunk)), float(len(chunk))]
