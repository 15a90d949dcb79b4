"""The fix step: a fixer's answer becomes a draft fix PR, or else a refined bug issue.

The model's output is data. A patch is parsed (`rollback.patch`), checked against what a fix may
touch (`rollback.policy.patch_refusals`: the original PR's files and tests only, never CI
workflows or human-gated paths) and applied in memory to the files as the original PR left them;
only then does the forge write a branch off the default branch with the original change plus the
fix, opened as a draft PR labelled `agent-fix`, assigned to the original author unless that is a
bot account (coding agents open PRs as `…[bot]` users, which GitHub refuses as assignees with a
422): then nobody is assigned and the PR or issue says who wrote the change. A refused patch,
a patch that does not apply, no patch (the template fixer), or a fixer that gave up all lead to a
bug issue that says why. So does a culprit whose files are unknown: no patch could be checked
against them (and a fix PR could not re-apply a change it cannot see), so no fixer is asked.
`FixerUnavailable` propagates: the loop retries the step later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rollback.fixer import (
    FixAnswer,
    FixContext,
    Fixer,
    FixerError,
    FixerUnavailable,
    FixProposal,
    TemplateFixer,
    Usage,
    bug_issue_body,
    fix_pr_body,
)
from rollback.forge import ChangeRequest, Forge, ForgeReads, ForgeWrites, IssueRequest
from rollback.patch import PatchError, apply, paths
from rollback.policy import (
    FIX_LABELS,
    ISSUE_LABELS,
    NEEDS_HUMAN,
    gated_paths,
    patch_refusals,
    unknown_files,
)

OnUsage = Callable[[Usage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FixOutcome:
    """What the fix step made: a draft fix PR or a bug issue, and why."""

    kind: str  # "fix_pr" | "bug_issue"
    url: str
    number: int | None
    reason: str
    reused: bool


def fix_key(incident_id: str) -> str:
    """The idempotency key (and branch suffix) of an incident's fix PR."""
    return f"fix-{incident_id}"


def issue_key(incident_id: str) -> str:
    """The idempotency key of an incident's bug issue."""
    return f"bug-{incident_id}"


def assignable(login: str) -> bool:
    """Whether GitHub takes `login` as an assignee: not a bot account (`…[bot]`), and not the
    `ghost` that stands for a deleted user."""
    return bool(login) and not login.endswith("[bot]") and login != "ghost"


def _assignees(context: FixContext) -> tuple[str, ...]:
    return (context.pr_author,) if assignable(context.pr_author) else ()


def _author_note(context: FixContext) -> str:
    """For a change nobody can be assigned: who wrote it, so a person knows whose it was."""
    if assignable(context.pr_author):
        return ""
    who = f"@{context.pr_author}, a bot account" if context.pr_author else "an unknown account"
    session = f" (agent session `{context.agent_session}`)" if context.agent_session else ""
    return (
        f"\n\n#{context.pr_number} was written by {who}{session}, which GitHub does not take "
        "as an assignee: nobody is assigned, a person takes this on."
    )


async def draft_fix(
    forge: Forge,
    fixer: Fixer,
    context: FixContext,
    *,
    merge_sha: str,
    gates: Sequence[str],
    on_usage: OnUsage,
) -> FixOutcome:
    """Ask `fixer`, then open the draft fix PR or, failing that, the bug issue."""
    if not context.files_known:
        template = (await TemplateFixer().propose(context)).proposal
        assert template is not None  # the template always proposes
        why = f"{unknown_files([context.pr_number])}, a person writes the fix"
        return await _open_issue(forge, context, template, why)
    try:
        answer = await fixer.propose(context)
    except FixerUnavailable:
        raise
    except FixerError as exc:
        answer = FixAnswer(None, None, f"the fixer failed: {exc}")
    if answer.usage is not None:
        await on_usage(answer.usage)
    proposal = answer.proposal
    why = answer.problem or "the fixer proposed no patch"
    if proposal is not None and proposal.patch:
        files, why = await _patched(forge, context, proposal.patch, merge_sha, gates)
        if files is not None:
            return await _open_fix_pr(forge, context, proposal, files, gates)
    if proposal is None:
        proposal = (await TemplateFixer().propose(context)).proposal
        assert proposal is not None  # the template always proposes
    return await _open_issue(forge, context, proposal, why)


async def _patched(
    forge: ForgeReads, context: FixContext, patch: str, merge_sha: str, gates: Sequence[str]
) -> tuple[dict[str, str | None] | None, str]:
    """The files of the original change plus the fix, or None and why the patch was refused."""
    try:
        touched = paths(patch)
    except PatchError as exc:
        return None, f"the patch was malformed ({exc})"
    refusals = patch_refusals(touched, context.files, gates)
    if refusals:
        return None, "the patch was refused: " + "; ".join(refusals)
    wanted = sorted(set(context.files) | set(touched))
    after = dict(await forge.read_files(context.repo, merge_sha, wanted))
    try:
        fixed = apply(patch, after)
    except PatchError as exc:
        return None, f"the patch did not apply ({exc})"
    original = {path: after.get(path) for path in context.files}
    return original | fixed, "patch applied"


async def _open_fix_pr(
    forge: ForgeWrites,
    context: FixContext,
    proposal: FixProposal,
    files: dict[str, str | None],
    gates: Sequence[str],
) -> FixOutcome:
    gated = gated_paths(sorted(files), gates)
    labels = (*FIX_LABELS, NEEDS_HUMAN) if gated else FIX_LABELS
    request = ChangeRequest(
        repo=context.repo,
        key=fix_key(context.incident_id),
        base_branch=context.base_branch,
        files=tuple(sorted(files.items())),
        message=f"Re-apply #{context.pr_number} with a fix\n\n{proposal.hypothesis}",
        title=f"Fix and re-apply #{context.pr_number}: {context.pr_title}"[:250],
        body=fix_pr_body(context, proposal) + _author_note(context),
        labels=labels,
        assignees=_assignees(context),
        draft=True,
    )
    made = await forge.open_change(request)
    return FixOutcome("fix_pr", made.url, made.number, "draft fix PR opened", made.reused)


async def _open_issue(
    forge: ForgeWrites, context: FixContext, proposal: FixProposal, why: str
) -> FixOutcome:
    request = IssueRequest(
        repo=context.repo,
        key=issue_key(context.incident_id),
        title=f"Regression from #{context.pr_number} ({context.pr_title}): fix and re-apply"[:250],
        body=bug_issue_body(context, proposal, why) + _author_note(context),
        labels=ISSUE_LABELS,
        assignees=_assignees(context),
    )
    made = await forge.open_issue(request)
    return FixOutcome("bug_issue", made.url, made.number, why, made.reused)
