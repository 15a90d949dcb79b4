"""Realistic provenance-marker mixes for the benchmark's PRs (../shared/PROVENANCE.md).

Each agent PR takes its agent's real shape (Copilot's bot author and `copilot/` branch, Codex's
task link from a person's account, Devin's bot and run link, Claude Code's trailer naming the
model), sometimes with the trailers a squash merge drops, sometimes with nothing left at all.
People's PRs carry no marker, except those of a configured human login (positive evidence).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from attribution.markers import DEFAULT_RULES, MarkerRule, login_rules

HUMAN_LOGINS = ("alice",)
"""People the bench's config lists in `human_logins`; the others are unmarked (`unknown`)."""
RULES: tuple[MarkerRule, ...] = (*login_rules({}, HUMAN_LOGINS), *DEFAULT_RULES)
MARKER_AGENTS = {"claude-code": "claude", "codex": "codex", "devin": "devin", "copilot": "copilot"}


@dataclass(frozen=True, slots=True)
class Shape:
    """A PR as an agent (or person) leaves it, and what its markers truly record."""

    author: str
    branch: str
    body: str
    agent: str | None  # the marker agent name, None for a person
    marked: bool  # any marker survived
    model: str | None = None  # recorded by a marker
    session: str | None = None  # recorded by a marker
    human_evidence: bool = False


def shape(number: int, agent: str | None, person: str, seed: int) -> Shape:  # noqa: PLR0911
    """One PR's markers; `agent` is the bench's agent name (None for a person)."""
    rng = random.Random(seed * 1_000_003 + number)
    base = f"A change {number}.\n"
    if agent is None:
        return Shape(person, f"{person}/change-{number}", base, None, person in HUMAN_LOGINS,
                     human_evidence=person in HUMAN_LOGINS)  # fmt: skip
    name = MARKER_AGENTS[agent]
    if rng.random() < 0.1:  # every marker stripped (attribution off, a person's branch)
        return Shape(person, f"feature-{number}", base, name, False)
    hexid = f"{rng.getrandbits(128):032x}"
    if name == "copilot":
        return Shape("Copilot", f"copilot/fix-{number}", base, name, True)
    if name == "codex":
        url = f"https://chatgpt.com/codex/tasks/task_e_{hexid}"
        return Shape(person, f"codex/change-{number}", f"{base}\n[Codex Task]({url})", name,
                     True, session=url)  # fmt: skip
    if name == "devin":
        url = f"https://app.devin.ai/sessions/{hexid}"
        body = f"{base}\nRequested by: {person} (@{person})\nLink to Devin run: {url}\n"
        return Shape("devin-ai-integration[bot]", f"devin/{number}", body, name, True, session=url)
    model = rng.choice(("Claude Opus 4.5", "Claude Sonnet 5"))
    url = f"https://claude.ai/code/session_{hexid[:24]}"
    if rng.random() < 0.4:  # squash-merged with the attribution trailer dropped, footer kept
        body = f"{base}\n🤖 Generated with [Claude Code](https://claude.com/claude-code)\n"
        return Shape(person, f"claude-{number}", body, name, True)
    body = f"{base}\nClaude-Session: {url}\n\nCo-Authored-By: {model} <noreply@anthropic.com>\n"
    return Shape(person, f"claude-{number}", body, name, True, model=model, session=url)
