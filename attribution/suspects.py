"""Suspect ranking: a pure function from a change set, evidence and history to probabilities.

Each PR starts from its prior (`attribution.priors`: history, size, sensitive paths, CI retries),
normalised so that the deploy's code as a whole carries `CODE_CAUSE_PRIOR` (a regression is not
always code: config, traffic and dependencies break things too, so even a deploy of one PR is not
certain). Each evidence source multiplies a PR's weight by its likelihood ratio (`frames`,
`signals`); the weights are normalised against that "not the code" remainder, and the top
probability goes through the calibration map (`attribution.calibration`). The ratios and the map
were fitted on the benchmark's training seeds 1, 4 and 5 (`bench/attribution/fit.py`); `make
bench-attribution` measures them on seeds never fitted on.

At or above the action bar, the top suspect alone is reverted. Below it the incident is
ambiguous and the revert unit is the fewest top suspects that together hold `SET_SHARE` of the
code's probability (two PRs that both changed the frame's file) when they are at most half the
range; otherwise the whole range.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from attribution.blame import at_head
from attribution.calibration import rescale
from attribution.evidence import Evidence, PrChange, Score
from attribution.frames import line_record, score_frames
from attribution.line_records import LineRecord
from attribution.priors import History, score_priors
from attribution.records import MergedPR, Suspect
from attribution.signals import score_alerts, score_routes

CODE_CAUSE_PRIOR = 0.99
"""Probability that a regression seen right after a deploy was caused by the deploy's code."""
SET_SHARE = 0.8
"""Share of the code's probability an ambiguous revert unit must hold to be less than the range."""
LR_REVERTED = 1e-4
"""Likelihood ratio of a PR whose revert did not restore health (re-ranking after a revert): a
failed revert outweighs the strongest single piece of evidence (`frames.LR_LINE`), since the
frame may have been in innocent code but the revert was the experiment."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """Suspects best first, whether the top one clears the bar, and the PRs to revert."""

    suspects: tuple[Suspect, ...]
    ambiguous: bool
    confidence: float
    revert_unit: tuple[int, ...]
    reason: str
    line_record: LineRecord | None = None
    """Who wrote the line the top suspect's frame points at, where the repository records it."""


def _weights(
    changes: Sequence[PrChange],
    heads: Sequence[PrChange],
    evidence: Evidence,
    history: History,
    sensitive: Sequence[str],
) -> tuple[dict[int, float], dict[int, list[str]]]:
    priors = score_priors(changes, history, sensitive)
    total = sum(s.ratio for s in priors) or 1.0
    weights = {s.number: CODE_CAUSE_PRIOR * s.ratio / total for s in priors}
    reasons: dict[int, list[str]] = {c.number: [] for c in changes}
    sources: list[list[Score]] = [
        score_frames(evidence.errors, heads),
        score_routes(evidence.routes, evidence.route_label, evidence.route_globs, changes),
        score_alerts(evidence.alerts, evidence.route_globs, changes),
    ]
    for scores in sources:
        for s in scores:
            weights[s.number] *= s.ratio
            reasons[s.number].append(s.reason)
    for s in priors:
        reasons[s.number].append(s.reason)
    return weights, reasons


def rank(
    prs: Sequence[MergedPR],
    action_bar: float,
    *,
    changes: Sequence[PrChange] | None = None,
    evidence: Evidence | None = None,
    history: History | None = None,
    sensitive: Sequence[str] = (),
    reverted: Collection[int] = (),
) -> Ranking:
    """Rank the PRs of a deploy; below `action_bar` the revert unit widens (see the module).

    `changes` carries files with line ranges and CI history (else only `prs`' paths are known);
    `reverted` names PRs already reverted without restoring health: they are penalised, so the
    same call re-ranks to the next suspect after a revert that did not help.
    """
    changes = list(changes) if changes is not None else [PrChange(p) for p in prs]
    if not changes:
        return Ranking((), True, 0.0, (), "the deploy range holds no merged PR on record")
    evidence = evidence or Evidence()
    heads = at_head(changes)
    weights, reasons = _weights(changes, heads, evidence, history or History(), sensitive)
    for number in reverted:
        if number in weights:
            weights[number] *= LR_REVERTED
            reasons[number].insert(0, "its revert did not restore health")
    norm = sum(weights.values()) + (1.0 - CODE_CAUSE_PRIOR)
    order = sorted(
        changes, key=lambda c: (weights[c.number], c.pr.merged_at, c.number), reverse=True
    )
    probabilities = rescale([weights[c.number] / norm for c in order])
    suspects = tuple(
        Suspect(c.pr.repo, c.number, p, _reason(c, len(changes), reasons))
        for c, p in zip(order, probabilities, strict=True)
    )
    top = suspects[0]
    written = line_record(evidence.errors, next(h for h in heads if h.number == top.number))
    if top.probability >= action_bar:
        return Ranking(
            suspects, False, top.probability, (top.number,),
            f"#{top.number} p={top.probability:.2f} clears the action bar {action_bar:.2f}: "
            f"{top.reason}", written,
        )  # fmt: skip
    ambiguous = _ambiguous(suspects, [c.number for c in changes], action_bar)
    return replace(ambiguous, line_record=written)


def _reason(change: PrChange, count: int, reasons: dict[int, list[str]]) -> str:
    said = reasons[change.number]
    if count == 1:
        said = ["the only PR in the deploy", *said]
    elif len(said) <= 1:
        said = [f"one of {count} PRs in the deploy; no evidence separates them", *said]
    return "; ".join(said)


def _ambiguous(suspects: tuple[Suspect, ...], in_range: list[int], action_bar: float) -> Ranking:
    top = suspects[0]
    code = sum(s.probability for s in suspects) or 1.0
    held, unit = 0.0, []
    for s in suspects:
        unit.append(s.number)
        held += s.probability
        if held >= SET_SHARE * code:
            break
    below = (
        f"top suspect #{top.number} p={top.probability:.2f} "
        f"is below the action bar {action_bar:.2f}"
    )
    if held >= SET_SHARE * code and 2 * len(unit) <= len(in_range):
        named = ", ".join(f"#{n}" for n in unit)
        reason = f"{below}: reverting {named}, which together hold p={held:.2f}"
        return Ranking(suspects, True, top.probability, tuple(sorted(unit)), reason)
    reason = f"{below}: reverting the whole range of {len(in_range)} PRs"
    return Ranking(suspects, True, top.probability, tuple(in_range), reason)
