"""Feedback: from incidents, outcomes and people's verdicts to culprit labels and reports.

Every incident leaves a label on the PRs it blamed, and later signals correct it, newest last:

- an incident above the action bar blames its top suspect (provisionally);
- `recovered` (the revert restored health) blames the revert unit, `not_recovered` clears it
  (the culprit was elsewhere);
- a person's `confirmed` blames the PR named (the top suspect if none), `wrong_pr` clears the PR
  named, and `false_alarm` clears the incident for good.

Those labels are the culprit shares that `attribution.priors.tally` turns into regression rates,
so a "wrong PR" verdict restores the blamed agent's prior; `report` shows the same per agent,
model, spec or code area, corrections included. Pure: the store hands the rows in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from attribution.delivery import wilson
from attribution.evidence import PrChange
from attribution.priors import DIMENSIONS, History, dimensions_of, tally

KINDS = ("confirmed", "false_alarm", "wrong_pr", "recovered", "not_recovered")
PEOPLE_KINDS = ("confirmed", "false_alarm", "wrong_pr")


@dataclass(frozen=True, slots=True)
class Blame:
    """What an incident blamed at first: ranked suspects, the bar decision and the revert unit."""

    incident_id: str
    repo: str
    suspects: tuple[int, ...]
    ambiguous: bool
    revert_unit: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Signal:
    """One outcome or verdict on an incident, in the order they were recorded."""

    incident_id: str
    kind: str
    pr_number: int | None = None


def culprits(blame: Blame, signals: Iterable[Signal]) -> dict[int, float]:
    """The culprit share of each PR of one incident after every signal on it."""
    top = blame.suspects[0] if blame.suspects else None
    shares: dict[int, float] = {top: 1.0} if (top is not None and not blame.ambiguous) else {}
    for s in signals:
        named = s.pr_number if s.pr_number is not None else top
        if s.kind == "false_alarm":
            return {}
        if s.kind == "confirmed" and named is not None:
            shares = {named: 1.0}
        elif s.kind == "wrong_pr" and named is not None:
            shares.pop(named, None)
        elif s.kind == "recovered" and blame.revert_unit:
            unit = (s.pr_number,) if s.pr_number is not None else blame.revert_unit
            shares = {n: 1.0 / len(unit) for n in unit}
        elif s.kind == "not_recovered":
            for n in (s.pr_number,) if s.pr_number is not None else blame.revert_unit:
                shares.pop(n, None)
    return shares


def culprit_shares(
    blames: Iterable[Blame], signals: Sequence[Signal]
) -> dict[tuple[str, int], float]:
    """Culprit shares keyed by (repo, PR number) over every incident."""
    by_incident: dict[str, list[Signal]] = {}
    for s in signals:
        by_incident.setdefault(s.incident_id, []).append(s)
    out: dict[tuple[str, int], float] = {}
    for blame in blames:
        for number, share in culprits(blame, by_incident.get(blame.incident_id, [])).items():
            key = (blame.repo, number)
            out[key] = min(1.0, out.get(key, 0.0) + share)
    return out


def history(
    deployed: Iterable[PrChange], blames: Iterable[Blame], signals: Sequence[Signal]
) -> History:
    """The priors' history from every deployed PR and every incident's labels."""
    return tally(deployed, culprit_shares(blames, signals))


def report(
    dimension: str,
    deployed: Sequence[PrChange],
    blames: Sequence[Blame],
    signals: Sequence[Signal],
) -> list[dict[str, object]]:
    """One row per value of `dimension`: PRs, incidents blaming them, culprits, corrections, and
    the regression rate (culprits over PRs) with its 95% Wilson interval (`regression_rate_low`,
    `regression_rate_high`; 0 to 1 when no PR was seen)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    values_of: dict[tuple[str, int], tuple[str, ...]] = {
        (c.pr.repo, c.number): dimensions_of(c)[dimension] for c in deployed
    }
    return report_rows(dimension, history(deployed, blames, signals), values_of, blames, signals)


def report_rows(
    dimension: str,
    hist: History,
    values_of: Mapping[tuple[str, int], tuple[str, ...]],
    blames: Sequence[Blame],
    signals: Sequence[Signal],
) -> list[dict[str, object]]:
    """`report`'s rows from a history already tallied (the store counts PRs per value in SQL,
    `attribution.reports`) and the values of the deployed PRs that incidents name."""
    blamed: dict[str, int] = {}
    corrections: dict[str, int] = {}
    by_id = {b.incident_id: b for b in blames}
    for blame in blames:
        if blame.suspects and not blame.ambiguous:
            for v in values_of.get((blame.repo, blame.suspects[0]), ()):
                blamed[v] = blamed.get(v, 0) + 1
    for s in signals:
        b = by_id.get(s.incident_id)
        if b is None or s.kind not in ("wrong_pr", "false_alarm", "not_recovered"):
            continue
        named = s.pr_number if s.pr_number is not None else (b.suspects or (None,))[0]
        for v in values_of.get((b.repo, named), ()) if named is not None else ():
            corrections[v] = corrections.get(v, 0) + 1
    rows = []
    for value, seen in sorted(hist.by.get(dimension, {}).items()):
        rate, _ = hist.rate(dimension, value)
        low, high = wilson(seen.culprits, seen.prs) or (0.0, 1.0)
        rows.append({
            dimension: value,
            "prs": seen.prs,
            "incidents_blamed": blamed.get(value, 0),
            "culprits": round(seen.culprits, 3),
            "corrections": corrections.get(value, 0),
            "regression_rate": round(seen.culprits / seen.prs, 4) if seen.prs else 0.0,
            "regression_rate_low": round(low, 4),
            "regression_rate_high": round(high, 4),
            "interval": "wilson_95",
            "smoothed_rate": round(rate, 4),
            "overall_rate": round(hist.base_rate, 4),
        })  # fmt: skip
        if dimension == "agent":  # `human:x` and `unknown:x` (no marker) are kept apart
            kind, _, rest = value.partition(":")
            rows[-1]["authorship"] = kind if rest and kind in ("human", "unknown") else "agent"
    return rows


def as_signal(row: Mapping[str, object]) -> Signal:
    """A `Signal` from a feedback row as the store returns it."""
    number = row.get("pr_number")
    return Signal(
        str(row["incident_id"]), str(row["kind"]), int(number) if isinstance(number, int) else None
    )
