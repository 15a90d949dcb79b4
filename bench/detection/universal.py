"""Universal inference against the conservative null, on the same counts: which is stronger?

`python -m bench.detection.universal` prints, for a few (baseline, watch) count pairs, the
log e-value of a universal-inference two-sample test (numerator: a fixed mixture over the common
rate, log-uniform on [1e-5, 0.5], and over `ALTERNATIVES`; denominator: the maximum likelihood
of baseline and watch together under H0, watch rate at most (1 + tolerance) x baseline rate;
anytime-valid by Ville) beside the statistic Rearguard uses (the mixture log-LR against the
baseline's 99.5% Wilson upper bound x (1 + tolerance)). Counts are Poisson-approximated. The
conservative null came out 0.6 to 2 nats stronger in every case tried, after crediting universal
inference the log(2) it saves by not spending half a percent on the baseline's bound: the
mixture over the baseline rate pays an Occam factor, about log(1 / (sqrt(2 pi) sd density)),
that the Wilson bound does not. README "Detection" quotes this.
"""

from __future__ import annotations

import math

from observer.detect import ALTERNATIVES, wilson_upper

CASES = (
    ("0.5%->2.5%, 10 rps, 2 min (270/54000 vs 22/1200)", 270, 54000, 22, 1200),
    ("0.5%->2.5%, 10 rps, 2 min (270/54000 vs 30/1200)", 270, 54000, 30, 1200),
    ("x2 at 0.5%, 2 rps, 15 min (18/3600 vs 18/1800)", 18, 3600, 18, 1800),
    ("x2 at 0.5%, 20 rps, 5 min (180/36000 vs 60/6000)", 180, 36000, 60, 6000),
    ("x1.5 at 0.1%, 200 rps, 10 min (360/360000 vs 180/120000)", 360, 360000, 180, 120000),
)


def _log_poisson(k: float, mean: float) -> float:
    return k * math.log(mean) - mean - math.lgamma(k + 1)


def _log_mean_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def universal(b_bad: float, b_total: float, w_bad: float, w_total: float, c: float) -> float:
    """log e-value: fixed mixture over (rate, alternative) over the H0 maximum likelihood."""
    grid = [1e-5 * (0.5 / 1e-5) ** (i / 4000) for i in range(4001)]
    numerator = _log_mean_exp(
        [
            _log_mean_exp(
                [
                    _log_poisson(b_bad, b_total * r) + _log_poisson(w_bad, w_total * m * c * r)
                    for r in grid
                ]
            )
            for m in ALTERNATIVES
        ]
    )
    denominator = max(
        _log_poisson(b_bad, b_total * r)
        + _log_poisson(w_bad, w_total * min(w_bad / w_total, c * r))
        for r in grid
    )
    return numerator - denominator


def conservative(b_bad: float, b_total: float, w_bad: float, w_total: float, c: float) -> float:
    """Rearguard's from-deploy statistic: the mixture log-LR against the Wilson bound x c."""
    p0 = wilson_upper(b_bad, b_total) * c
    return _log_mean_exp([w_bad * math.log(m) - w_total * p0 * (m - 1) for m in ALTERNATIVES])


def main() -> None:
    for label, b_bad, b_total, w_bad, w_total in CASES:
        ui = universal(b_bad, b_total, w_bad, w_total, 1.1)
        fixed = conservative(b_bad, b_total, w_bad, w_total, 1.1)
        print(f"{label}: universal {ui:.2f}, conservative null {fixed:.2f}")


if __name__ == "__main__":
    main()
