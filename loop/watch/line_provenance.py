"""Reading a deploy's line records: the git-ai and Agent Trace notes of each PR's landing commit,
and the `.agent-trace/` file at it, through the forge's ordinary reads.

A git-ai note (`refs/notes/ai`) or an Agent Trace record (`refs/notes/agent-trace`, or
`.agent-trace/traces.jsonl` at the revision) numbers lines as they stand at the annotated commit;
for a PR's landing commit that is the frame of the PR's own changed lines, so
`attribution.blame.at_head` carries both to the deploy's head together. Git-ai's CI action
writes the squash commit's note after a squash merge; without it the notes stay on branch
commits, and a PR simply has no line records. Failing to read costs the records, never the
incident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from attribution.evidence import PrChange
from attribution.line_records import LineRecord, parse_agent_trace, parse_git_ai
from rollback.forge import ForgeError, ForgeReads

log = logging.getLogger(__name__)

NOTE_REFS: tuple[tuple[str, Callable[[str], tuple[LineRecord, ...]]], ...] = (
    ("ai", parse_git_ai),
    ("agent-trace", parse_agent_trace),
)
TRACE_FILE = ".agent-trace/traces.jsonl"


async def _notes(forge: ForgeReads, repo: str, shas: Sequence[str]) -> dict[str, list[LineRecord]]:
    found: dict[str, list[LineRecord]] = {sha: [] for sha in shas}
    for ref, parse in NOTE_REFS:
        try:
            notes: Mapping[str, str] = await forge.read_notes(repo, ref, shas)
        except ForgeError as exc:
            log.warning("notes %s of %s unreadable: %s", ref, repo, exc)
            continue
        for sha, text in notes.items():
            if sha in found:
                found[sha].extend(parse(text))
    return found


async def _trace_file(forge: ForgeReads, repo: str, sha: str) -> tuple[LineRecord, ...]:
    try:
        text = (await forge.read_files(repo, sha, [TRACE_FILE])).get(TRACE_FILE)
    except ForgeError as exc:
        log.warning("%s at %s unreadable: %s", TRACE_FILE, sha[:12], exc)
        return ()
    return parse_agent_trace(text) if text else ()


async def with_line_records(
    forge: ForgeReads, repo: str, changes: Sequence[PrChange]
) -> list[PrChange]:
    """`changes` with the line records of each PR's landing commit, kept to the files the PR
    changed (all of them when its files are unknown)."""
    shas = [c.pr.merge_sha for c in changes if c.pr.merge_sha]
    if not shas:
        return list(changes)
    notes = await _notes(forge, repo, shas)
    out = []
    for change in changes:
        records = [
            *notes.get(change.pr.merge_sha, ()),
            *await _trace_file(forge, repo, change.pr.merge_sha),
        ]
        paths = {f.path for f in change.files}
        kept = tuple(r for r in records if not paths or r.path in paths)
        out.append(replace(change, lines=kept) if kept else change)
    return out
