"""Change sets resolved through `GitHubForge` against FakeGitHub, with no PR on record: GitHub's
"pull requests associated with a commit" finds them, and their files come with line ranges."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from attribution.records import Deploy
from attribution.store import Store
from loop.clock import ManualClock
from loop.config import settings_from
from loop.watch.change_range import resolve
from loop.watch.deps import WatchDeps
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.fakes.github import FakeGitHub

TOKEN = "ghp_FakeToken0123456789abcdef"
START = 1_790_000_000.0


async def _no_revert_waits(commits: object) -> None:
    """No incident waits for a revert to be deployed here."""


@pytest.mark.parametrize(
    ("paths", "found"), [([], ["squashed", "rebased"]), (["svc/b/**"], ["rebased"])]
)
async def test_squash_and_rebase_merges_in_one_range_are_both_found(
    tmp_path: Path, aiohttp_server: AiohttpServer, paths: list[str], found: list[str]
) -> None:
    """A squash-merged and a rebase-merged PR, neither on record, are both in the change set;
    in a monorepo only those touching the service's paths are kept."""
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("/"))
    base = fake.head_sha("main")
    body = "Agent-Session: s-1\nAgent-Name: codex\n"
    squashed = fake.merge_pr("squashed", body, {"svc/a/pay.py": "a\nb\nc\n"}, method="squash")
    rebased = fake.merge_pr("rebased", "", {"svc/b/cart.py": "x\ny\n"}, method="rebase")
    config = {
        "services": {
            "shop": {
                "repo": "acme/app",
                "paths": paths,
                "slis": {"e": {"bad": "sum(b)", "total": "sum(t)"}},
            }
        }
    }
    settings = settings_from(config, {}, "test")
    service = settings.services["shop"]
    store = await Store.open(tmp_path / "s.duckdb")
    try:
        async with GitHubForge(fake.url, TOKEN, timeout=5.0) as forge:
            deps = WatchDeps(
                settings,
                store,
                SimulatedSource(),
                forge,
                ConsoleNotifier(io.StringIO()),
                ManualClock(START),
            )
            deploy = Deploy(
                "d1",
                "shop",
                "production",
                fake.head_sha("main"),
                START,
                "cd",
                "acme/app",
                previous_sha=base,
            )
            resolved = await resolve(deps, deploy, service, _no_revert_waits)
        prs, note = resolved.prs or (), resolved.note
        titles = {squashed.number: "squashed", rebased.number: "rebased"}
        assert [titles[p.number] for p in prs] == found
        assert prs[0].merge_sha in (squashed.merge_sha, rebased.merge_sha)
        if not paths:
            assert prs[0].identity.name == "codex"
            changes = await store.evidence.changes(prs)
            assert [(f.path, f.ranges) for c in changes for f in c.files] == [
                ("svc/a/pay.py", ((1, 3),)),
                ("svc/b/cart.py", ((1, 2),)),
            ]
        else:
            assert "1 PR(s) outside the service's paths" in note
        assert any("/commits/" in r and r.endswith("/pulls") for r in fake.requests)
    finally:
        await store.close()
