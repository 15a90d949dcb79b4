"""Priors: how likely each PR of a deploy is to be the culprit before any evidence is seen.

From history: the regression rate of the PR's agent, model, spec and code areas so far, each
smoothed toward the overall rate with `PSEUDO_PRS` pseudo-observations, so that one incident
does not condemn an agent and ten clean PRs do not absolve one. From the PR itself: its size
(bigger changes break more, with diminishing returns), sensitive paths (the policy's human gates:
migrations, auth, payments) and CI retries (a PR that needed several attempts to pass). The
result is a relative weight per PR; `attribution.suspects` normalises it.

Culprit labels come from `attribution.feedback.culprits`: outcomes and people's verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from attribution.diffs import area_of, matches, size
from attribution.evidence import PrChange, Score

PSEUDO_PRS = 20.0
"""Weight of the overall rate in each smoothed rate, in PRs."""
DEFAULT_RATE = 0.05
"""Overall regression rate assumed while the store has seen fewer than `PSEUDO_PRS` PRs."""
SIZE_EXPONENT = 0.4
SENSITIVE_FACTOR = 1.5
RETRY_FACTOR = 0.25
MAX_RETRY_FACTOR = 2.0
HISTORY_WEIGHT = 0.6
"""How much of the history's log relative risk a prior takes (fitted: rates are noisy)."""
DIMENSIONS = ("agent", "model", "spec", "area")


@dataclass(frozen=True, slots=True)
class Tally:
    """PRs deployed and how many of them were culprits (fractional when a label is shared)."""

    prs: int = 0
    culprits: float = 0.0


@dataclass(frozen=True, slots=True)
class History:
    """Tallies per dimension value (`agent` -> {"claude-code": Tally}), and overall."""

    overall: Tally = Tally()
    by: Mapping[str, Mapping[str, Tally]] = field(default_factory=dict, hash=False)

    @property
    def base_rate(self) -> float:
        o = self.overall
        return (o.culprits + PSEUDO_PRS * DEFAULT_RATE) / (o.prs + PSEUDO_PRS)

    def rate(self, dimension: str, value: str) -> tuple[float, Tally]:
        """The smoothed regression rate of one dimension value, and its raw tally."""
        tally = self.by.get(dimension, {}).get(value, Tally())
        return (tally.culprits + PSEUDO_PRS * self.base_rate) / (tally.prs + PSEUDO_PRS), tally


def dimensions_of(change: PrChange) -> dict[str, tuple[str, ...]]:
    """The values a PR counts under in each dimension (a PR spans several code areas)."""
    ident = change.pr.identity
    agent = ident.name if ident.is_agent else f"{ident.kind}:{ident.name}"  # unknown != human
    return {
        "agent": (agent,),
        "model": (ident.model,) if ident.model else (),
        "spec": (ident.spec,) if ident.spec else (),
        "area": tuple(sorted({area_of(p) for p in change.paths})),
    }


def tally(changes: Iterable[PrChange], culprit_share: Mapping[tuple[str, int], float]) -> History:
    """History from deployed PRs and the culprit share of each (`attribution.feedback`)."""
    counts: dict[str, dict[str, list[float]]] = {d: {} for d in DIMENSIONS}
    total = [0.0, 0.0]
    for change in changes:
        share = culprit_share.get((change.pr.repo, change.number), 0.0)
        total[0] += 1
        total[1] += share
        for dimension, values in dimensions_of(change).items():
            for value in values:
                cell = counts[dimension].setdefault(value, [0.0, 0.0])
                cell[0] += 1
                cell[1] += share
    by = {d: {v: Tally(int(c[0]), c[1]) for v, c in cells.items()} for d, cells in counts.items()}
    return History(Tally(int(total[0]), total[1]), by)


def _history_factor(change: PrChange, history: History) -> tuple[float, list[str]]:
    """Relative risk from history: the agent's in full, the others' damped (they overlap)."""
    base = history.base_rate
    log_risk, notes = 0.0, []
    for dimension, values in dimensions_of(change).items():
        for value in values[:3]:
            rate, seen = history.rate(dimension, value)
            weight = 1.0 if dimension == "agent" else 0.5 / max(1, len(values))
            log_risk += weight * math.log(rate / base)
            if seen.prs and abs(rate / base - 1) >= 0.25:  # noqa: PLR2004 - worth saying
                notes.append(
                    f"{dimension} {value} regressed {seen.culprits:g} of {seen.prs} PRs "
                    f"({rate:.2f} smoothed vs {base:.2f})"
                )
    return math.exp(HISTORY_WEIGHT * log_risk), notes


def score_priors(
    changes: Sequence[PrChange], history: History, sensitive: Sequence[str] = ()
) -> list[Score]:
    """A relative prior weight per PR, with the reasons that moved it."""
    out = []
    for change in changes:
        factor, notes = _history_factor(change, history)
        lines = size(change.files) if change.files else 10 * max(1, len(change.paths))
        factor *= max(lines, 1) ** SIZE_EXPONENT
        notes.append(f"{lines} changed lines")
        if sensitive and any(matches(p, sensitive) for p in change.paths):
            factor *= SENSITIVE_FACTOR
            notes.append("touches sensitive paths")
        retries = max(change.ci_attempts - 1, 0) + change.ci_failures
        if retries:
            factor *= min(1 + RETRY_FACTOR * retries, MAX_RETRY_FACTOR)
            notes.append(f"CI needed {retries} retry/failure(s)")
        out.append(Score(change.number, factor, "prior: " + "; ".join(notes)))
    return out
