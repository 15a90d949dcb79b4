"""`GitHubForge.propose_file` and `comment_once` on the GitHub stand-in: one PR however its
answers are lost, nothing pushed for a damaged file, nothing proposed when the base already
says it, and one comment per key."""

from __future__ import annotations

import pytest

from rollback.forge import FileProposal, ForgeError, ProposalState
from rollback.github import GitHubForge
from rollback.lessons_doc import END, START, LessonsFileError, splice
from tests.acting_rig import TOKEN, Sleeps
from tests.fakes.github import FakeGitHub

SECTION = f"{START}\nlessons\n{END}"


def _proposal(branch: str = "rearguard/lessons", section: str = SECTION) -> FileProposal:
    return FileProposal(
        repo="acme/app", branch=branch, base_branch="main", path="AGENTS.md",
        edit=lambda text: splice(text, section), message="Lessons", title="Lessons",
        body="Lessons from incidents", labels=("rearguard",),
    )  # fmt: skip


async def test_a_lost_answer_to_opening_the_pr_leaves_one_pr(github: FakeGitHub) -> None:
    """GitHub opened the PR but its answer was lost: the retry finds it, no second PR."""
    github.commit({"AGENTS.md": "# Agents\n"}, "Docs")
    github.fail_next(1, 502, match="POST /repos/acme/app/pulls", after=True)
    sleeps = Sleeps()
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=sleeps) as forge:
        done = await forge.propose_file(_proposal())
        assert len(sleeps.waits) == 1  # the lost answer was retried
        again = await forge.propose_file(_proposal(section=f"{START}\nmore\n{END}"))
    (pr,) = github.created_pulls()
    assert (done.state, done.number) == (ProposalState.OPENED, pr.number)
    assert (again.state, again.number) == (ProposalState.UPDATED, pr.number)
    assert github.read_file("AGENTS.md", pr.head_sha) == f"# Agents\n\n{START}\nmore\n{END}\n"
    assert pr.labels == ["rearguard"]


async def test_damaged_markers_push_nothing(github: FakeGitHub) -> None:
    """An end marker before its start: refused before any branch or PR is made."""
    github.commit({"AGENTS.md": f"{END}\n{START}\n"}, "Docs")
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=Sleeps()) as forge:
        with pytest.raises(LessonsFileError):
            await forge.propose_file(_proposal())
    assert github.resolve("refs/heads/rearguard/lessons") is None
    assert github.created_pulls() == []


async def test_nothing_is_proposed_when_the_base_already_says_it(github: FakeGitHub) -> None:
    """The lessons merged and unchanged since: no branch, no PR."""
    github.commit({"AGENTS.md": f"# Agents\n\n{SECTION}\n"}, "Docs")
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=Sleeps()) as forge:
        done = await forge.propose_file(_proposal())
    assert done.state is ProposalState.UNCHANGED
    assert github.created_pulls() == []


async def test_the_base_branch_is_never_the_proposal_branch(github: FakeGitHub) -> None:
    """A proposal from `main` onto `main` is refused before GitHub is asked."""
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=Sleeps()) as forge:
        with pytest.raises(ForgeError):
            await forge.propose_file(_proposal(branch="main"))
    assert github.requests == []


async def test_comment_once_per_key_and_404_for_no_issue(github: FakeGitHub) -> None:
    """Two calls with one key make one comment; an issue that does not exist is refused."""
    issue = github.add_issue(42, "Spec")
    async with GitHubForge(github.url, TOKEN, timeout=5.0, sleep=Sleeps()) as forge:
        first = await forge.comment_once("acme/app", 42, "spec-i1", "hello")
        second = await forge.comment_once("acme/app", 42, "spec-i1", "hello again")
        other = await forge.comment_once("acme/app", 42, "spec-i2", "another incident")
        with pytest.raises(ForgeError, match="404"):
            await forge.comment_once("acme/app", 7, "spec-i1", "nobody")
    assert (first.reused, second.reused, other.reused) == (False, True, False)
    assert first.url == second.url != other.url
    assert issue.comments == [
        "hello\n\n<!-- rearguard-key: spec-i1 -->",
        "another incident\n\n<!-- rearguard-key: spec-i2 -->",
    ]
