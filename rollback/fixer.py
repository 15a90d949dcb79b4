"""The `Fixer` boundary: from a reverted PR and its evidence to a fix proposal, and its rendering.

A Fixer answers one `FixContext` (the original PR's diff and files, the spec it was written
against, the regression's evidence) with a `FixAnswer`: a `FixProposal` (diagnosis, hypothesis,
plan, a unified-diff patch or none, the tests that would have caught it) and the tokens it spent.
`AnthropicFixer` (rollback/anthropic_fixer.py) asks a model; `TemplateFixer` (here) needs no key
and proposes no patch, only what the evidence already says. What becomes of an answer (a draft fix
PR, or a refined bug issue) is `rollback.fix`'s job; the PR and issue texts are rendered here.

Exception tree::

    FixerError             the fixer could not answer (bad key, refused request): fall back
    └── FixerUnavailable   overloaded, rate limited, 5xx, timeout beyond the budget: retry later
                           (also an `observer.retry.Retryable`)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from observer.retry import Retryable


class FixerError(Exception):
    """The fixer gave no answer; the message says why (the key is never in it)."""


class FixerUnavailable(FixerError, Retryable):
    """The model's API is overloaded, rate limited or down; the same call may work later."""


@dataclass(frozen=True, slots=True)
class FixContext:
    """What a fixer is told about one incident's culprit PR."""

    incident_id: str
    repo: str
    base_branch: str
    service: str
    pr_number: int
    pr_title: str
    pr_url: str
    pr_author: str
    pr_body: str
    spec: str | None
    agent_session: str | None
    files: tuple[str, ...]
    files_known: bool  # False: the forge could not list the PR's files; `files` is empty
    diff: str
    evidence: tuple[str, ...]
    revert_url: str | None
    incident_url: str | None


@dataclass(frozen=True, slots=True)
class FixProposal:
    """A fixer's answer; `patch` is a unified diff against the original PR's files, or None."""

    diagnosis: str
    hypothesis: str
    plan: tuple[str, ...]
    patch: str | None
    tests: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one model call spent, and their cost at the configured prices."""

    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class FixAnswer:
    """A proposal (None when the answer was unusable, `problem` says why) and its usage."""

    proposal: FixProposal | None
    usage: Usage | None
    problem: str | None = None


class Fixer(Protocol):
    """Proposes a fix for a reverted PR."""

    async def propose(self, context: FixContext) -> FixAnswer:
        """Answer `context`; raise `FixerUnavailable` when it is worth retrying later."""
        ...


class TemplateFixer:
    """The keyless fixer: restates the evidence as a diagnosis, a hypothesis and a plan.

    `reason` says why no model was asked (no key, over budget); the issue repeats it."""

    def __init__(self, reason: str = "no Anthropic key is configured") -> None:
        self._reason = reason

    async def propose(self, context: FixContext) -> FixAnswer:
        """A proposal without a patch, built only from what Rearguard measured."""
        files = ", ".join(context.files[:8]) or "no files on record"
        diagnosis = (
            f"#{context.pr_number} ({context.pr_title}) was reverted after it regressed "
            f"{context.service}: " + ("; ".join(context.evidence[:2]) or "see the incident")
        )
        hypothesis = f"The change to {files} causes the regression measured after its deploy."
        plan = (
            f"Reproduce the regression with the change of #{context.pr_number} re-applied.",
            "Write a failing test for the behaviour the SLI measures.",
            f"Fix the change in {files} until that test passes, then re-apply it in a new PR.",
        )
        return FixAnswer(FixProposal(diagnosis, hypothesis, plan, None, ()), None, self._reason)


def _bullets(items: tuple[str, ...], empty: str) -> str:
    return "\n".join(f"- {item}" for item in items) or f"- {empty}"


def _links(context: FixContext) -> str:
    links = [f"- Original PR: {context.pr_url} (#{context.pr_number}, by @{context.pr_author})"]
    if context.revert_url:
        links.append(f"- Revert: {context.revert_url}")
    if context.incident_url:
        links.append(f"- Incident: {context.incident_url}")
    if context.spec:
        links.append(f"- Spec: {context.spec}")
    if context.agent_session:
        links.append(f"- Agent session: `{context.agent_session}`")
    return "\n".join(links)


def fix_pr_body(context: FixContext, proposal: FixProposal) -> str:
    """The draft fix PR's body: links, diagnosis, hypothesis, the tests to add."""
    return (
        f"Re-applies #{context.pr_number} with a fix for the regression that got it reverted. "
        f"Drafted by a model: a person reviews, tests and merges it; Rearguard never does.\n\n"
        f"{_links(context)}\n\n### Diagnosis\n{proposal.diagnosis}\n\n"
        f"### Hypothesis\n{proposal.hypothesis}\n\n"
        f"### Tests that would have caught it\n{_bullets(proposal.tests, 'none proposed')}\n\n"
        f"### Evidence\n{_bullets(context.evidence, 'see the incident')}"
    )


def bug_issue_body(context: FixContext, proposal: FixProposal, why: str) -> str:
    """The refined bug issue: diagnosis so far, evidence, hypothesis, plan, Given/When/Then."""
    sli = context.evidence[0] if context.evidence else "the regressed SLI"
    measured = sli.split(":")[0]
    scenarios = (
        f"- Given the change of #{context.pr_number} re-applied with the fix\n"
        f"  When {context.service} serves its usual traffic\n"
        f"  Then {measured} stays within its pre-deploy baseline\n"
        f"- Given the test suite\n  When it runs on the fix\n"
        f"  Then a test added for this regression fails without the fix and passes with it\n"
        f"- Given the fix deployed\n  When Rearguard watches the deploy\n"
        f"  Then the verdict is healthy"
    )
    return (
        f"#{context.pr_number} ({context.pr_title}) was reverted by Rearguard. No fix PR was "
        f"drafted: {why}.\n\n{_links(context)}\n\n### Diagnosis so far\n{proposal.diagnosis}\n\n"
        f"### Evidence\n{_bullets(context.evidence, 'see the incident')}\n\n"
        f"### Hypothesis\n{proposal.hypothesis}\n\n"
        f"### Plan\n{_bullets(proposal.plan, 'investigate the diff')}\n\n"
        f"### Acceptance scenarios\n{scenarios}"
    )
