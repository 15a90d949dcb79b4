"""Line-level provenance the repository records: git-ai authorship notes and Agent Trace records.

git-ai (`refs/notes/ai`, schema `authorship/3.0.0`) writes one note per commit: an attestation
section (a file path, then two-space-indented `<key> <ranges>` lines such as
`s_<14hex>::t_<14hex> 1-4,9`), a line `---`, and a JSON object whose `sessions` (and legacy
`prompts`) name each key's tool, conversation id and model, and whose `humans` name the `h_`
keys: lines under an `h_` key are positive human evidence; lines under no key are untracked,
which is not human. Agent Trace records (`refs/notes/agent-trace` or `.agent-trace/*.jsonl`)
are JSON objects, one per edit event in the reference implementation, with `files[]`
`.conversations[]` `.ranges[]`; the session is a `related` link of type `session`, or only in
`metadata`. Both are parsed leniently as their writers really write them: unknown fields are
ignored, a bad record or line is skipped with a log line, and nothing here raises.

The line numbers are positions in the file at the annotated commit; for a PR's landing commit
that is the same frame as the PR's own changed lines, so `attribution.blame` carries them to the
deploy's head the same way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from attribution.diffs import LineRange
from attribution.records import AgentIdentity

log = logging.getLogger(__name__)

GIT_AI = "git-ai note"
AGENT_TRACE = "agent-trace"

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_PSEUDO_FILES = frozenset({".shell-history", ".sessions"})
_TOOL_AGENTS = {"claude": "claude", "claude-code": "claude", "claude_code": "claude"}
MAX_LINE = 10_000_000
"""Line numbers beyond this are a broken record, not a file."""


@dataclass(frozen=True, slots=True)
class LineRecord:
    """Who wrote some lines of one file at the annotated commit, and where that was recorded.

    `authorship` is "agent", "human" (positive evidence only) or "unknown"; `session` is the
    conversation id or URL the record gives."""

    path: str
    ranges: tuple[LineRange, ...]
    authorship: str
    agent: str | None = None
    model: str | None = None
    session: str | None = None
    source: str = GIT_AI

    def holds(self, line: int) -> bool:
        """Whether `line` is one of this record's lines."""
        return any(first <= line <= last for first, last in self.ranges)

    def identity(self) -> AgentIdentity:
        """The record as the provenance shape PR-level markers use, at line grain."""
        return AgentIdentity(
            self.authorship,
            self.agent or self.authorship,
            session=self.session,
            model=self.model,
            source=self.source,
            grain="line",
        )


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _agent_name(tool: str | None) -> str | None:
    return _TOOL_AGENTS.get(tool.lower(), tool.lower()) if tool else None


def parse_ranges(text: str) -> tuple[LineRange, ...]:
    """`1-4,9-10,12` as inclusive ranges; malformed or reversed pieces are skipped."""
    out: list[LineRange] = []
    for piece in text.split(","):
        match = _RANGE.match(piece.strip())
        if not match:
            continue
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if 1 <= first <= last <= MAX_LINE:
            out.append((first, last))
    return tuple(out)


def _attestations(section: str) -> list[tuple[str, str, tuple[LineRange, ...]]]:
    """(path, key, ranges) of a git-ai attestation section."""
    found: list[tuple[str, str, tuple[LineRange, ...]]] = []
    path: str | None = None
    for raw in section.splitlines():
        if not raw.strip():
            continue
        if not raw.startswith((" ", "\t")):
            name = raw.strip()
            if name.startswith('"') and name.endswith('"') and name != '"':
                name = name[1:-1]
            path = name
            continue
        key, _, ranges = raw.strip().partition(" ")
        parsed = parse_ranges(ranges)
        if path is None or not key or not parsed:
            log.info("git-ai note: attestation line skipped: %r", raw[:80])
            continue
        found.append((path, key, parsed))
    return found


def _session_info(key: str, meta: Mapping[str, object]) -> Mapping[str, object] | None:
    """The metadata entry for an attestation key: `sessions[s_…]` or legacy `prompts[hex]`."""
    session_key = key.split("::", 1)[0]
    for table in ("sessions", "prompts"):
        entries = meta.get(table)
        if isinstance(entries, dict):
            entry = entries.get(session_key, entries.get(key))
            if isinstance(entry, dict):
                return entry
    return None


def _git_ai_record(
    path: str, key: str, ranges: tuple[LineRange, ...], meta: Mapping[str, object]
) -> LineRecord:
    if key.startswith("h_"):
        return LineRecord(path, ranges, "human", source=GIT_AI)
    info = _session_info(key, meta)
    agent_id = info.get("agent_id") if info else None
    if not isinstance(agent_id, dict):
        # A session key with no metadata still says an agent session wrote the lines.
        return LineRecord(path, ranges, "agent", session=key.split("::", 1)[0], source=GIT_AI)
    session = _text(agent_id.get("id")) or key.split("::", 1)[0]
    if info is not None:
        session = _text(info.get("messages_url")) or session
    return LineRecord(
        path,
        ranges,
        "agent",
        agent=_agent_name(_text(agent_id.get("tool"))),
        model=_text(agent_id.get("model")),
        session=session,
        source=GIT_AI,
    )


