"""Suspect ranking: a pure function from a change set (and, later, evidence) to ranked suspects.

Without evidence that separates the PRs of a deploy, probability is shared equally, and a deploy
of several PRs falls below the action bar: the incident is ambiguous and the revert unit is the
whole range. A regression is not always caused by code (config, traffic, a dependency), so even a
deploy of one PR gets `CODE_CAUSE_PRIOR`, not certainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attribution.records import MergedPR, Suspect

CODE_CAUSE_PRIOR = 0.9
"""Probability that a regression seen right after a deploy was caused by the deploy's code."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """Suspects best first, whether the top one clears the bar, and the PRs to revert."""

    suspects: tuple[Suspect, ...]
    ambiguous: bool
    confidence: float
    revert_unit: tuple[int, ...]
    reason: str


def rank(prs: Sequence[MergedPR], action_bar: float) -> Ranking:
    """Rank the PRs of a deploy; below `action_bar` the whole range is the revert unit."""
    if not prs:
        return Ranking((), True, 0.0, (), "the deploy range holds no merged PR on record")
    share = CODE_CAUSE_PRIOR / len(prs)
    if len(prs) == 1:
        reason = "the only PR in the deploy"
    else:
        reason = f"one of {len(prs)} PRs in the deploy; no evidence separates them"
    newest_first = sorted(prs, key=lambda p: (p.merged_at, p.number), reverse=True)
    suspects = tuple(Suspect(p.repo, p.number, share, reason) for p in newest_first)
    if share >= action_bar:
        return Ranking(suspects, False, share, (suspects[0].number,), reason)
    return Ranking(
        suspects,
        True,
        share,
        tuple(p.number for p in prs),
        f"top suspect p={share:.2f} is below the action bar {action_bar:.2f}: "
        f"reverting the whole range of {len(prs)} PRs",
    )
