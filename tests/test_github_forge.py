"""GitHubForge against FakeGitHub: reverts, idempotency, retries, errors, commit ranges."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from githubkit.webhooks import parse_obj
from pytest_aiohttp import AiohttpServer

from loop.watch.retry import INLINE_WAIT
from rollback import github as github_module
from rollback.forge import (
    ChangeState,
    ForgeError,
    ForgeUnavailable,
    IssueRequest,
    PullRef,
    RevertConflict,
    RevertRequest,
)
from rollback.github import GitHubForge, marker
from rollback.github_client import ref_path
from tests.fakes.github import FakeGitHub, FakePR

TOKEN = "ghp_FakeToken0123456789abcdef"


class Sleeps:
    """The forge's injected sleep: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def github(tmp_path: Path, aiohttp_server: AiohttpServer) -> FakeGitHub:
    fake = FakeGitHub(tmp_path / "repo", token=TOKEN)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/"))
    return fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def forge(github: FakeGitHub, sleeps: Sleeps) -> AsyncIterator[GitHubForge]:
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=sleeps) as forge:
        yield forge


def request_for(*prs: FakePR, key: str = "inc-1") -> RevertRequest:
    refs = tuple(PullRef(pr.number, pr.merge_sha or "", pr.title) for pr in prs)
    return RevertRequest(
        repo="acme/app",
        key=key,
        base_branch="main",
        prs=refs,
        title=f"Revert {', '.join(f'#{pr.number}' for pr in prs)}",
        body="Error rate rose after this deploy.",
        labels=("rearguard", "revert"),
    )


def merge_cache_change(github: FakeGitHub, method: str = "merge") -> FakePR:
    github.commit({"app/config.py": "CACHE = False\n"}, "Add config")
    return github.merge_pr(
        "Turn the cache on",
        files={"app/config.py": "CACHE = True\n", "app/cache.py": "store = {}\n"},
        method="squash" if method == "squash" else "merge",
    )