def parse_git_ai(note: str) -> tuple[LineRecord, ...]:
    """The line records of one git-ai authorship note; () for a note that cannot be read."""
    lines = note.splitlines()
    try:
        cut = next(i for i, line in enumerate(lines) if line.strip() == "---")
    except StopIteration:
        log.info("git-ai note skipped: no `---` separator")
        return ()
    try:
        meta = json.loads("\n".join(lines[cut + 1 :]))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        log.info("git-ai note: metadata unreadable; lines kept without sessions")
        meta = {}
    schema = meta.get("schema_version")
    if isinstance(schema, str) and not schema.startswith("authorship/"):
        log.info("git-ai note skipped: schema %r", schema[:40])
        return ()
    return tuple(
        _git_ai_record(path, key, ranges, meta)
        for path, key, ranges in _attestations("\n".join(lines[:cut]))
    )


def _contributor(value: object) -> tuple[str, str | None] | None:
    if not isinstance(value, dict):
        return None
    kind = {"ai": "agent", "human": "human"}.get(str(value.get("type", "")).lower(), "unknown")
    return kind, _text(value.get("model_id"))


def _trace_session(conversation: Mapping[str, object], meta: Mapping[str, object]) -> str | None:
    related = conversation.get("related")
    for link in related if isinstance(related, list) else ():
        if isinstance(link, dict) and str(link.get("type", "")).lower() == "session":
            url = _text(link.get("url"))
            if url:
                return url
    for key in ("session_id", "conversation_id"):
        found = _text(meta.get(key))
        if found:
            return found
    for vendor in meta.values():  # reverse-domain vendor blocks: {"dev.cursor": {...}}
        if isinstance(vendor, dict):
            for key in ("session_id", "conversation_id"):
                found = _text(vendor.get(key))
                if found:
                    return found
    return _text(conversation.get("url"))


def _trace_ranges(raw: object) -> list[tuple[LineRange, object]]:
    out: list[tuple[LineRange, object]] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        first, last = item.get("start_line"), item.get("end_line", item.get("start_line"))
        if isinstance(first, int) and isinstance(last, int) and 1 <= first <= last <= MAX_LINE:
            out.append(((first, last), item.get("contributor")))
    return out


def _trace_record(record: Mapping[str, object]) -> list[LineRecord]:
    tool = record.get("tool")
    agent = _agent_name(_text(tool.get("name")) if isinstance(tool, dict) else None)
    raw_meta = record.get("metadata")
    meta: Mapping[str, object] = raw_meta if isinstance(raw_meta, dict) else {}
    files = record.get("files")
    out: list[LineRecord] = []
    for entry in files if isinstance(files, list) else ():
        path = _text(entry.get("path")) if isinstance(entry, dict) else None
        if path is None or path in _PSEUDO_FILES or not isinstance(entry, dict):
            continue
        conversations = entry.get("conversations")
        for conv in conversations if isinstance(conversations, list) else ():
            if not isinstance(conv, dict):
                continue
            default = _contributor(conv.get("contributor")) or ("unknown", None)
            session = _trace_session(conv, meta)
            for line_range, override in _trace_ranges(conv.get("ranges")):
                kind, model = _contributor(override) or default
                model = model or default[1]
                name = agent if kind == "agent" else None
                out.append(LineRecord(path, (line_range,), kind, name, model, session, AGENT_TRACE))
    return out


def parse_agent_trace(text: str) -> tuple[LineRecord, ...]:
    """The line records of Agent Trace text: one JSON record, a JSON list of them, or JSON
    Lines (`traces.jsonl`); records that are not JSON objects are skipped."""
    try:
        whole = json.loads(text)
        items: list[object] = whole if isinstance(whole, list) else [whole]
    except ValueError:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError:
                log.info("agent-trace line %d skipped: not JSON", n)
    out: list[LineRecord] = []
    for item in items:
        if isinstance(item, dict):
            out.extend(_trace_record(item))
        else:
            log.info("agent-trace record skipped: not an object")
    return tuple(out)


def at_line(records: Iterable[LineRecord], path: str, line: int) -> LineRecord | None:
    """The record of `path` holding `line`; the last one written wins (later edit events)."""
    found = None
    for record in records:
        if record.path == path and record.holds(line):
            found = record
    return found


def for_path(records: Sequence[LineRecord], path: str) -> list[LineRecord]:
    """The records of one file."""
    return [r for r in records if r.path == path]
