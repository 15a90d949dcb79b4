"""Revert planning: the revert change's title, body (the evidence) and idempotency key.

Pure: it turns what the loop knows about an incident into a `RevertRequest`; the `Forge` makes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollback.forge import PullRef, RevertRequest


@dataclass(frozen=True, slots=True)
class RevertContext:
    """What the PR body tells a reviewer: the regression, the suspects and the incident."""

    incident_id: str
    service: str
    environment: str
    deploy_sha: str
    sli: str
    before: str
    after: str
    statistic: str
    suspects: tuple[str, ...]
    agent_sessions: tuple[str, ...]
    incident_url: str | None
    provenance: tuple[str, ...] = ()
    """Per reverted PR: who wrote it and from which marker (untrusted text, shown as code)."""


def _code(text: str) -> str:
    """Untrusted text as one Markdown code span: no links, mentions or markup."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def revert_key(incident_id: str) -> str:
    """The idempotency key of an incident's revert (also its branch name suffix)."""
    return f"revert-{incident_id}"


def revert_request(
    repo: str,
    base_branch: str,
    prs: Sequence[PullRef],
    context: RevertContext,
    labels: Sequence[str],
) -> RevertRequest:
    """Build the revert change for `prs` with the evidence in its body."""
    if not prs:
        raise ValueError("a revert needs at least one PR")
    if len(prs) == 1:
        title = f"Revert #{prs[0].number}: {prs[0].title}"
    else:
        title = "Revert " + ", ".join(f"#{p.number}" for p in prs) + f" ({context.service})"
    reverted = "\n".join(f"- #{p.number} {p.title} (`{p.merge_sha[:10]}`)" for p in prs)
    suspects = "\n".join(f"- {s}" for s in context.suspects) or "- none on record"
    sessions = ", ".join(f"`{s}`" for s in context.agent_sessions) or "none recorded"
    link = f"\n\nIncident: {context.incident_url}" if context.incident_url else ""
    provenance = "".join(f"- {_code(p)}\n" for p in context.provenance)
    body = (
        f"Rearguard detected a regression of **{context.sli}** in **{context.service}** "
        f"({context.environment}) after deploy `{context.deploy_sha[:10]}`: "
        f"{context.before} before, **{context.after}** after ({context.statistic}).\n\n"
        f"### Reverted\n{reverted}\n\n### Suspects\n{suspects}\n\n"
        f"Agent sessions: {sessions}\n\n"
        + (f"### Provenance\n{provenance}\n" if provenance else "")
        + f"This PR goes through the repository's normal CI and CD; Rearguard never pushes to "
        f"{base_branch} and never deploys.{link}\n\n"
        f"<!-- rearguard-key: {revert_key(context.incident_id)} -->"
    )
    return RevertRequest(
        repo=repo,
        key=revert_key(context.incident_id),
        base_branch=base_branch,
        prs=tuple(prs),
        title=title[:250],
        body=body,
        labels=tuple(labels),
    )
