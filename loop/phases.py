"""The Watch lifecycle of a deploy, stored as strings.

deployed -> observing -> healthy | inconclusive | regressed
regressed -> rolling_back -> reverted | escalated
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
    ESCALATED = "escalated"


ACTIVE = (Phase.DEPLOYED, Phase.OBSERVING, Phase.REGRESSED, Phase.ROLLING_BACK)
"""Phases with work left: the scheduler advances these; the others are final for now."""
