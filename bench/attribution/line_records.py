"""Line records in the benchmark: git-ai notes on some PRs' landing commits, mixed PRs where a
person and one or two agent sessions each wrote some lines, and the culprit conversation named.

After `run.build` made the repositories (and while they still exist), each PR of an agent gets
a git-ai note with probability `NOTED`; a person with git-ai installed gets one with `h_` lines
with probability `HUMAN_NOTED`. A noted agent PR is mixed (a person wrote some of its lines)
with probability `MIXED`, and split over two sessions with `TWO_SESSIONS`. Who wrote a line is
decided from the line's own text (unique per line), so the truth at the deploy's head is read
from the head's file, never from the carried ranges being measured. The notes are written as
git-ai writes them and read back with `attribution.line_records.parse_git_ai`; ranking then
carries them to the head (`attribution.blame`) and names the line's record
(`Ranking.line_record`). The figure: on incidents with a stack frame whose culprit PR has a
note, how often the named conversation is the one that wrote the frame's line.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from attribution.diffs import merge_lines
from attribution.evidence import Evidence, PrChange
from attribution.line_records import parse_git_ai
from attribution.suspects import rank
from bench.attribution.generate import Incident
from bench.attribution.world import _git
from rollback.policy import DEFAULT_HUMAN_GATES

NOTED, HUMAN_NOTED, MIXED, TWO_SESSIONS = 0.6, 0.3, 0.3, 0.2
KEY = "conversation_top1_with_line_records"
TARGET = 0.90


def _origin(text: str) -> int | None:
    """The PR that wrote a generated line (`def <stem>_<origin>_<i>(x):  # …`)."""
    try:
        return int(text.split("(", 1)[0].rsplit("_", 2)[1])
    except (IndexError, ValueError):
        return None


def _writer(text: str, mixed: bool, two: bool) -> int:
    """0: the PR's first session, 1: its second, 2: a person — from the line's text alone."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    if mixed and h % 3 == 0:
        return 2
    return (h >> 4) % 2 if two else 0


def _key(kind: int, pr: int, stream: int) -> str:
    raw = hashlib.sha256(f"{stream}:{pr}:{kind}".encode()).hexdigest()[:14]
    return f"h_{raw}" if kind == 2 else f"s_{raw}"


def _ranges(lines: Sequence[int]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in merge_lines(lines))


class Notes:
    """The git-ai notes of one stream's PRs and who wrote each noted line (by text)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.shape: dict[int, tuple[bool, bool, bool]] = {}  # pr -> (agent, mixed, two)

    def decide(self, change: PrChange) -> bool:
        agent = change.pr.identity.is_agent
        if self.rng.random() >= (NOTED if agent else HUMAN_NOTED):
            return False
        mixed = agent and self.rng.random() < MIXED
        two = agent and self.rng.random() < TWO_SESSIONS
        self.shape[change.number] = (agent, mixed, two)
        return True

    def writer(self, number: int, text: str) -> int:
        agent, mixed, two = self.shape[number]
        return _writer(text, mixed, two) if agent else 2

    def note(self, repo: Path, stream: int, change: PrChange) -> str:
        """The git-ai note of `change`'s landing commit: the lines it wrote, by writer."""
        body: list[str] = []
        sessions: dict[str, Any] = {}
        for f in change.files:
            shown = _git(repo, "show", f"{change.pr.merge_sha}:{f.path}") if f.ranges else ""
            text = shown.splitlines()
            by_key: dict[str, list[int]] = {}
            for first, last in f.ranges:
                for n in range(first, min(last, len(text)) + 1):
                    if _origin(text[n - 1]) != change.number:
                        continue  # a deletion point: not a line this PR wrote
                    who = self.writer(change.number, text[n - 1])
                    by_key.setdefault(_key(who, change.number, stream), []).append(n)
            if by_key:
                body.append(f.path)
                body += [f"  {k}::t_{'0' * 14} {_ranges(v)}" for k, v in sorted(by_key.items())]
        for kind in (0, 1):
            key = _key(kind, change.number, stream)
            sessions[key] = {
                "agent_id": {
                    "tool": change.pr.identity.name,
                    "id": f"{change.pr.identity.session}/{kind}",
                    "model": change.pr.identity.model,
                }
            }
        meta = {"schema_version": "authorship/3.0.0", "base_commit_sha": "", "prompts": {},
                "sessions": sessions}  # fmt: skip
        return "\n".join(body) + "\n---\n" + json.dumps(meta) + "\n"


def add_notes(made: list[tuple[Incident, Evidence]], workdir: Path, seed: int) -> list[Any]:
    """Give PRs notes (from the real repositories under `workdir`) and, per incident with a
    frame on a noted culprit, the truth: (incident, evidence, changes, expected session)."""
    rng = random.Random(seed * 7919)
    notes: dict[str, Notes] = {}
    noted: dict[tuple[str, int], tuple[PrChange, Notes]] = {}
    out = []
    for incident, evidence in made:
        changes = []
        for change in incident.deploy.changes:
            repo = change.pr.repo
            stream = int(repo.rsplit("shop", 1)[-1] or 0)
            book = notes.setdefault(repo, Notes(random.Random(rng.random())))
            key = (repo, change.number)
            if key not in noted and book.decide(change):
                path = workdir / f"stream-{stream:02d}"
                lines = parse_git_ai(book.note(path, stream, change))
                noted[key] = (replace(change, lines=lines), book)
            changes.append(noted[key][0] if key in noted else change)
        culprit = (changes[0].pr.repo, incident.culprits[0])
        if incident.bug is None or culprit not in noted or not evidence.errors:
            continue
        stream = int(culprit[0].rsplit("shop", 1)[-1] or 0)
        head = _git(
            workdir / f"stream-{stream:02d}", "show", f"{incident.deploy.head}:{incident.bug[0]}"
        )
        text = head.splitlines()[incident.bug[1] - 1]
        if _origin(text) != culprit[1]:
            continue  # the frame is on a line another PR wrote (a misleading trace)
        who = noted[culprit][1].writer(culprit[1], text)
        identity = noted[culprit][0].pr.identity
        expected = "human" if who == 2 else f"{identity.session}/{who}"
        out.append((incident, evidence, changes, expected))
    return out


def conversation_top1(cases: Sequence[Any], action_bar: float) -> dict[str, Any]:
    """How often the ranking's line record names the conversation that wrote the frame's line."""
    hits = 0
    for incident, evidence, changes, expected in cases:
        ranking = rank(
            [c.pr for c in changes], action_bar, changes=changes, evidence=evidence,
            sensitive=DEFAULT_HUMAN_GATES,
        )  # fmt: skip
        record = ranking.line_record
        named = None if record is None else (
            "human" if record.authorship == "human" else record.session
        )  # fmt: skip
        hits += named == expected
        del incident
    n = len(cases)
    return {"incidents": n, "hits": hits, "rate": round(hits / n, 4) if n else None}
