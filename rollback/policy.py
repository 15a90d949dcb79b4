"""Policy gates, as a pure function: what Rearguard may do about an attributed regression.

`observe`: detect and notify only. `propose`: open the revert PR, never merge. `act`: also ask
for auto-merge. A revert touching a path that matches `human_gates` (migrations, schema, auth,
payments, dependency manifests, …) is labelled `needs-human` and never auto-merged, whatever the
mode. Rearguard never pushes to the default branch and never deploys: the revert goes through the
repository's own CI and CD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase


class Mode(StrEnum):
    OBSERVE = "observe"
    PROPOSE = "propose"
    ACT = "act"


DEFAULT_HUMAN_GATES = (
    "**/migrations/**", "migrations/**", "**/schema*", "**/*.sql", "**/auth/**", "auth/**",
    "**/payments/**", "payments/**", "**/*delete*",
    # Manifests at any depth (`**/` also matches at the root): monorepos nest them.
    "**/package.json", "**/package-lock.json", "**/pyproject.toml", "**/requirements*.txt",
    "**/poetry.lock", "**/go.mod", "**/go.sum", "**/Cargo.toml", "**/Cargo.lock", "**/Gemfile",
    "**/Gemfile.lock",
)  # fmt: skip

BASE_LABELS = ("revert", "rearguard", "critical")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do: open a revert (with these labels), request auto-merge, and why."""

    open_revert: bool
    auto_merge: bool
    needs_human: bool
    labels: tuple[str, ...]
    reasons: tuple[str, ...]


def gated_paths(paths: Sequence[str], gates: Sequence[str]) -> tuple[str, ...]:
    """The paths that match a human gate (glob patterns; `**/` also matches at the root)."""
    hits = []
    for path in paths:
        for gate in gates:
            if fnmatchcase(path, gate) or (gate.startswith("**/") and fnmatchcase(path, gate[3:])):
                hits.append(path)
                break
    return tuple(hits)


def plan(
    mode: Mode, revert_unit: Sequence[int], paths: Sequence[str], gates: Sequence[str]
) -> Plan:
    """Decide the actions for an incident whose revert unit touches `paths`."""
    if mode is Mode.OBSERVE:
        return Plan(False, False, False, (), ("observe mode: notify only",))
    if not revert_unit:
        return Plan(False, False, False, (), ("no PR on record to revert: escalate to people",))
    gated = gated_paths(paths, gates)
    if gated:
        shown = ", ".join(gated[:5]) + (" …" if len(gated) > 5 else "")  # noqa: PLR2004
        return Plan(
            True,
            False,
            True,
            (*BASE_LABELS, "needs-human"),
            (f"touches human-gated paths ({shown}): a person must merge it",),
        )
    if mode is Mode.ACT:
        return Plan(True, True, False, BASE_LABELS, ("act mode: auto-merge requested",))
    return Plan(True, False, False, BASE_LABELS, ("propose mode: a person merges the revert",))
