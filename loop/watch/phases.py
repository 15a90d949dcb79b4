"""The Watch lifecycle of a deploy, stored as strings, and the moves allowed between phases.

deployed -> observing -> healthy | inconclusive | regressed
regressed -> rolling_back -> reverted | escalated
reverted -> recovered | escalated | rolling_back (the next suspect, when the revert did not help)

A phase may also move to itself: the Watch stays where it is and is due again later (the next
evaluation, an action's retry, a wait for the revert's deploy). A Watch whose service left the
config ends `inconclusive` from any phase with work left. Final phases move nowhere.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    DEPLOYED = "deployed"
    OBSERVING = "observing"
    HEALTHY = "healthy"
    INCONCLUSIVE = "inconclusive"
    REGRESSED = "regressed"
    ROLLING_BACK = "rolling_back"
    REVERTED = "reverted"
    RECOVERED = "recovered"
    ESCALATED = "escalated"


ACTIVE = (Phase.DEPLOYED, Phase.OBSERVING, Phase.REGRESSED, Phase.ROLLING_BACK)
"""Phases with work left: the scheduler advances these; the others are final for now."""

WAITING = (Phase.REVERTED,)
"""Phases waiting on people and CD (a revert to be merged and deployed, then verified): the
scheduler advances them when due, but for a caller stepping one deploy they are where it rests."""

MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.DEPLOYED: frozenset({Phase.DEPLOYED, Phase.OBSERVING, Phase.INCONCLUSIVE}),
    Phase.OBSERVING: frozenset(
        {Phase.OBSERVING, Phase.HEALTHY, Phase.INCONCLUSIVE, Phase.REGRESSED}
    ),
    Phase.REGRESSED: frozenset({Phase.REGRESSED, Phase.ROLLING_BACK, Phase.INCONCLUSIVE}),
    Phase.ROLLING_BACK: frozenset(
        {Phase.ROLLING_BACK, Phase.REVERTED, Phase.ESCALATED, Phase.INCONCLUSIVE}
    ),
    Phase.REVERTED: frozenset(
        {Phase.REVERTED, Phase.RECOVERED, Phase.ESCALATED, Phase.ROLLING_BACK, Phase.INCONCLUSIVE}
    ),
    Phase.HEALTHY: frozenset(),
    Phase.INCONCLUSIVE: frozenset(),
    Phase.RECOVERED: frozenset(),
    Phase.ESCALATED: frozenset(),
}
"""Where each phase may go next (itself included where the Watch can wait there)."""


def allowed(source: Phase, target: Phase) -> bool:
    """Whether a Watch in `source` may move to `target`."""
    return target in MOVES[source]
