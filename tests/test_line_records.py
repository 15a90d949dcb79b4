"""Table tests of the git-ai and Agent Trace parsers on note texts as their writers write them."""

from __future__ import annotations

import json

import pytest

from attribution.line_records import (
    AGENT_TRACE,
    GIT_AI,
    LineRecord,
    parse_agent_trace,
    parse_git_ai,
)

SESSION = "s_1a2b3c4d5e6f70"
HUMAN = "h_0f1e2d3c4b5a69"
LEGACY = "abcdef0123456789"

GIT_AI_META = {
    "schema_version": "authorship/3.0.0",
    "git_ai_version": "1.0.12",
    "base_commit_sha": "9" * 40,
    "prompts": {
        LEGACY: {
            "agent_id": {"tool": "cursor", "id": "c-42", "model": "gpt-5"},
            "human_author": "Ann <ann@example.com>",
            "messages_url": "https://git-ai.example/prompts/c-42",
            "total_additions": 3,
            "total_deletions": 0,
            "accepted_lines": 3,
            "overriden_lines": 0,
        }
    },
    "sessions": {
        SESSION: {
            "agent_id": {"tool": "claude", "id": "conv-7f3a", "model": "claude-opus-4-5-20251101"},
            "human_author": "Ann <ann@example.com>",
            "custom_attributes": {"team": "pay"},
        }
    },
    "humans": {HUMAN: {"author": "Ann <ann@example.com>"}},
    "future_field": [1, 2],
}


def note(attestation: str, meta: object = GIT_AI_META) -> str:
    body = meta if isinstance(meta, str) else json.dumps(meta, indent=2)
    return f"{attestation}---\n{body}\n"


CLAUDE = LineRecord(
    "pay.py", ((10, 20),), "agent", "claude", "claude-opus-4-5-20251101", "conv-7f3a"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            note(f"pay.py\n  {SESSION}::t_00112233445566 10-20\n"), (CLAUDE,), id="session"
        ),
        pytest.param(
            note(f"pay.py\n  {HUMAN} 1-4,9\n"),
            (LineRecord("pay.py", ((1, 4), (9, 9)), "human"),),
            id="known-human",
        ),
        pytest.param(
            note(f'"src/my pay.py"\n  {LEGACY} 3-5\n'),
            (
                LineRecord(
                    "src/my pay.py",
                    ((3, 5),),
                    "agent",
                    "cursor",
                    "gpt-5",
                    "https://git-ai.example/prompts/c-42",
                ),
            ),
            id="quoted-path-legacy-prompt",
        ),
        pytest.param(
            note("pay.py\n  s_ffffffffffffff::t_1 2\n", {"schema_version": "authorship/3.0.0"}),
            (LineRecord("pay.py", ((2, 2),), "agent", session="s_ffffffffffffff"),),
            id="session-without-metadata",
        ),
        pytest.param(
            note(f"pay.py\n  {SESSION} 10-20\n", "{not json"),
            (LineRecord("pay.py", ((10, 20),), "agent", session=SESSION),),
            id="metadata-unreadable",
        ),
        pytest.param(f"pay.py\n  {SESSION} 10-20\n", (), id="no-separator"),
        pytest.param(
            note(f"pay.py\n  {SESSION} 10-20\n", {"schema_version": "whogitit/2"}), (), id="foreign"
        ),
        pytest.param(
            note(f"  {SESSION} 1-2\npay.py\n  {SESSION} x-y,20-10\n  {SESSION}\n"),
            (),
            id="malformed-lines",
        ),
        pytest.param("", (), id="empty"),
    ],
)
def test_git_ai_notes(text: str, expected: tuple[LineRecord, ...]) -> None:
    """A git-ai note's keys become agent, human or nothing; bad pieces are skipped."""
    assert parse_git_ai(text) == expected
    assert all(r.source == GIT_AI for r in parse_git_ai(text))


TRACE = {
    "version": "1.0",  # what the reference hook writes, against the spec's own pattern
    "id": "3f1c7e0a-1111-4222-8333-944455556666",
    "timestamp": "2026-02-06T10:00:00Z",
    "vcs": {"type": "git", "revision": "a" * 40},
    "tool": {"name": "claude-code", "version": "2.1.0"},
    "files": [
        {
            "path": "pay.py",
            "conversations": [
                {
                    "url": "file:///home/ann/.claude/projects/x/t.jsonl",
                    "contributor": {"type": "ai", "model_id": "anthropic/claude-opus-4-5"},
                    "ranges": [
                        {"start_line": 10, "end_line": 20, "content_hash": "murmur3:9f2e8a1b"},
                        {"start_line": 30, "end_line": 31, "contributor": {"type": "human"}},
                    ],
                    "related": [{"type": "session", "url": "https://claude.ai/code/session_01"}],
                }
            ],
        },
        {
            "path": ".shell-history",
            "conversations": [{"ranges": [{"start_line": 1, "end_line": 1}]}],
        },
    ],
    "metadata": {"session_id": "ignored-when-related-given"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            json.dumps(TRACE),
            (
                LineRecord(
                    "pay.py",
                    ((10, 20),),
                    "agent",
                    "claude",
                    "anthropic/claude-opus-4-5",
                    "https://claude.ai/code/session_01",
                    AGENT_TRACE,
                ),
                LineRecord(
                    "pay.py",
                    ((30, 31),),
                    "human",
                    None,
                    "anthropic/claude-opus-4-5",
                    "https://claude.ai/code/session_01",
                    AGENT_TRACE,
                ),
            ),
            id="record",
        ),
        pytest.param(
            "not json\n"
            + json.dumps(
                {
                    "files": [
                        {
                            "path": "a.py",
                            "conversations": [
                                {
                                    "url": "file:///t.jsonl",
                                    "contributor": {"type": "ai"},
                                    "ranges": [
                                        {"start_line": 1, "end_line": 1},
                                        {"start_line": "x"},
                                    ],
                                }
                            ],
                        }
                    ],
                    "metadata": {"dev.cursor": {"conversation_id": "cur-9"}},
                }
            )
            + "\n[1]\n",
            (LineRecord("a.py", ((1, 1),), "agent", None, None, "cur-9", AGENT_TRACE),),
            id="jsonl-with-bad-lines-vendor-metadata",
        ),
        pytest.param(
            json.dumps(
                {
                    "files": [
                        {
                            "path": "b.py",
                            "conversations": [
                                {
                                    "url": "file:///t",
                                    "ranges": [
                                        {"start_line": 5, "end_line": 4},
                                        {"start_line": 2, "end_line": 3},
                                    ],
                                }
                            ],
                        }
                    ]
                }
            ),
            (LineRecord("b.py", ((2, 3),), "unknown", None, None, "file:///t", AGENT_TRACE),),
            id="no-contributor-is-unknown",
        ),
        pytest.param(json.dumps({"files": "nope"}), (), id="files-not-a-list"),
        pytest.param("", (), id="empty"),
    ],
)
def test_agent_trace_records(text: str, expected: tuple[LineRecord, ...]) -> None:
    """Agent Trace ranges keep their contributor, model and session; bad records are skipped."""
    assert parse_agent_trace(text) == expected
