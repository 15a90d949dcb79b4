"""The rows a Watch transition writes with it, as data.

A step of the Watch decides a transition and the facts that belong to it (the evaluation's
observations, the incident it opens, the next revert round, the PRs the deploy carries); the
store writes them in the transition's own transaction, so a transition refused by its
compare-and-set writes none of them. They are data rather than callbacks so that `loop/` never
touches a database connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attribution.records import Incident, RevertRound


@dataclass(frozen=True, slots=True)
class Observations:
    """One evaluation's per-SLI results (`SliResult.to_json()` dicts), kept under the next seq."""

    deploy_id: str
    observed_at: float
    results: Sequence[dict[str, Any]]
    due_at: float | None = None
    """When the evaluation was due (the Watch's `next_due`): `observed_at - due_at` is its lag."""


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """The incident a `regressed` transition opens, with its suspects."""

    incident: Incident


@dataclass(frozen=True, slots=True)
class NextRound:
    """The revert round a Watch starts when the previous round did not restore health."""

    round: RevertRound


@dataclass(frozen=True, slots=True)
class DeployPrs:
    """The PRs a deploy carries, replacing any kept before."""

    deploy_id: str
    repo: str
    numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KeptBaselines:
    """One SLI's baselines as a Watch read them once, to read back after a restart: the step
    plan, the points by label and their spans as JSON-ready data, and when they were read."""

    deploy_id: str
    sli: str
    plan: dict[str, Any]
    baselines: list[Any]
    spans: dict[str, list[float]]
    read_at: float


WatchRow = Observations | OpenIncident | NextRound | DeployPrs | KeptBaselines
