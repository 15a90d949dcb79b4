"""The `Checks` boundary: a verdict shown on a commit, where the team's CI results are.

One `CheckRequest` says what Rearguard wants a commit to show: `observing` while a deploy is
watched, then `healthy`, `inconclusive` or `regressed`, and on a revert PR's head the incident it
undoes. GitHub shows it as a check run (Checks API, GitHub App installations only) or, with a
personal token, as a commit status of context `rearguard` (`rollback.github_checks`); the demo's
local git and any forge without checks use `NoChecks`. A report is idempotent per `key` (the
check run's `external_id`): asking twice updates the one check run rather than adding another.
Errors are the forge's (`rollback.forge.ForgeError`, `ForgeUnavailable` when retrying may help).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

TITLE_MAX = 255
"""GitHub's limit on a check run's `output.title` (longer is cut, with an ellipsis)."""
SUMMARY_MAX = 65_535
"""GitHub's limit on `output.summary` and `output.text` (characters)."""
DESCRIPTION_MAX = 140
"""What GitHub keeps of a commit status' `description`."""


class CheckState(StrEnum):
    """What the verdict says, in the Checks API's words (`in_progress`, then a conclusion)."""

    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    NEUTRAL = "neutral"
    FAILURE = "failure"


STATUS_STATE: dict[CheckState, str] = {
    CheckState.IN_PROGRESS: "pending",
    CheckState.SUCCESS: "success",
    CheckState.NEUTRAL: "error",  # statuses have no neutral: "could not be determined"
    CheckState.FAILURE: "failure",
}
"""A check's state as a commit status (`pending`, `success`, `failure`, `error`)."""


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One verdict on commit `sha` of `repo`, found again by `key`."""

    repo: str
    sha: str
    key: str
    name: str
    state: CheckState
    title: str
    summary: str
    details_url: str | None = None

    def output(self) -> dict[str, str]:
        """The check run's `output`, cut to GitHub's limits."""
        return {"title": clip(self.title, TITLE_MAX), "summary": clip(self.summary, SUMMARY_MAX)}

    def description(self) -> str:
        """The commit status' one line."""
        return clip(self.title, DESCRIPTION_MAX)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Where the verdict is shown: a check run (`id`, its page) or a commit status."""

    kind: str  # "check_run" | "status" | "none"
    id: int | None
    url: str | None
    reused: bool


class Checks(Protocol):
    """Shows verdicts on commits."""

    async def report(self, request: CheckRequest) -> CheckResult:
        """Create the check for `request.key` on `request.sha`, or update the one made before."""
        ...


class NoChecks:
    """No forge to show verdicts on (the demo's local git): reports nothing, says so."""

    async def report(self, request: CheckRequest) -> CheckResult:
        return CheckResult("none", None, None, reused=False)


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
