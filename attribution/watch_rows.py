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


WatchRow = Observations | OpenIncident | NextRound | DeployPrs
