"""Peer-style detectors, written from the peers' documented behaviour, and the oracle CUSUM.

Each takes a `Scenario` and returns (status, step index of the decision or None). Their known
failure modes are reproduced on purpose: Flagger counts "no values found" as a failed check;
Argo Rollouts fails a measurement on an empty result and errors on an unreachable Prometheus
(consecutiveErrorLimit 4); Kayenta's Mann-Whitney judge needs 50 points per metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from bench.detection.scenarios import Point, Scenario

Outcome = tuple[str, int | None]
INTERVAL = 2  # steps of 30 s: the peers' 1-minute analysis interval


def _reference(s: Scenario) -> float:
    """The threshold a team would set from the baseline: twice the ratio, 1.2x a gauge's max."""
    if s.kind == "ratio":
        bad = sum(p[0] for p in s.before)
        total = sum(p[1] for p in s.before)
        return 2 * (bad / total if total else s.base_ratio)
    return 1.2 * max(p[0] for p in s.before)


def _measure(s: Scenario, k: int) -> float | None:
    """The interval's value ending at step k; None is 'no values found' (no traffic or a gap)."""
    points = [p for p in s.watch[max(0, k - INTERVAL + 1) : k + 1] if p is not None]
    if s.kind == "gauge":
        return points[-1][0] if points else None
    total = sum(p[1] for p in points)
    return sum(p[0] for p in points) / total if total > 0 else None


def flagger(threshold_checks: int) -> Callable[[Scenario], Outcome]:
    """Every interval, a failed check when the value passes the threshold or is missing."""

    def run(s: Scenario) -> Outcome:
        limit, failed = _reference(s), 0
        for k in range(INTERVAL - 1, len(s.watch), INTERVAL):
            value = None if k in s.outage else _measure(s, k)
            if value is None or value > limit:
                failed += 1
                if failed >= threshold_checks:
                    return "regressed", k
        return "healthy", None

    return run


def argo(failure_limit: int, consecutive_error_limit: int = 4) -> Callable[[Scenario], Outcome]:
    """Measurements every interval: Failed past the threshold or on an empty result (NaN),
    Error when Prometheus is unreachable; aborts past failureLimit or consecutiveErrorLimit."""

    def run(s: Scenario) -> Outcome:
        limit, failed, errors = _reference(s), 0, 0
        for k in range(INTERVAL - 1, len(s.watch), INTERVAL):
            if k in s.outage:
                errors += 1
                if errors > consecutive_error_limit:
                    return "regressed", k
                continue
            errors = 0
            value = _measure(s, k)
            if value is None or value > limit:
                failed += 1
                if failed > failure_limit:
                    return "regressed", k
        return "healthy", None

    return run


def _mann_whitney_p(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value, normal approximation with the tie correction."""
    pooled = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    ranks: list[float] = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for m in range(i, j + 1):
            ranks[m] = (i + j) / 2 + 1
        size = j - i + 1
        ties += size**3 - size
        i = j + 1
    n1, n2 = len(xs), len(ys)
    r1 = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2))


def kayenta(confidence: float = 0.98, min_points: int = 50, effect: float = 1.2) -> Callable[
    [Scenario], Outcome
]:  # fmt: skip
    """Mann-Whitney of per-step values, watch against baseline, at 50 and then every 10 points;
    a failure needs significance and a mean ratio past the effect bound."""

    def values(points: Sequence[Point | None], kind: str) -> list[float]:
        if kind == "gauge":
            return [p[0] for p in points if p is not None]
        return [p[0] / p[1] for p in points if p is not None and p[1] > 0]

    def run(s: Scenario) -> Outcome:
        base = values(s.before, s.kind)
        for k in range(len(s.watch)):
            watch = values(s.watch[: k + 1], s.kind)
            if len(watch) < min_points or len(base) < min_points or (len(watch) - min_points) % 10:
                continue
            mean_b = sum(base) / len(base)
            mean_w = sum(watch) / len(watch)
            big = mean_w > effect * mean_b if mean_b > 0 else mean_w > 0
            if _mann_whitney_p(base, watch) < 1 - confidence and big:
                return "regressed", k
        judged = len(values(s.watch, s.kind)) >= min_points and len(base) >= min_points
        return ("healthy" if judged else "inconclusive"), None

    return run


def oracle_cusum(thresholds: dict[tuple[float, float, float], float]) -> Callable[
    [Scenario], Outcome
]:  # fmt: skip
    """CUSUM of the exact log-likelihood ratio of the true after-rate against the true
    before-rate, its threshold calibrated per (traffic, ratio, effect) to the same false-alarm
    rate: the lower bound on delay."""

    def run(s: Scenario) -> Outcome:
        h = thresholds[(s.traffic, s.base_ratio, s.effect if s.effect > 1 else 2.0)]
        level = 0.0
        for k, point in enumerate(s.watch):
            if point is None or k in s.outage:
                continue
            p0, p1 = s.p0[k], s.p1[k]
            bad, total = point
            level = max(0.0, level + bad * math.log(p1 / p0)
                        + (total - bad) * math.log((1 - p1) / (1 - p0)))  # fmt: skip
            if level >= h:
                return "regressed", k
        return "healthy", None

    return run


def baseline_rate(s: Scenario) -> float:
    """The bad rate of the window before the deploy, with half an event of smoothing so a
    baseline without bad events still gives a usable rate."""
    bad = sum(p[0] for p in s.before)
    total = sum(p[1] for p in s.before)
    return (bad + 0.5) / (total + 1.0)


def two_sample_llr(s: Scenario, effect: float) -> list[float | None]:
    """Per watch step, the log-LR of `effect` times the estimated baseline rate against it
    (None where the step has no data or the source failed)."""
    p0 = min(baseline_rate(s), 0.5)
    p1 = min(p0 * effect, 0.999)
    a, b = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    return [
        None if point is None or k in s.outage else point[0] * a + (point[1] - point[0]) * b
        for k, point in enumerate(s.watch)
    ]


def oracle_two_sample(thresholds: dict[tuple[float, float, float], float]) -> Callable[
    [Scenario], Outcome
]:  # fmt: skip
    """The oracle's CUSUM with the baseline rate estimated from the window before the deploy
    (it still knows the effect size and its calibrated threshold): what a detector that has to
    learn the baseline, as every real one does, could at best achieve."""

    def run(s: Scenario) -> Outcome:
        h = thresholds[(s.traffic, s.base_ratio, s.effect if s.effect > 1 else 2.0)]
        level = 0.0
        for k, value in enumerate(two_sample_llr(s, s.effect if s.effect > 1 else 2.0)):
            if value is None:
                continue
            level = max(0.0, level + value)
            if level >= h:
                return "regressed", k
        return "healthy", None

    return run
