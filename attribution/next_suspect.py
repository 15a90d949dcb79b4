"""The next suspect after a revert that did not restore health: a pure re-ranking.

A deployed revert whose SLI stays regressed is evidence that the reverted PRs were not (alone) the
cause. Their probability is dropped and the rest renormalised: P(pr | not the reverted ones) =
p / (1 - sum of the reverted ones' p). As in the first ranking, the top suspect is reverted alone
when it clears the action bar, otherwise every remaining PR is; when none remains, the incident
escalates to people.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from attribution.records import Suspect


@dataclass(frozen=True, slots=True)
class NextRound:
    """The suspects left, best first, the PRs to revert next, and why."""

    suspects: tuple[Suspect, ...]
    revert_unit: tuple[int, ...]
    confidence: float
    reason: str


def next_round(
    suspects: Sequence[Suspect], reverted: Collection[int], action_bar: float
) -> NextRound | None:
    """Re-rank `suspects` without the `reverted` PRs; None when no suspect is left."""
    left = [s for s in suspects if s.number not in reverted]
    if not left:
        return None
    spent = sum(s.probability for s in suspects if s.number in reverted)
    scale = 1.0 / (1.0 - spent) if spent < 1.0 else 1.0
    ranked = sorted(
        (Suspect(s.repo, s.number, min(s.probability * scale, 1.0), s.reason) for s in left),
        key=lambda s: -s.probability,
    )
    top = ranked[0]
    gone = ", ".join(f"#{n}" for n in sorted(reverted))
    if top.probability >= action_bar or len(ranked) == 1:
        reason = f"reverting {gone} did not restore health; next suspect #{top.number} " + (
            f"(p={top.probability:.2f})"
        )
        return NextRound(tuple(ranked), (top.number,), top.probability, reason)
    numbers = tuple(sorted(s.number for s in ranked))
    reason = (
        f"reverting {gone} did not restore health; the next suspect p={top.probability:.2f} is "
        f"below the action bar {action_bar:.2f}: reverting the remaining "
        + ", ".join(f"#{n}" for n in numbers)
    )
    return NextRound(tuple(ranked), numbers, top.probability, reason)
