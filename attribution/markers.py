"""PR-level provenance markers: the marks real coding agents leave on a PR record (bot authors,
head-branch prefixes, session links in the body, co-author trailers naming a model).

They are read from the PR, not from commits, so they survive squash and rebase merges. The rules
are data (`DEFAULT_RULES`, see ../shared/PROVENANCE.md for each one's source); a deployment adds
its own in `[[attribution.markers]]`, `[attribution] agent_logins` and `human_logins`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

FIELDS = ("author", "branch", "text")
"""What a rule reads: the PR author's login, the head branch, or the body and commit message."""


@dataclass(frozen=True, slots=True)
class MarkerRule:
    """One marker: `pattern` searched in `field`; a match names `agent`.

    Named groups `session` and `model` in the pattern give the session (URL or id) and the model.
    `source` is how the marker is shown; `{value}` in it becomes the matched text.
    `authorship` is "agent", or "human" for a human-only rule (positive evidence of a person).
    """

    agent: str
    field: str
    pattern: re.Pattern[str]
    source: str
    authorship: str = "agent"


@dataclass(frozen=True, slots=True)
class Marker:
    """What a rule found on one PR."""

    authorship: str
    agent: str
    source: str
    session: str | None = None
    model: str | None = None


def rule(
    agent: str, field: str, pattern: str, source: str, authorship: str = "agent"
) -> MarkerRule:
    """A rule from plain values (also from config), checked: a bad one raises ValueError."""
    if field not in FIELDS:
        raise ValueError(f"field must be one of {', '.join(FIELDS)}, not {field!r}")
    if authorship not in ("agent", "human"):
        raise ValueError(f"authorship must be agent or human, not {authorship!r}")
    if not agent.strip():
        raise ValueError("agent must not be empty")
    try:
        compiled = re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r}: {exc}") from None
    return MarkerRule(agent.strip(), field, compiled, source, authorship)


def _login(login: str) -> str:
    return "^" + re.escape(login) + "$"


_CLAUDE = "<noreply@anthropic\\.com>"
DEFAULT_RULES: tuple[MarkerRule, ...] = (
    # Session links and trailers in the body or commit message: they carry the session.
    rule("claude", "text", r"^[ \t]*Claude-Session:[ \t]*(?P<session>https://claude\.ai/code/session_[\w-]+)", "Claude-Session trailer"),  # noqa: E501
    rule("codex", "text", r"(?P<session>https://chatgpt\.com/codex/tasks/task_[\w-]+)", "body link {value}"),  # noqa: E501
    rule("devin", "text", r"(?P<session>https://app\.devin\.ai/sessions/[0-9a-f]+)", "body link {value}"),  # noqa: E501
    rule("jules", "text", r"(?P<session>https://jules\.google\.com/task/\d+)", "body link {value}"),
    rule("cursor", "text", r"(?P<session>https://cursor\.com/agents/bc-[0-9a-f-]+)", "body link {value}"),  # noqa: E501
    # Copilot's session page on github.com (unverified URL shape; PROVENANCE.md names the API).
    rule("copilot", "text", r"(?P<session>https://github\.com/[\w.-]+/[\w.-]+/(?:pull/\d+/)?agent-sessions/[\w-]+)", "body link {value}"),  # noqa: E501
    # Bot authors and committers.
    rule("copilot", "author", _login("Copilot"), "bot author {value}"),
    rule("copilot", "author", _login("copilot-swe-agent[bot]"), "bot author {value}"),
    rule("copilot", "author", _login("copilot-swe-agent"), "bot author {value}"),
    rule("devin", "author", _login("devin-ai-integration[bot]"), "bot author {value}"),
    rule("jules", "author", _login("google-labs-jules[bot]"), "bot author {value}"),
    rule("claude", "author", _login("claude[bot]"), "bot author {value}"),
    rule("codegen", "author", _login("codegen-sh[bot]"), "bot author {value}"),
    rule("amazon-q", "author", _login("amazon-q-developer[bot]"), "bot author {value}"),
    # Head branches (PRArena's searches).
    rule("copilot", "branch", r"^copilot/", "branch {value}"),
    rule("codex", "branch", r"^codex/", "branch {value}"),
    rule("cursor", "branch", r"^cursor/", "branch {value}"),
    # Co-author trailers and body footers; Claude Code's trailer names the model.
    rule("claude", "text", rf"^[ \t]*co-authored-by:[ \t]*(?P<model>Claude [^<\s][^<\r\n]*?)[ \t]*{_CLAUDE}", "Co-Authored-By trailer"),  # noqa: E501
    rule("claude", "text", rf"^[ \t]*co-authored-by:[ \t]*Claude[ \t]*{_CLAUDE}", "Co-Authored-By trailer"),  # noqa: E501
    rule("claude", "text", r"Generated with \[Claude Code\]", "body footer"),
    rule("copilot", "text", r"^[ \t]*co-authored-by:.*Copilot@users\.noreply\.github\.com", "Co-Authored-By trailer"),  # noqa: E501
    rule("devin", "text", r"^[ \t]*co-authored-by:.*devin-ai-integration\[bot\]@users\.noreply\.github\.com", "Co-Authored-By trailer"),  # noqa: E501
    rule("cursor", "text", r"^[ \t]*co-authored-by:.*<cursoragent@cursor\.com>", "Co-Authored-By trailer"),  # noqa: E501
    rule("codex", "text", r"^[ \t]*co-authored-by:[ \t]*Codex[ \t]*<noreply@openai\.com>", "Co-Authored-By trailer"),  # noqa: E501
)  # fmt: skip