async def test_single_pr_revert_opens_one_graphql_pr_that_undoes_it(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """One PR is reverted by revertPullRequest; its branch restores and deletes the files."""
    pr = merge_cache_change(github)
    result = await forge.open_revert(request_for(pr))

    [opened] = github.created_pulls()
    assert (result.number, result.reused) == (opened.number, False)
    assert result.branch == opened.head_ref == f"revert-{pr.number}-{pr.head_ref}"
    assert result.head_sha == github.head_sha(result.branch)
    assert "POST /graphql" in github.requests
    assert github.read_file("app/config.py", result.branch) == "CACHE = False\n"
    assert github.read_file("app/cache.py", result.branch) is None
    assert github.read_file("app/config.py") == "CACHE = True\n"  # main is never pushed to
    assert marker("inc-1") in opened.body
    assert opened.labels == ["rearguard", "revert"]


async def test_several_prs_revert_through_git_data(github: FakeGitHub, forge: GitHubForge) -> None:
    """Two PRs touching the same file are undone in one commit on the key's branch."""
    first = merge_cache_change(github)
    second = github.merge_pr(
        "Tune the cache",
        files={"app/config.py": "CACHE = True\nSIZE = 10\n", "docs/cache.md": "# Cache\n"},
        method="squash",
    )
    main_before = github.head_sha()
    result = await forge.open_revert(request_for(first, second))

    [opened] = github.created_pulls()
    assert (result.number, result.branch) == (opened.number, "rearguard/inc-1")
    assert not any("graphql" in line for line in github.requests)
    assert github.read_file("app/config.py", result.branch) == "CACHE = False\n"
    assert github.read_file("app/cache.py", result.branch) is None
    assert github.read_file("docs/cache.md", result.branch) is None
    assert github.git("rev-parse", f"{result.branch}^").strip() == main_before
    assert opened.labels == ["rearguard", "revert"]


async def test_graphql_refusal_falls_back_to_git_data(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """When revertPullRequest fails (e.g. merged outside GitHub), the Git Data path opens it."""
    pr = merge_cache_change(github, method="squash")
    github.refuse_graphql_reverts()
    result = await forge.open_revert(request_for(pr))

    assert [p.number for p in github.created_pulls()] == [result.number]
    assert result.branch == "rearguard/inc-1"
    assert github.read_file("app/config.py", result.branch) == "CACHE = False\n"


@pytest.mark.parametrize("graphql", [True, False], ids=["graphql", "git-data"])
async def test_same_key_reuses_the_open_revert(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps, graphql: bool
) -> None:
    """Asking again with the same key, even from a new forge, returns the PR already open."""
    pr = merge_cache_change(github)
    if not graphql:
        github.refuse_graphql_reverts()
    first = await forge.open_revert(request_for(pr))
    async with GitHubForge(github.url, TOKEN, sleep=sleeps) as restarted:
        again = await restarted.open_revert(request_for(pr))

    assert again.reused
    assert (again.number, again.branch, again.url) == (first.number, first.branch, first.url)
    assert len(github.created_pulls()) == 1


async def test_lost_answer_to_the_revert_does_not_open_a_second_pr(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps
) -> None:
    """GitHub made the PR but the answer was a 502: the retry finds it by its marker."""
    pr = merge_cache_change(github)
    github.fail_next(1, 502, match="POST /graphql", after=True)
    result = await forge.open_revert(request_for(pr))

    [opened] = github.created_pulls()
    assert result.number == opened.number
    assert sleeps.waits == [0.5]


async def test_leftover_branch_is_moved_and_a_new_pr_opened(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """A branch an interrupted attempt left without a PR is moved rather than fatal."""
    pr = merge_cache_change(github)
    github.refuse_graphql_reverts()
    github.git("branch", "rearguard/inc-1", "main")
    opened = await forge.open_revert(request_for(pr))

    assert not opened.reused
    assert [p.number for p in github.open_pulls()] == [opened.number]
    assert github.read_file("app/config.py", opened.branch) == "CACHE = False\n"


@pytest.mark.parametrize(
    ("person", "state"), [("merges", ChangeState.MERGED), ("closes", ChangeState.CLOSED)]
)
@pytest.mark.parametrize("graphql", [True, False], ids=["graphql", "git-data"])
async def test_same_key_finds_the_revert_a_person_merged_or_closed(
    github: FakeGitHub, forge: GitHubForge, person: str, state: ChangeState, graphql: bool
) -> None:
    """The revert PR merged or closed unmerged since: asking again returns it as it is now and
    opens nothing (what a closed one means is the caller's to decide)."""
    pr = merge_cache_change(github)
    if not graphql:
        github.refuse_graphql_reverts()
    first = await forge.open_revert(request_for(pr))
    assert first.number is not None
    if person == "merges":
        github.merge_branch(github.pull(first.number))
    else:
        github.pull(first.number).state = "closed"
    again = await forge.open_revert(request_for(pr))

    assert (again.reused, again.state, again.number) == (True, state, first.number)
    assert len(github.created_pulls()) == 1


async def test_revert_lookup_reads_no_pr_older_than_the_one_reverted(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """However many PRs the repository had before the culprit, looking for its revert reads one
    page: a revert is newer than what it reverts."""
    for n in range(1, 251):
        github.new_pr(n, f"Old change {n}", "", author="dev", head_ref=f"old-{n}",
                      head_sha=github.head_sha()).state = "closed"  # fmt: skip
    pr = merge_cache_change(github)
    await forge.open_revert(request_for(pr))
    github.requests.clear()
    again = await forge.open_revert(request_for(pr))

    assert again.reused
    assert github.requests.count("GET /repos/acme/app/pulls") == 1


async def test_conflicting_later_commit_refuses_and_opens_nothing(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """A later commit on main changed the same file: RevertConflict names it, no PR, no branch."""
    pr = merge_cache_change(github)
    hotfix = github.commit({"app/config.py": "CACHE = True\nTTL = 5\n"}, "Hotfix cache TTL")

    with pytest.raises(RevertConflict) as caught:
        await forge.open_revert(request_for(pr))

    message = str(caught.value)
    assert "app/config.py" in message
    assert hotfix[:10] in message
    assert "Hotfix cache TTL" in message
    assert github.created_pulls() == []
    assert github.resolve("refs/heads/rearguard/inc-1") is None


async def test_two_502s_then_success_opens_one_pr(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps
) -> None:
    """Transient 5xx answers are retried with growing backoff."""
    pr = merge_cache_change(github)
    github.fail_next(2, 502)
    result = await forge.open_revert(request_for(pr))

    assert [p.number for p in github.created_pulls()] == [result.number]
    assert sleeps.waits == [0.5, 1.0]


@pytest.mark.parametrize("secondary", [True, False], ids=["secondary", "primary"])
async def test_rate_limit_waits_retry_after(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps, secondary: bool
) -> None:
    """A rate limit under the cap is waited out, for the time GitHub asks."""
    base = github.head_sha()
    pr = github.merge_pr("Change", method="squash")
    github.rate_limit_next(7, secondary=secondary)

    commits = await forge.commits_between("acme/app", base, github.head_sha())

    assert [c.sha for c in commits] == [pr.merge_sha]
    [wait] = sleeps.waits
    assert 5.0 <= wait <= 7.0  # the primary limit's reset time is in whole seconds


async def test_rate_limit_beyond_cap_fails_at_once(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps
) -> None:
    """Asked to wait longer than max_retry_after, the forge gives up without sleeping."""
    github.rate_limit_next(3600)
    with pytest.raises(ForgeUnavailable, match="rate limited"):
        await forge.commits_between("acme/app", "main", "main")
    assert sleeps.waits == []
    assert len(github.requests) == 1


@pytest.mark.parametrize("status", [429, 403])
async def test_secondary_limit_naming_no_wait_is_a_minute_for_the_loop(
    github: FakeGitHub, sleeps: Sleeps, status: int
) -> None:
    """A 429, or a 403 saying "secondary rate limit", with no retry-after: ForgeUnavailable
    asking for at least a minute, handed to the loop at once (no inline sleep)."""
    github.rate_limit_next(None, status=status)
    forge = GitHubForge(github.url, TOKEN, max_retry_after=INLINE_WAIT, sleep=sleeps)
    with pytest.raises(ForgeUnavailable, match="rate limited for 60s") as caught:
        async with forge:
            await forge.commits_between("acme/app", "main", "main")
    assert caught.value.retry_after == 60.0
    assert sleeps.waits == []
    assert len(github.requests) == 1


async def test_repeated_secondary_limits_wait_longer_each_time(
    github: FakeGitHub, sleeps: Sleeps
) -> None:
    """Allowed to wait inline, a forge waits a minute, then two, as GitHub asks on repeats."""
    github.rate_limit_next(None, status=429, count=2)
    async with GitHubForge(github.url, TOKEN, max_retry_after=300, sleep=sleeps) as forge:
        await forge.commits_between("acme/app", "main", "main")
    assert sleeps.waits == [60.0, 120.0]


async def test_forbidden_without_a_rate_limit_is_final(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps
) -> None:
    """A 403 that is not a rate limit (a token without the permission) is not retried."""
    github.fail_next(1, 403)
    with pytest.raises(ForgeError, match="HTTP 403") as caught:
        await forge.commits_between("acme/app", "main", "main")
    assert not isinstance(caught.value, ForgeUnavailable)
    assert (sleeps.waits, len(github.requests)) == ([], 1)


async def test_outage_for_the_whole_budget_is_unavailable_without_the_token(
    github: FakeGitHub, forge: GitHubForge, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    """Four 503s: ForgeUnavailable after four attempts; neither message nor log has the token."""
    pr = merge_cache_change(github)
    github.fail_next(10, 503)
    with caplog.at_level(logging.DEBUG), pytest.raises(ForgeUnavailable) as caught:
        await forge.open_revert(request_for(pr))

    assert "HTTP 503" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in caplog.text
    assert len(github.requests) == 4
    assert sleeps.waits == [0.5, 1.0, 2.0]
    assert github.created_pulls() == []


async def test_timeouts_spend_the_budget(github: FakeGitHub, sleeps: Sleeps) -> None:
    """A GitHub slower than the timeout is ForgeUnavailable, not a hang."""
    github.delay(1.0)
    async with GitHubForge(github.url, TOKEN, timeout=0.1, max_attempts=2, sleep=sleeps) as forge:
        with pytest.raises(ForgeUnavailable, match="timed out after 2 attempts"):
            await forge.commits_between("acme/app", "main", "main")
    assert sleeps.waits == [0.5]


async def test_bad_token_is_a_forge_error_and_not_retried(
    github: FakeGitHub, sleeps: Sleeps
) -> None:
    """401 is not transient: a plain ForgeError at once, without the token in it."""
    bad = "ghp_WrongToken9876543210"
    async with GitHubForge(github.url, bad, sleep=sleeps) as forge:
        with pytest.raises(ForgeError, match="401") as caught:
            await forge.commits_between("acme/app", "main", "main")
    assert not isinstance(caught.value, ForgeUnavailable)
    assert bad not in str(caught.value)
    assert len(github.requests) == 1
    assert sleeps.waits == []


async def test_commits_between_lists_every_merge_method_oldest_first(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """Merge (branch commit, then merge commit), squash and rebase merges, in order."""
    base = github.head_sha()
    merged = github.merge_pr("Merged", method="merge")
    squashed = github.merge_pr("Squashed", method="squash")
    rebased = github.merge_pr("Rebased", method="rebase")

    commits = await forge.commits_between("acme/app", base, github.head_sha())

    shas = [c.sha for c in commits]
    assert shas == [merged.head_sha, merged.merge_sha, squashed.merge_sha, rebased.merge_sha]
    assert commits[1].parents == (base, merged.head_sha)
    assert commits[2].message.startswith(f"Squashed (#{squashed.number})")
    assert rebased.merge_sha != rebased.head_sha  # GitHub rewrites rebased commits


async def test_commits_between_follows_compare_pages(
    github: FakeGitHub, forge: GitHubForge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranges longer than a page are read page by page, still oldest first."""
    monkeypatch.setattr(github_module, "PER_PAGE", 3)
    base = github.head_sha()
    pushed = [github.commit({"n.txt": f"{n}\n"}, f"Step {n}") for n in range(7)]

    commits = await forge.commits_between("acme/app", base, github.head_sha())

    assert [c.sha for c in commits] == pushed
    assert sum("/compare/" in line for line in github.requests) == 3


async def test_fake_serves_itself_without_aiohttp_server(tmp_path: Path) -> None:
    """`async with FakeGitHub(...)` starts and stops its own loopback server."""
    async with FakeGitHub(tmp_path / "own", token=TOKEN) as fake:
        base = fake.head_sha()
        pr = fake.merge_pr("Change", method="rebase")
        async with GitHubForge(fake.url, TOKEN) as forge:
            commits = await forge.commits_between("acme/app", base, "main")
    assert [c.sha for c in commits] == [pr.merge_sha]


async def test_unknown_repository_is_a_forge_error(forge: GitHubForge) -> None:
    """A 404 is not retried and says which call failed."""
    with pytest.raises(ForgeError, match="HTTP 404") as caught:
        await forge.commits_between("acme/other", "main", "main")
    assert not isinstance(caught.value, ForgeUnavailable)


def test_webhook_payloads_parse_as_github_events(github: FakeGitHub) -> None:
    """The fake's webhook payloads pass githubkit's webhook models with the PR's values."""
    pr = github.merge_pr("Ship it", "Body", labels=("agent",), method="squash")
    payload = github.pull_request_closed_webhook(pr.number)
    closed = parse_obj("pull_request", payload)
    status = parse_obj("deployment_status", github.deployment_status_webhook(pr.merge_sha or ""))

    # githubkit's 2026-03-10 models drop merge_commit_sha: only the raw JSON carries it.
    assert payload["pull_request"]["merge_commit_sha"] == pr.merge_sha
    assert closed.action == "closed"
    assert closed.pull_request.merged is True
    assert closed.pull_request.head.sha == pr.head_sha
    assert [label.name for label in closed.pull_request.labels] == ["agent"]
    assert status.action == "created"
    assert (status.deployment.sha, status.deployment_status.state) == (pr.merge_sha, "success")


async def test_same_key_finds_the_open_bug_issue_and_never_a_pr(
    github: FakeGitHub, forge: GitHubForge
) -> None:
    """Asked twice for one key's issue, the forge returns the issue opened first (GitHub lists it
    without a `pull_request` key), not a PR carrying the same marker (listed with one)."""
    request = IssueRequest(repo="acme/app", key="bug-inc-1", title="Regression from #1",
                           body="What broke.", labels=("rearguard", "bug"))  # fmt: skip
    decoy = github.new_pr(github.next_number(), "Decoy", f"Quoted: {marker(request.key)}",
                          author="dev", head_ref="decoy", head_sha=github.head_sha())  # fmt: skip
    decoy.labels = ["rearguard"]
    first = await forge.open_issue(request)
    again = await forge.open_issue(request)

    assert (first.reused, again.reused, again.number) == (False, True, first.number)
    assert [i.number for i in github.issues] == [first.number]


HOSTILE = ["main?per_page=1", "x#../../pulls", "..", "../../../../user", "a/b", "v1%2F..%2F"]
"""Shas and refs as a CD hook or a webhook might carry them: each would change the path asked
if it went into the URL unquoted (a query, a fragment, a step up, another segment)."""


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_a_sha_from_outside_stays_one_segment_of_the_path_asked(
    github: FakeGitHub, forge: GitHubForge, hostile: str
) -> None:
    """A deploy's sha (or a merge commit from a webhook) is one path segment of the endpoint
    meant, whatever it holds: GitHub is asked for exactly that commit, and says it has none."""
    calls: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: forge.commits_between("acme/app", "main", hostile), "compare/main..."),
        (lambda: forge.pulls_for_commit("acme/app", hostile), "commits/"),
        (lambda: forge.read_files("acme/app", hostile, ["README.md"]), "git/commits/"),
    ]
    for call, route in calls:
        github.raw_requests.clear()
        with pytest.raises(ForgeError):
            await call()
        (line,) = github.raw_requests
        method, raw = line.split(" ", 1)
        path, query = urlsplit(raw).path, parse_qs(urlsplit(raw).query)
        asked = path.removeprefix(f"/repos/acme/app/{route}").removesuffix("/pulls")
        assert method == "GET"
        assert path.startswith(f"/repos/acme/app/{route}"), raw
        assert "/" not in asked, raw  # one segment: no step up, no other endpoint
        assert set(query) <= {"page", "per_page"}, raw  # no query smuggled in
        assert unquote(asked) == hostile


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        ("heads/release/1.2", "heads/release/1.2"),
        ("heads/../../pulls", "heads/%2E%2E/%2E%2E/pulls"),
        ("heads/a?b#c", "heads/a%3Fb%23c"),
    ],
)
def test_a_ref_keeps_its_slashes_and_nothing_else(ref: str, path: str) -> None:
    """A ref's segments are escaped one by one (`..` too); its slashes stay, as GitHub takes."""
    assert ref_path(ref) == path


@pytest.mark.parametrize("repo", ["acme/..", "../app", "acme/app?x=1", "acme/app#x", "acme/a/b"])
async def test_a_repository_name_that_is_no_github_name_is_refused(
    github: FakeGitHub, forge: GitHubForge, repo: str
) -> None:
    """A configured repository must be a GitHub `owner/name`; nothing is asked otherwise."""
    with pytest.raises(ForgeError, match="owner/name"):
        await forge.commits_between(repo, "main", "main")
    assert github.requests == []
