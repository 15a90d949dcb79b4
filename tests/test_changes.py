"""Change sets (`attribution.changes`): which merged PRs a deploy range carries.

Hand-drawn commit graphs in tables, then the demo repository's real git history read through
`LocalGitForge`, whose every deploy must come back as exactly the PRs it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from attribution.changes import ChangeSet, RangeCommit, change_set, mainline, pr_number_in
from attribution.records import AgentIdentity, MergedPR
from loop.demo.repo import DemoRepo, build_demo_repo
from rollback.localgit import LocalGitForge

BASE = "b0"  # the previous deploy's commit: outside every range


def c(sha: str, message: str, *parents: str) -> RangeCommit:
    return RangeCommit(sha, message, parents)


def pr(number: int, merge_sha: str, merged_at: float | None = None) -> MergedPR:
    return MergedPR(
        repo="acme/checkout",
        number=number,
        title=f"PR {number}",
        author="someone",
        url=f"https://github.com/acme/checkout/pull/{number}",
        merge_sha=merge_sha,
        head_sha=f"head-{number}",
        base_ref="main",
        merged_at=float(number if merged_at is None else merged_at),
        body="",
        identity=AgentIdentity("human", "someone"),
    )


# A merge commit over a two-commit branch, a squash merge, a rebase merge of three commits, and a
# direct push: oldest first, as a forge lists a range.
MERGE = [
    c("a1", "Validate items", BASE),
    c("a2", "Test validation", "a1"),
    c("m1", "Merge pull request #1 from acme/cart\n\nValidate items", BASE, "a2"),
]
SQUASH = [c("s2", "Index orders by customer (#2)\n\n* Add index\n* Add query", "m1")]
REBASE = [c("r1", "Step one", "s2"), c("r2", "Step two", "r1"), c("r3", "Step three", "r2")]
PUSH = [c("p4", "Hotfix a typo in the README", "r3")]


def numbers(changes: ChangeSet) -> tuple[int, ...]:
    return tuple(p.number for p in changes.prs)


@pytest.mark.parametrize(
    ("commits", "known", "prs", "unknown", "unattributed"),
    [
        pytest.param(MERGE, [pr(1, "m1")], (1,), (), (), id="merge-commit"),
        pytest.param(MERGE + SQUASH, [pr(1, "m1"), pr(2, "s2")], (1, 2), (), (), id="squash"),
        pytest.param(REBASE, [pr(3, "r3")], (3,), (), ("r1", "r2"), id="rebase-last-commit"),
        pytest.param(MERGE + SQUASH + REBASE + PUSH, [pr(1, "m1"), pr(2, "s2"), pr(3, "r3")],
                     (1, 2, 3), (), ("r1", "r2", "p4"), id="all-kinds"),
        pytest.param(PUSH, [pr(1, "m1")], (), (), ("p4",), id="direct-push"),
        pytest.param(MERGE + SQUASH, [], (), (1, 2), (), id="numbers-not-on-record"),
        pytest.param(MERGE + SQUASH, [pr(1, "elsewhere"), pr(2, "s2")], (1, 2), (), (),
                     id="known-by-number-when-sha-differs"),
        pytest.param([c("x", "Merge pull request #9 from a/b", BASE, "y"), c("y", "Tidy", BASE)]
                     [::-1], [pr(5, "x")], (5,), (), (), id="sha-wins-over-message"),
        pytest.param([c("u1", "Revert (#7)", BASE), c("u2", "Redo (#7)", "u1")], [], (), (7,), (),
                     id="unknown-number-once"),
        pytest.param([], [pr(1, "m1")], (), (), (), id="empty-range"),
    ],
)  # fmt: skip
def test_change_set_matches_commits_to_prs(
    commits: list[RangeCommit],
    known: list[MergedPR],
    prs: tuple[int, ...],
    unknown: tuple[int, ...],
    unattributed: tuple[str, ...],
) -> None:
    """Merge, squash and rebase merges are found by merge sha or number; the rest is kept apart."""
    changes = change_set(commits, known)
    assert numbers(changes) == prs
    assert changes.unknown_numbers == unknown
    assert changes.unattributed == unattributed


def test_commits_inside_a_merged_branch_are_not_unattributed() -> None:
    """Branch commits, and a merge of main into the branch, come in through the PR's merge."""
    commits = [
        c("f1", "Start the feature", BASE),
        c("t1", "Someone else's direct push", BASE),
        c("f2", "Merge branch 'main' into feature", "f1", "t1"),
        c("f3", "Finish the feature", "f2"),
        c("m5", "Merge pull request #5 from acme/feature", "t1", "f3"),
    ]
    changes = change_set(commits, [pr(5, "m5")])
    assert numbers(changes) == (5,)
    assert changes.unattributed == ("t1",)
    assert [x.sha for x in mainline(commits)] == ["t1", "m5"]


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(["a1", "a2", "m1", "s2"], id="topological"),
        pytest.param(["a1", "m1", "s2", "a2"], id="branch-commit-listed-last"),
        pytest.param(["s2", "m1", "a2", "a1"], id="newest-first"),
    ],
)
def test_mainline_starts_from_the_head_whatever_the_listing_order(order: list[str]) -> None:
    """The head is the commit no other names as parent, so a date-ordered listing loses no PR."""
    by_sha = {x.sha: x for x in MERGE + SQUASH}
    commits = [by_sha[sha] for sha in order]
    assert [x.sha for x in mainline(commits)] == ["m1", "s2"]
    changes = change_set(commits, [pr(1, "m1"), pr(2, "s2")])
    assert numbers(changes) == (1, 2)
    assert changes.unattributed == ()


