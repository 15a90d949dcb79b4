"""Verdicts as data: what a detector decided for one SLI and for a whole deploy.

The status values are stored as strings; every result carries the numbers behind it (counts, rates,
the test statistic and its threshold, the effect) so an incident can show why it was called.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
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
    null_value: float = float("nan")
    """The rate (ratio SLIs) or level (gauges) beyond which the watch counts as worse."""
    onset: float = float("nan")
    """Seconds after the deploy where the excursion behind the statistic began."""
    mode: str = "before_after"
    """`before_after` (baselines before the deploy, a day and a week earlier) or `canary`."""
    warning: str = ""
    """An early warning's reason (`observer.early_warning.WarningReason`), empty when none."""
    warning_detail: str = ""
    failure: str = ""
    """Why the SLI's queries gave nothing to judge: `query_rejected` (a PromQL error),
    `source_unavailable` (the source unreachable or failing) or `no_series` (the queries match
    nothing, before the deploy or after); empty when they answered."""
    queries: dict[str, str] = field(default_factory=dict)
    windows: dict[str, list[float]] = field(default_factory=dict)
    """Named [start, end] Unix-second windows that were queried: `watch`, `before`, `1d`, ..."""
    step: float = float("nan")
    """Seconds per step this SLI was judged at: the configured step, or widened to fit the data."""
    scrape_interval: float = float("nan")
    """Seconds between the samples of the SLI's series (learnt or configured); NaN if unknown."""

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and math.isnan(value):
                out[key] = None
        out["status"] = str(self.status)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SliResult:
        """The result kept by `to_json` (None back to NaN; unknown keys ignored)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if value is None and f.type == "float":
                value = math.nan
            values[f.name] = value
        values["status"] = Status(values.get("status", Status.INCONCLUSIVE))
        values.setdefault("sli", "")
        values.setdefault("reason", "")
        return cls(**values)


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
