"""Which agent session wrote a PR, read from git trailers, labels and co-author lines.

Keys are case-insensitive and may appear in the PR body or the merge commit message (the body
wins). Fallbacks, in order: an `agent:<name>` label; a `Co-authored-by:` line naming a known
agent. The PR-level markers of `attribution.markers` (bot authors, branches, session links)
come between. A PR with none of these is of "unknown" authorship, attributed to its author —
never dropped, and never called human without a human-only rule. Given the
PR's repository, a bare `#N` spec is qualified as `owner/repo#N`, so one spec reads the same
whichever way a PR names it and specs of different repositories never merge in reports.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from attribution.markers import DEFAULT_RULES, MarkerRule, combine, find_markers
from attribution.records import AgentIdentity

KNOWN_AGENTS = (
    "claude", "copilot", "codex", "devin", "cursor", "aider", "openhands", "jules", "sweep",
    "amazon-q", "gemini",
)  # fmt: skip

_TRAILER = re.compile(
    r"^[ \t]*(agent-session|agent-name|agent-model|agent-role|spec|agent-tokens|agent-cost-usd)"
    # `\r`: bodies written in GitHub's web editor end their lines with CRLF.
    r"[ \t]*:[ \t]*(\S.*?)[ \t\r]*$",
    re.IGNORECASE | re.MULTILINE,
)
_CO_AUTHOR = re.compile(r"^[ \t]*co-authored-by:[ \t]*(.+)$", re.IGNORECASE | re.MULTILINE)
_CLOSING = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)[ \t]*:?[ \t]+"
    r"((?:[\w.-]+/[\w.-]+)?#\d+|https?://\S+/issues/\d+)",
    re.IGNORECASE,
)


def trailers(*texts: str) -> dict[str, str]:
    """Agent trailers found in `texts`, keys lower-cased; earlier texts win on conflicts."""
    found: dict[str, str] = {}
    for text in texts:
        for key, value in _TRAILER.findall(text or ""):
            found.setdefault(key.lower(), value)
    return found


def _number(value: str | None, kind: type[int] | type[float]) -> int | float | None:
    """A finite, non-negative count or amount; None for anything else (`nan`, `-3`, `12k`)."""
    if value is None:
        return None
    try:
        number = kind(value.replace(",", "").lstrip("$"))
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _co_authoring_agent(texts: Iterable[str], known: Iterable[str]) -> str | None:
    names = tuple(k.lower() for k in known)
    for text in texts:
        for line in _CO_AUTHOR.findall(text or ""):
            lowered = line.lower()
            for name in names:
                if name in lowered:
                    return name
    return None


def spec_of(found: dict[str, str], *texts: str, repo: str | None = None) -> str | None:
    """The spec a PR was written against: a `Spec:` trailer, else the first closing keyword.

    A bare `#N` becomes `repo#N` when the PR's `repo` is given.
    """
    spec = found.get("spec")
    if spec is None:
        match = next((m for m in (_CLOSING.search(t or "") for t in texts) if m), None)
        spec = match.group(1) if match else None
    if spec is not None and repo and re.fullmatch(r"#\d+", spec):
        return f"{repo}{spec}"
    return spec


def identify(
    author: str,
    body: str,
    commit_message: str = "",
    labels: Iterable[str] = (),
    known_agents: Iterable[str] = KNOWN_AGENTS,
    *,
    repo: str | None = None,
    head_ref: str | None = None,
    rules: Sequence[MarkerRule] = DEFAULT_RULES,
) -> AgentIdentity:
    """Identify who wrote a PR from its body, merge commit message, labels, author and branch.

    Explicit `Agent-*` trailers and an `agent:` label win; else the marker `rules` (bot authors,
    branches, session links, co-author trailers); else a co-author line naming a known agent.
    Without any of these the authorship is "unknown" — "human" only when a human-only rule
    matched. `repo` (`owner/name`) qualifies a bare `#N` spec; without it the spec stays `#N`.
    """
    texts = (body or "", commit_message or "")
    found = trailers(*texts)
    label_agent = next(
        (lb.split(":", 1)[1].strip() for lb in labels if lb.lower().startswith("agent:")), None
    )
    marker = combine(find_markers(rules, author, head_ref, texts))
    explicit = found.get("agent-name") or label_agent or None
    source = (
        "Agent-Name trailer" if found.get("agent-name")
        else f"label agent:{label_agent}" if label_agent else None
    )  # fmt: skip
    name = explicit
    if name is None and marker is not None and marker.authorship == "agent":
        name, source = marker.agent, marker.source
    if name is None:
        name = _co_authoring_agent(texts, known_agents)
        source = "co-author line" if name else None
    if name is None and "agent-session" in found:
        name, source = "unknown-agent", "Agent-Session trailer"
    spec = spec_of(found, *texts, repo=repo)
    if name is None:
        if marker is not None and marker.authorship == "human":
            return AgentIdentity(kind="human", name=author, spec=spec, source=marker.source)
        return AgentIdentity(kind="unknown", name=author, spec=spec)
    same = marker if marker is not None and marker.agent == name.lower() else None
    tokens = _number(found.get("agent-tokens"), int)
    cost = _number(found.get("agent-cost-usd"), float)
    return AgentIdentity(
        kind="agent",
        name=name,
        session=found.get("agent-session") or (same.session if same else None),
        model=found.get("agent-model") or (same.model if same else None),
        role=found.get("agent-role"),
        spec=spec,
        tokens=int(tokens) if tokens is not None else None,
        cost_usd=float(cost) if cost is not None else None,
        source=source,
    )


def describe(ident: AgentIdentity, branch: str | None = None) -> str:
    """Provenance as a person reads it, plain (untrusted) text for the renderer to escape:
    authorship, agent, model, session, the grain it was known at and the marker it came from."""
    if not ident.is_agent:
        why = f"from {ident.source}" if ident.source else "no agent or human marker"
        return f"authorship {ident.kind} ({ident.name}; {why})"
    parts = [f"agent {ident.name}"]
    if ident.model:
        parts.append(f"model {ident.model}")
    if ident.session:
        parts.append(f"session {ident.session}")
    if branch:
        parts.append(f"branch {branch}")
    known = f"known at {ident.grain} level"
    return ", ".join(parts) + f" ({known}" + (f", from {ident.source})" if ident.source else ")")