def test_prs_come_back_oldest_merge_first() -> None:
    """The change set orders PRs by merge time, then number, not by commit order."""
    known = [pr(1, "m1", merged_at=300.0), pr(2, "s2", merged_at=100.0)]
    assert numbers(change_set(MERGE + SQUASH, known)) == (2, 1)


@pytest.mark.parametrize(
    ("message", "number"),
    [
        ("Merge pull request #12 from acme/branch", 12),
        ("Merge pull request #12 from acme/branch\n\nTitle (#99)", 12),
        ("Add an index (#104)", 104),
        ("Add an index (#104)  \n\nbody", 104),
        ('Revert "Add an index (#104)" (#110)', 110),
        ('Revert "Add an index (#104)"', None),
        ("Add an index (#104) and more", None),
        ("Merge branch 'main' into feature", None),
        ("Tidy\n\nSquashed from (#5)", None),
        ("Merge pull request #x from acme/branch", None),
        ("", None),
    ],
)
def test_pr_number_in_reads_merge_and_squash_subjects(message: str, number: int | None) -> None:
    """The number GitHub writes into a merge or squash subject is read; nothing else is."""
    assert pr_number_in(message) == number


# -- a real repository ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    """The demo repository, built once for the module (the tests only read it)."""
    return build_demo_repo(tmp_path_factory.mktemp("changes") / "r")


async def range_commits(demo: DemoRepo, base: str, head: str) -> list[RangeCommit]:
    commits = await LocalGitForge(demo.path).commits_between(demo.repo, base, head)
    return [RangeCommit(x.sha, x.message, x.parents) for x in commits]


async def test_each_demo_deploy_carries_exactly_its_prs(demo: DemoRepo) -> None:
    """Over real git history, every deploy's range gives that deploy's PRs and nothing else."""
    assert len(demo.deploys) == 3
    for deploy in demo.deploys:
        commits = await range_commits(demo, deploy.previous_sha, deploy.sha)
        changes = change_set(commits, demo.prs)
        assert numbers(changes) == deploy.pr_numbers
        assert changes.unknown_numbers == ()
        assert changes.unattributed == ()


@pytest.mark.parametrize("known", [(), (101, 103)])
async def test_demo_prs_not_on_record_come_back_as_numbers(
    demo: DemoRepo, known: Sequence[int]
) -> None:
    """With some PRs not recorded yet, their numbers are returned for the caller to fetch."""
    commits = await range_commits(demo, demo.initial_sha, demo.deploys[-1].sha)
    changes = change_set(commits, [demo.pr(n) for n in known])
    everything = tuple(p.number for p in demo.prs)
    assert numbers(changes) == tuple(known)
    assert changes.unknown_numbers == tuple(n for n in everything if n not in known)
    assert changes.unattributed == ()
