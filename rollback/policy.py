"""Policy gates, as a pure function: what Rearguard may do about an attributed regression.

`observe`: detect and notify only. `propose`: open the revert and fix PRs, never merge. `act`:
also ask for auto-merge on the revert. A revert touching a path that matches `human_gates`
(migrations, schema, auth, payments, dependency manifests, …) is labelled `needs-human` and never
auto-merged, whatever the mode; so is a revert of a PR whose files are unknown (the forge could
not list them): not knowing is never taken for "touches nothing gated". A service may override
the mode and the gates (`effective`).
What to do with GitHub's answer to an auto-merge request is decided here too (`after_auto_merge`),
and which files a model-written fix may touch (`patch_refusals`). Rearguard never pushes to the
default branch and never deploys: the revert goes through the repository's own CI and CD.
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
FIX_LABELS = ("agent-fix", "rearguard")
ISSUE_LABELS = ("bug", "rearguard", "critical")
NEEDS_HUMAN = "needs-human"

# What a fix may touch besides the original PR's files: tests, wherever a project keeps them.
TEST_PATHS = (
    "**/tests/**", "**/test/**", "**/__tests__/**", "**/spec/**", "**/test_*.py", "**/*_test.py",
    "**/*_test.go", "**/*.test.ts", "**/*.test.js", "**/*.spec.ts", "**/*.spec.js",
)  # fmt: skip
# Never touched by a model-written patch, whatever the original PR did: CI is the gate itself.
NEVER_PATCHED = ("**/.github/workflows/**", "**/.github/actions/**", "**/.gitlab-ci.yml")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do: open a revert (with these labels), request auto-merge, and why."""

    open_revert: bool
    auto_merge: bool
    needs_human: bool
    labels: tuple[str, ...]
    reasons: tuple[str, ...]


def effective(
    mode: Mode,
    gates: Sequence[str],
    service_mode: Mode | None,
    service_gates: Sequence[str] | None,
) -> tuple[Mode, tuple[str, ...]]:
    """The mode and gates for one service: its own where it sets them, else the global ones."""
    chosen = service_gates if service_gates is not None else gates
    return (service_mode or mode), tuple(chosen)


def gated_paths(paths: Sequence[str], gates: Sequence[str]) -> tuple[str, ...]:
    """The paths that match a human gate (glob patterns; `**/` also matches at the root)."""
    hits = []
    for path in paths:
        for gate in gates:
            if fnmatchcase(path, gate) or (gate.startswith("**/") and fnmatchcase(path, gate[3:])):
                hits.append(path)
                break
    return tuple(hits)


def unknown_files(numbers: Sequence[int]) -> str:
    """Why PRs whose files are unknown are treated as gated, in words a person reads."""
    return f"files of {', '.join(f'PR #{n}' for n in numbers)} unknown: treated as gated"


def plan(
    mode: Mode,
    revert_unit: Sequence[int],
    paths: Sequence[str],
    gates: Sequence[str],
    *,
    unknown: Sequence[int],
) -> Plan:
    """Decide the actions for an incident whose revert unit touches `paths`, the files of the
    PRs numbered in `unknown` being unknown (each such PR counts as touching a gated path)."""
    if mode is Mode.OBSERVE:
        return Plan(False, False, False, (), ("observe mode: notify only",))
    if not revert_unit:
        return Plan(False, False, False, (), ("no PR on record to revert: escalate to people",))
    gated = gated_paths(paths, gates)
    reasons = []
    if gated:
        shown = ", ".join(gated[:5]) + (" …" if len(gated) > 5 else "")  # noqa: PLR2004
        reasons.append(f"touches human-gated paths ({shown}): a person must merge it")
    if unknown:
        reasons.append(f"{unknown_files(unknown)}, a person must merge it")
    if reasons:
        return Plan(True, False, True, (*BASE_LABELS, NEEDS_HUMAN), tuple(reasons))
    if mode is Mode.ACT:
        return Plan(True, True, False, BASE_LABELS, ("act mode: auto-merge requested",))
    return Plan(True, False, False, BASE_LABELS, ("propose mode: a person merges the revert",))


class MergeNext(StrEnum):
    """What follows GitHub's answer to `enablePullRequestAutoMerge`."""

    ENABLED = "enabled"  # auto-merge is on: GitHub merges once checks pass
    MERGE_NOW = "merge_now"  # the PR is already clean: merge it through REST
    LEAVE = "leave"  # the repository refuses auto-merge: a person merges


def after_auto_merge(error: str | None, *, allow_rest_merge: bool) -> tuple[MergeNext, str]:
    """Classify GitHub's answer (None: accepted) into the next step and a sentence for people.

    Any other GraphQL error is not decided here: the caller reports it as a failed action.
    """
    if error is None:
        return MergeNext.ENABLED, "auto-merge enabled: GitHub merges it once the checks pass"
    text = error.lower()
    if "clean status" in text:
        if allow_rest_merge:
            return MergeNext.MERGE_NOW, "the PR was already mergeable: merged through the REST API"
        return MergeNext.LEAVE, "the PR is mergeable but REST merges are off: a person merges it"
    if "auto merge is not allowed" in text or "auto-merge is not allowed" in text:
        return MergeNext.LEAVE, "auto-merge is not allowed in this repository: a person merges it"
    raise ValueError(f"unexpected answer to enablePullRequestAutoMerge: {error}")


def patch_refusals(
    patched: Sequence[str], original: Sequence[str], gates: Sequence[str]
) -> tuple[str, ...]:
    """Why a model-written patch touching `patched` must be refused (empty: it may be applied).

    A fix may touch the original PR's files and tests only; never CI workflows, never a path
    behind a human gate (a person writes those fixes).
    """
    reasons = []
    originals = set(original)
    for path in patched:
        if gated_paths([path], NEVER_PATCHED):
            reasons.append(f"{path}: CI workflows are never patched by Rearguard")
        elif gated_paths([path], gates):
            reasons.append(f"{path}: behind a human gate")
        elif path not in originals and not gated_paths([path], TEST_PATHS):
            reasons.append(f"{path}: neither a file of the original PR nor a test")
    if not patched:
        reasons.append("the patch changes no file")
    return tuple(reasons)
