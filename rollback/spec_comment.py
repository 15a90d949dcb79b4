"""The comment on a confirmed culprit's spec issue: what regressed, the evidence, the revert
and the fix, so that the spec's author sees the outcome.

Pure: `spec_issue` reads which GitHub issue a spec names (`owner/repo#N`, an issue URL, or
`#N` of the PR's own repository); `comment_body` writes the comment, everything from outside
(titles, SLI and service names, evidence lines) in code spans. The comment is made once per
incident (`spec_key`), the forge finding its hidden marker before it posts again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from attribution.lessons import code

_SHORT = re.compile(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)?#(\d+)")
_URL = re.compile(r"https?://[^/\s]+/([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/issues/(\d+)/?")


@dataclass(frozen=True, slots=True)
class SpecNote:
    """What the spec comment says."""

    incident_id: str
    service: str
    environment: str
    sli: str | None
    regression: str
    """The numbers: "8.00% after the deploy against 0.50% before (statistic 12.1 >= 4.5)"."""
    evidence: tuple[str, ...]
    pr_number: int
    pr_title: str
    pr_url: str
    how: str
    """How the culprit was settled: "confirmed by `ana`", "the revert restored health"."""
    revert_url: str | None = None
    fix_url: str | None = None
    fix_kind: str | None = None  # fix_pr | issue
    incident_url: str | None = None


def spec_key(incident_id: str) -> str:
    """The idempotency key (action id and hidden marker) of an incident's spec comment."""
    return f"spec-{incident_id}"


def spec_issue(spec: str | None, repo: str) -> tuple[str, int] | None:
    """The (repository, issue number) a spec names, None when it names no GitHub issue."""
    if not spec:
        return None
    text = spec.strip()
    if found := _URL.fullmatch(text):
        return found.group(1), int(found.group(2))
    if found := _SHORT.fullmatch(text):
        return found.group(1) or repo, int(found.group(2))
    return None


def comment_body(note: SpecNote) -> str:
    """The comment's Markdown."""
    fix = "none yet"
    if note.fix_url:
        fix = ("draft fix PR " if note.fix_kind == "fix_pr" else "bug issue ") + note.fix_url
    lines = [
        "**Rearguard: a change written against this spec was reverted**",
        "",
        f"[#{note.pr_number}]({note.pr_url}) {code(note.pr_title)} regressed "
        f"{code(note.service)} in {code(note.environment)}: "
        f"{code(note.sli or 'an SLI')} {note.regression}. The culprit was {note.how}.",
        "",
        f"- Revert PR: {note.revert_url or 'none (not reverted by Rearguard)'}",
        f"- Fix: {fix}",
    ]
    if note.incident_url:
        lines.append(f"- Incident: {note.incident_url}")
    else:
        lines.append(f"- Incident: {code(note.incident_id)}")
    if note.evidence:
        lines += ["", "Evidence:", *_bullets(note.evidence)]
    lines += [
        "",
        "Consider saying in this spec what the change had to keep (the SLI above, and what "
        "the reverted diff removed), so that the next attempt does not repeat it.",
    ]
    return "\n".join(lines)


def _bullets(items: Sequence[str]) -> list[str]:
    return [f"- {code(item)}" for item in items]
