"""Verdicts as data: what a detector decided for one SLI and for a whole deploy.

The status values are stored as strings; every result carries the numbers behind it (counts, rates,
the test statistic and its threshold, the effect) so an incident can show why it was called.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OBSERVING = "observing"
    HEALTHY = "healthy"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class SliResult:
    """The assessment of one SLI at one evaluation."""

    sli: str
    status: Status
    reason: str
    baseline_value: float = float("nan")
    watch_value: float = float("nan")
    baseline_bad: float = 0.0
    baseline_total: float = 0.0
    watch_bad: float = 0.0
    watch_total: float = 0.0
    statistic: float = 0.0
    threshold: float = 0.0
    effect: float = float("nan")

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and math.isnan(value):
                out[key] = None
        out["status"] = str(self.status)
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for a deploy at one evaluation; `culprit_sli` names the SLI that decided."""

    status: Status
    reason: str
    results: tuple[SliResult, ...]
    culprit_sli: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "reason": self.reason,
            "culprit_sli": self.culprit_sli,
            "results": [r.to_json() for r in self.results],
        }