def login_rules(
    agent_logins: Mapping[str, str], human_logins: Iterable[str]
) -> tuple[MarkerRule, ...]:
    """Rules for configured accounts: `agent_logins` (login -> agent) and human-only logins."""
    agents = tuple(rule(a, "author", _login(login), "configured agent login {value}")
                   for login, a in agent_logins.items())  # fmt: skip
    humans = tuple(rule(login, "author", _login(login), "configured human login {value}", "human")
                   for login in human_logins)  # fmt: skip
    return agents + humans


def _field_texts(
    field: str, author: str, branch: str | None, texts: Sequence[str]
) -> Sequence[str]:
    if field == "author":
        return (author,)
    if field == "branch":
        return (branch,) if branch else ()
    return texts


def find_markers(
    rules: Iterable[MarkerRule], author: str, branch: str | None, texts: Sequence[str]
) -> list[Marker]:
    """Every marker the rules find on a PR, in rule order (the first match of each rule)."""
    found: list[Marker] = []
    for r in rules:
        for text in _field_texts(r.field, author, branch, texts):
            match = r.pattern.search(text or "")
            if match is None:
                continue
            groups = match.groupdict()
            value = text if r.field != "text" else match.group(0).strip()
            found.append(
                Marker(
                    authorship=r.authorship,
                    agent=r.agent,
                    source=r.source.replace("{value}", value),
                    session=groups.get("session"),
                    model=(groups.get("model") or "").strip() or None,
                )
            )
            break
    return found


def combine(markers: Sequence[Marker]) -> Marker | None:
    """One verdict from a PR's markers: any agent marker wins over a human-only rule (an agent
    working through a person's account is still an agent); the first agent marker names the
    agent, and its later markers fill in the session and model. Sources are all listed."""
    agents = [m for m in markers if m.authorship == "agent"]
    if not agents:
        return markers[0] if markers else None
    agent = agents[0].agent
    same = [m for m in agents if m.agent == agent]
    return Marker(
        authorship="agent",
        agent=agent,
        source="; ".join(dict.fromkeys(m.source for m in same)),
        session=next((m.session for m in same if m.session), None),
        model=next((m.model for m in same if m.model), None),
    )
