"""The Watch lifecycle of a deploy, stored as strings.

deployed -> observing -> healthy | inconclusive | regressed
regressed -> rolling_back -> reverted | escalated
reverted -> recovered | escalated | rolling_back (the next suspect, when the revert did not help)
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
