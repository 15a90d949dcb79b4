"""`LocalGitForge` and the demo repository, on real git repositories in `tmp_path`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from attribution.records import MergedPR
from loop.demo.repo import DemoRepo, build_demo_repo
from rollback.forge import ForgeError, PullRef, RevertConflict, RevertRequest
from rollback.localgit import LocalGitForge

_ENV = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")} | {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def git_run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, env=_ENV, capture_output=True, text=True, check=False
    )


def git(repo: Path, *args: str) -> str:
    result = git_run(repo, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def blob(repo: Path, rev: str, name: str) -> str | None:
    """The file's content at `rev`, or None when it does not exist there."""
    result = git_run(repo, "show", f"{rev}:{name}")
    return result.stdout if result.returncode == 0 else None


def trailers(message: str) -> str:
    """The trailers git itself reads from a commit message, one `Key: value` a line."""
    return subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        env=_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def request(demo: DemoRepo, *numbers: int, key: str = "inc-7") -> RevertRequest:
    prs = tuple(PullRef(n, demo.pr(n).merge_sha, demo.pr(n).title) for n in numbers)
    return RevertRequest(
        repo=demo.repo,
        key=key,
        base_branch=demo.default_branch,
        prs=prs,
        title=f"Revert {', '.join(f'#{n}' for n in numbers)}: error rate regressed",
        body="# Evidence\n\ncheckout 5xx rate rose from 0.4% to 6.1% after the deploy.",
        labels=("rearguard", "revert"),
    )


def assert_restored(demo: DemoRepo, branch: str, *prs: MergedPR) -> None:
    """The branch holds every file the PRs changed as it was before the oldest of them, and
    differs from main in nothing else."""
    oldest = min(prs, key=lambda pr: pr.merged_at)
    changed = sorted({name for pr in prs for name in pr.files})
    for name in changed:
        assert blob(demo.path, branch, name) == blob(demo.path, f"{oldest.merge_sha}^1", name)
    assert git(demo.path, "diff", "--name-only", "main", branch).split() == changed


def leftovers(demo: DemoRepo) -> tuple[list[str], list[str]]:
    """Rearguard branches and extra worktrees in the demo repository."""
    branches = git(demo.path, "branch", "--list", "rearguard/*").split()
    worktrees = git(demo.path, "worktree", "list", "--porcelain").split("\n\n")
    return branches, worktrees[1:]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    return build_demo_repo(tmp_path_factory.mktemp("demo") / "checkout")


@pytest.fixture
def demo(built: DemoRepo, tmp_path: Path) -> DemoRepo:
    """A fresh copy of the demo repository per test (building it is the slow part)."""
    path = tmp_path / "checkout"
    shutil.copytree(built.path, path, symlinks=True)
    return dataclasses.replace(built, path=path)


@pytest.fixture
def forge(demo: DemoRepo) -> LocalGitForge:
    return LocalGitForge(demo.path, default_branch=demo.default_branch)


