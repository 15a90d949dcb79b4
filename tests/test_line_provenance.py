"""Line-level provenance end to end: a git-ai note in a real repository, read through
`GitHubForge` against FakeGitHub (notes are an ordinary ref there) and through `LocalGitForge`,
carried through a later PR to the deploy's head, names who wrote the line a Sentry frame is on."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from pytest_aiohttp import AiohttpServer

from attribution.evidence import ErrorEvent, Frame, PrChange
from attribution.line_records import GIT_AI
from attribution.records import Deploy
from attribution.store import Store
from attribution.suspects import Ranking
from loop.clock import ManualClock
from loop.config import settings_from
from loop.watch.attribute import file_change, rank_incident
from loop.watch.change_range import resolve
from loop.watch.deps import WatchDeps
from loop.watch.line_provenance import with_line_records
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from rollback.localgit import LocalGitForge
from tests.fakes.github import FakeGitHub
from tests.test_suspects import pr

TOKEN = "ghp_FakeToken0123456789abcdef"
START = 1_790_000_000.0
SESSION, HUMAN = "s_1a2b3c4d5e6f70", "h_0f1e2d3c4b5a69"
MODEL = "claude-opus-4-5-20251101"


def _git_ai_note() -> str:
    """A note as git-ai writes it for a PR where a person wrote lines 1-9 and 21-30 of
    `pay.py` and a Claude Code session wrote lines 10-20."""
    meta = {
        "schema_version": "authorship/3.0.0",
        "git_ai_version": "1.0.12",
        "base_commit_sha": "0" * 40,
        "prompts": {},
        "sessions": {
            SESSION: {
                "agent_id": {"tool": "claude", "id": "conv-7f3a", "model": MODEL},
                "human_author": "Ann <ann@example.com>",
            }
        },
        "humans": {HUMAN: {"author": "Ann <ann@example.com>"}},
    }
    attestation = f"pay.py\n  {SESSION}::t_00112233445566 10-20\n  {HUMAN} 1-9,21-30\n"
    return f"{attestation}---\n{json.dumps(meta, indent=2)}\n"


def _repo(fake: FakeGitHub) -> tuple[str, int, int]:
    """The base, a mixed PR with its git-ai note on the squash commit (as git-ai's CI action
    leaves it), then a person's PR inserting three lines at the top of `pay.py`."""
    base = fake.head_sha("main")
    code = "".join(f"line_{n} = {n}\n" for n in range(1, 31))
    mixed = fake.merge_pr("retry payments", "", {"pay.py": code}, method="squash")
    fake.git("notes", "--ref=ai", "add", "-F", "-", fake.head_sha("main"), stdin=_git_ai_note())
    later = fake.merge_pr("imports", "", {"pay.py": "import a\nimport b\nimport c\n" + code})
    return base, mixed.number, later.number


def _frame_at(line: int) -> ErrorEvent:
    frames = (Frame("/app/handler.py", 3, "handle"), Frame("/app/pay.py", line, "charge"))
    return ErrorEvent("e1", "ZeroDivisionError", START + 60, frames)


async def _rank(tmp_path: Path, fake: FakeGitHub, base: str, line: int) -> Ranking:
    config = {"services": {"shop": {"repo": "acme/app", "slis": {"e": {"bad": "b", "total": "t"}}}}}
    settings = settings_from(config, {}, "test")
    service = settings.services["shop"]
    store = await Store.open(tmp_path / "s.duckdb")
    try:
        async with GitHubForge(fake.url, TOKEN, timeout=5.0) as forge:
            deps = WatchDeps(
                settings, store, SimulatedSource(), forge, ConsoleNotifier(io.StringIO()),
                ManualClock(START),
            )  # fmt: skip
            deploy = Deploy(
                "d1", "shop", "production", fake.head_sha("main"), START, "cd", "acme/app",
                previous_sha=base,
            )  # fmt: skip
            resolved = await resolve(deps, deploy, service, _no_revert_waits)
            await store.evidence.record_errors("shop", [_frame_at(line)])
            return await rank_incident(
                deps, deploy, service, "e", resolved.prs or (), now=START + 600
            )
    finally:
        await store.close()


async def _no_revert_waits(commits: object) -> None:
    """No incident waits for a revert to be deployed here."""


async def test_a_frame_on_a_moved_agent_line_names_its_session_and_model(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """Line 15 of the mixed PR is line 18 after the later PR: the frame there names the Claude
    Code session and model of the git-ai note, at line grain."""
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("/"))
    base, mixed, _ = _repo(fake)
    ranking = await _rank(tmp_path, fake, base, 18)
    assert ranking.suspects[0].number == mixed
    record = ranking.line_record
    assert record is not None
    assert (record.authorship, record.agent, record.session, record.model) == (
        "agent", "claude", "conv-7f3a", MODEL,
    )  # fmt: skip
    assert record.source == GIT_AI
    identity = record.identity()
    assert (identity.authorship, identity.agent, identity.grain) == ("agent", "claude", "line")
    assert (identity.session, identity.model, identity.source) == ("conv-7f3a", MODEL, GIT_AI)
    assert record.path == "pay.py"
    assert record.ranges == ((13, 23),)
    assert f"by claude in session conv-7f3a with {MODEL} (per git-ai note" in ranking.reason
    assert any(r.endswith("/git/ref/notes/ai") for r in fake.requests)


async def test_a_frame_on_a_human_line_of_the_same_pr_names_a_person(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """Line 5 of the mixed PR (an `h_` line, now line 8) is a person's, on positive evidence."""
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("/"))
    base, mixed, _ = _repo(fake)
    ranking = await _rank(tmp_path, fake, base, 8)
    assert ranking.suspects[0].number == mixed
    assert ranking.line_record is not None
    assert ranking.line_record.authorship == "human"
    assert "written by a person (per git-ai note, line grain)" in ranking.reason


async def test_without_notes_no_line_is_named(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """A repository with no `refs/notes/ai` (GitHub answers 404) gives no line record."""
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("/"))
    base, _, _ = _repo(fake)
    fake.git("update-ref", "-d", "refs/notes/ai")
    ranking = await _rank(tmp_path, fake, base, 18)
    assert ranking.line_record is None
    assert "per git-ai" not in ranking.reason


async def test_local_git_reads_the_same_notes(tmp_path: Path) -> None:
    """`LocalGitForge` reads the note with `git notes --ref=ai show`, and a commit without one
    is left out."""
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    _, mixed, later = _repo(fake)
    forge = LocalGitForge(fake.workdir)
    shas = {n: str(fake.pull(n).merge_sha) for n in (mixed, later)}
    notes = await forge.read_notes("acme/app", "ai", list(shas.values()))
    assert list(notes) == [shas[mixed]]
    files = [file_change(f) for f in await forge.pull_files("acme/app", mixed)]
    change = PrChange(replace(pr(mixed), merge_sha=shas[mixed]), tuple(files))
    [found] = await with_line_records(forge, "acme/app", [change])
    assert [(r.authorship, r.ranges) for r in found.lines] == [
        ("agent", ((10, 20),)),
        ("human", ((1, 9), (21, 30))),
    ]
