"""What the action bar trades, and how much calibration error is noise: the benchmark's sweep.

At each bar: precision among the incidents whose top suspect cleared it (calibrated
probabilities make this about the mean probability of those suspects), the share that fell
back to reverting the whole range, the share that reverted a few top suspects, and the innocent
PRs reverted per incident. The noise floor is the calibration error a perfectly calibrated
ranker would still show with the same confidences and this many incidents: outcomes drawn as
coins with those probabilities, the error averaged over draws. Below it, a lower figure is luck.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

BARS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def sweep(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per bar (as a string key, for JSON): precision above it, range and partial revert shares,
    innocent PRs reverted per incident. Each row holds `by_bar[bar] = (ambiguous, unit)`."""
    out: dict[str, dict[str, float | None]] = {}
    n = len(rows)
    for bar in BARS:
        key = f"{bar:.2f}"
        decided = [(r, *r["by_bar"][key]) for r in rows]
        above = [r for r, ambiguous, _ in decided if not ambiguous]
        hits = sum(r["top"] in r["culprits"] for r in above)
        out[key] = {
            "precision_above_bar": round(hits / len(above), 4) if above else None,
            "share_above_bar": round(len(above) / n, 4),
            "share_range_revert": round(
                sum(a and len(u) == r["prs"] for r, a, u in decided) / n, 4
            ),
            "share_partial_revert": round(
                sum(a and len(u) < r["prs"] for r, a, u in decided) / n, 4
            ),
            "innocent_prs_reverted_per_incident": round(
                sum(len(set(u) - set(r["culprits"])) for r, _, u in decided) / n, 3
            ),
        }
    return out


def noise_floor(
    confidences: Sequence[float],
    ece: Callable[[Sequence[tuple[float, bool]]], float],
    draws: int = 200,
    seed: int = 0,
) -> float:
    """Mean calibration error of outcomes drawn from the confidences themselves."""
    rng = random.Random(seed)
    total = 0.0
    for _ in range(draws):
        total += ece([(p, rng.random() < p) for p in confidences])
    return round(total / draws, 4)


def table(swept: dict[str, dict[str, float | None]]) -> str:
    """The sweep as text, one line per bar."""
    lines = [
        f"{'action bar':>10} {'precision':>9} {'acted':>6} {'range':>6} {'partial':>7} "
        f"{'innocent/incident':>17}"
    ]
    for key, s in swept.items():
        precision = s["precision_above_bar"]
        lines.append(
            f"{key:>10} {'-' if precision is None else f'{precision:.3f}':>9} "
            f"{s['share_above_bar']:>6.2f} {s['share_range_revert']:>6.2f} "
            f"{s['share_partial_revert']:>7.2f} {s['innocent_prs_reverted_per_incident']:>17.3f}"
        )
    return "\n".join(lines)