async def test_commits_between_lists_a_deploys_commits_oldest_first(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """Each deploy's range is its PRs' branch commits and merges, parents before children."""
    expected = [
        [
            "Validate line items before pricing",
            "Test cart validation",
            "Merge pull request #101 from acme/claude/cart-validation",
            "README: running locally",
            "Merge pull request #102 from acme/dana/readme-local",
        ],
        [
            "Remove duplicate retry and token check from charge()",
            "Merge pull request #103 from acme/codex/simplify-charge",
        ],
        [
            "Index orders by customer (#104)",
            "Cache tax rates with lru_cache",
            "Merge pull request #105 from acme/claude/tax-rate-cache",
            "Add db ping",
            "Add /healthz",
            "Merge pull request #106 from acme/codex/healthz",
        ],
    ]
    for deploy, subjects in zip(demo.deploys, expected, strict=True):
        commits = await forge.commits_between(demo.repo, deploy.previous_sha, deploy.sha)
        assert [c.message.splitlines()[0] for c in commits] == subjects
        assert commits[-1].sha == deploy.sha
        seen = {deploy.previous_sha}
        for commit in commits:
            assert set(commit.parents) <= seen
            seen.add(commit.sha)
        merges = [c.sha for c in commits if c.message.startswith(("Merge pull", "Index orders"))]
        assert merges == [demo.pr(n).merge_sha for n in deploy.pr_numbers]


async def test_commits_between_keeps_the_trailers_and_parents(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """A merge commit's message keeps the session trailers; a squash commit has one parent."""
    deploy = demo.deploys[2]
    commits = {c.sha: c for c in await forge.commits_between("", deploy.previous_sha, deploy.sha)}
    squash = commits[demo.pr(104).merge_sha]
    merge = commits[demo.pr(106).merge_sha]
    assert len(squash.parents) == 1
    assert len(merge.parents) == 2
    assert merge.message.endswith("Agent-Tokens: 15733\nAgent-Cost-USD: 0.27")
    assert "Agent-Session: dv-5e0c77aa" in squash.message


async def test_commits_between_unknown_commit_is_a_forge_error(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """A sha the repository does not have is reported, not read as an empty range."""
    with pytest.raises(ForgeError, match="unknown commit"):
        await forge.commits_between(demo.repo, "0" * 40, demo.deploys[0].sha)
    with pytest.raises(ForgeError, match="not a commit"):
        await forge.commits_between(demo.repo, "--all", demo.deploys[0].sha)


async def test_revert_of_culprit_restores_its_files_and_leaves_main_alone(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """The revert branch undoes exactly the culprit, one commit on main's tip; main, the
    checkout and its uncommitted work are untouched."""
    main_before = git(demo.path, "rev-parse", "main")
    (demo.path / "README.md").write_text("work in progress\n")

    result = await forge.open_revert(request(demo, demo.culprit_number))

    branch = "rearguard/inc-7"
    assert (result.branch, result.number, result.reused) == (branch, None, False)
    assert result.url == f"{demo.path.resolve().as_uri()}#{branch}"
    assert result.head_sha == git(demo.path, "rev-parse", branch)
    assert git(demo.path, "rev-parse", f"{branch}^") == main_before
    assert_restored(demo, branch, demo.culprit)
    assert "MAX_ATTEMPTS = 3" in (blob(demo.path, branch, "checkout/payment.py") or "")
    assert git(demo.path, "rev-parse", "main") == main_before
    assert git(demo.path, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(demo.path, "status", "--porcelain") == "M README.md"
    assert leftovers(demo) == ([branch], [])


async def test_revert_commit_message_carries_title_body_and_key(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """The commit says what it reverts and why, and ends with the Rearguard-Key trailer."""
    req = request(demo, demo.culprit_number)
    result = await forge.open_revert(req)
    message = git(demo.path, "log", "-1", "--format=%B", result.head_sha)
    assert message.startswith(f"{req.title}\n\n{req.body}\n\n")
    assert demo.culprit.merge_sha in message
    assert trailers(message) == "Rearguard-Key: inc-7\n"
    author = git(demo.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", result.head_sha)
    assert author == "Rearguard <rearguard@localhost>|Rearguard <rearguard@localhost>"


async def test_open_revert_again_reuses_the_branch(demo: DemoRepo, forge: LocalGitForge) -> None:
    """Asking twice for the same key returns the first revert and makes no new commit."""
    first = await forge.open_revert(request(demo, demo.culprit_number))
    second = await forge.open_revert(request(demo, demo.culprit_number))
    again = await LocalGitForge(demo.path).open_revert(request(demo, demo.culprit_number))
    assert (second.reused, again.reused) == (True, True)
    assert first.head_sha == second.head_sha == again.head_sha
    assert git(demo.path, "rev-list", "--count", "main..rearguard/inc-7") == "1"


async def test_revert_of_squash_merged_pr(demo: DemoRepo, forge: LocalGitForge) -> None:
    """A squash commit (one parent) is reverted plainly, its new files removed."""
    # 106 appended beside 104's query: revert both, else 104 alone conflicts (tested below).
    result = await forge.open_revert(request(demo, 104, 106))
    assert_restored(demo, result.branch, demo.pr(104), demo.pr(106))
    assert blob(demo.path, result.branch, "db/migrations/002_orders_customer_id.sql") is None


@pytest.mark.parametrize("numbers", [(105, 106), (106, 105), (104, 105, 106), (106, 104)])
async def test_revert_of_several_prs_in_one_commit(
    demo: DemoRepo, forge: LocalGitForge, numbers: tuple[int, ...]
) -> None:
    """Several PRs, in any order given, are reverted newest first into one commit."""
    result = await forge.open_revert(request(demo, *numbers))
    assert_restored(demo, result.branch, *(demo.pr(n) for n in numbers))
    assert git(demo.path, "rev-list", "--count", f"main..{result.branch}") == "1"
    message = git(demo.path, "log", "-1", "--format=%B", result.head_sha)
    assert all(f"This reverts #{n} " in message for n in numbers)


async def test_revert_conflicting_with_a_later_commit_leaves_nothing_behind(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """A later commit on main edited the culprit's lines: RevertConflict names the PR, its
    commit and the file, and no branch or worktree is left, so a retry starts clean."""
    payment = demo.path / "checkout" / "payment.py"
    payment.write_text(payment.read_text().replace("return client.charge(", "return client.pay("))
    git(demo.path, "commit", "--quiet", "-am", "Rename gateway call")
    main_before = git(demo.path, "rev-parse", "main")

    for _ in range(2):
        with pytest.raises(RevertConflict) as caught:
            await forge.open_revert(request(demo, demo.culprit_number))
        message = str(caught.value)
        assert "#103" in message
        assert demo.culprit.merge_sha[:12] in message
        assert "checkout/payment.py" in message
        assert leftovers(demo) == ([], [])
    assert git(demo.path, "rev-parse", "main") == main_before
    assert git(demo.path, "status", "--porcelain") == ""


async def test_revert_of_an_already_reverted_pr_is_refused(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """Once a revert is merged, a second one under another key would be empty: refused."""
    first = await forge.open_revert(request(demo, demo.culprit_number))
    git(demo.path, "merge", "--quiet", "--ff-only", first.branch)
    with pytest.raises(ForgeError, match="already reverted"):
        await forge.open_revert(request(demo, demo.culprit_number, key="inc-8"))
    assert leftovers(demo) == ([first.branch], [])


async def test_revert_conflicting_with_a_later_pr(demo: DemoRepo, forge: LocalGitForge) -> None:
    """#106 appended to the lines #104 added, so #104 alone does not revert cleanly."""
    with pytest.raises(RevertConflict, match=r"#104 .*db/queries\.py"):
        await forge.open_revert(request(demo, 104))
    assert leftovers(demo) == ([], [])


async def test_revert_of_a_commit_not_on_the_base_branch_is_refused(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """A squash-merged PR's own head commit never landed on main: nothing there to revert."""
    squashed = demo.pr(104)
    stray = dataclasses.replace(request(demo, 104), prs=(PullRef(104, squashed.head_sha, "x"),))
    with pytest.raises(ForgeError, match="is not on main"):
        await forge.open_revert(stray)
    assert leftovers(demo) == ([], [])


async def test_revert_onto_a_missing_base_branch_is_refused(
    demo: DemoRepo, forge: LocalGitForge
) -> None:
    """A base branch the repository lacks is an error, not a revert based on something else."""
    req = dataclasses.replace(request(demo, 103), base_branch="release")
    with pytest.raises(ForgeError, match="'release' does not exist"):
        await forge.open_revert(req)


def test_demo_repo_is_deterministic(tmp_path: Path) -> None:
    """Two builds give the same shas, PRs and deploy plan."""
    first = build_demo_repo(tmp_path / "one")
    second = build_demo_repo(tmp_path / "two")
    assert dataclasses.replace(first, path=second.path) == second
    assert git(first.path, "rev-parse", "main") == git(second.path, "rev-parse", "main")


def test_demo_repo_truth_matches_its_history(demo: DemoRepo) -> None:
    """Deploys chain from the initial commit to main; the culprit ships alone and drops the
    retry; agent PRs carry their session as trailers, the human PR none."""
    assert demo.deploys[0].previous_sha == demo.initial_sha
    for before, after in zip(demo.deploys, demo.deploys[1:], strict=False):
        assert after.previous_sha == before.sha
    assert demo.deploys[-1].sha == git(demo.path, "rev-parse", "main")
    assert (demo.culprit_number,) in [d.pr_numbers for d in demo.deploys]
    assert "checkout/payment.py" in demo.culprit.files
    assert "MAX_ATTEMPTS" not in (
        blob(demo.path, demo.culprit.merge_sha, "checkout/payment.py") or "x"
    )
    kinds = [pr.identity.kind for pr in demo.prs]
    assert kinds.count("unknown") == 1  # the person's PR has no marker: not "human"
    assert kinds.count("agent") == 5
    for pr in demo.prs:
        message = git(demo.path, "log", "-1", "--format=%B", pr.merge_sha)
        assert pr.body in message
        assert git(demo.path, "rev-parse", f"refs/pull/{pr.number}/head") == pr.head_sha
        parsed = trailers(message)
        if pr.identity.is_agent:
            assert f"Agent-Session: {pr.identity.session}\n" in parsed
            assert f"Agent-Model: {pr.identity.model}\n" in parsed
        else:
            assert parsed == ""
