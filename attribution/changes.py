"""Change sets: which merged PRs a deploy carries, from the commits between two deploys.

A PR is in the range when its merge commit is (merge and squash merges, and the last commit of a
rebase merge, which is what GitHub records as the merge commit). Commits with no PR record are
matched by the numbers GitHub writes into merge and squash messages (`Merge pull request #12`,
`Title (#12)`), so the caller can fetch those PRs; what matches nothing is kept as unattributed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from attribution.records import MergedPR

_MERGE_MESSAGE = re.compile(r"^Merge pull request #(\d+)\b")
_SQUASH_TITLE = re.compile(r"\(#(\d+)\)\s*$")


@dataclass(frozen=True, slots=True)
class RangeCommit:
    """The part of a commit a change set needs (kept free of any forge type)."""

    sha: str
    message: str
    parents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The PRs of a deploy (oldest first), the PR numbers seen but not on record, and the rest."""

    prs: tuple[MergedPR, ...]
    unknown_numbers: tuple[int, ...]
    unattributed: tuple[str, ...]


def pr_number_in(message: str) -> int | None:
    """The PR number GitHub writes into a merge or squash commit's subject, if any."""
    subject = message.splitlines()[0] if message else ""
    match = _MERGE_MESSAGE.match(subject) or _SQUASH_TITLE.search(subject)
    return int(match.group(1)) if match else None


def mainline(commits: Sequence[RangeCommit]) -> list[RangeCommit]:
    """The first-parent chain from the newest commit: what landed on the branch, oldest first.

    Commits off that chain came in through a merge commit, which stands for them. The newest
    commit is the one no other commit names as a parent: a forge may list commits by date, and
    a branch commit listed last must not hide the merge that brought it in.
    """
    if not commits:
        return []
    by_sha = {c.sha: c for c in commits}
    named = {parent for c in commits for parent in c.parents}
    heads = [c for c in commits if c.sha not in named]
    chain: list[RangeCommit] = []
    seen: set[str] = set()
    current: RangeCommit | None = heads[0] if len(heads) == 1 else commits[-1]
    while current is not None and current.sha not in seen:
        chain.append(current)
        seen.add(current.sha)
        current = by_sha.get(current.parents[0]) if current.parents else None
    return chain[::-1]


def change_set(commits: Sequence[RangeCommit], known: Sequence[MergedPR]) -> ChangeSet:
    """Match the commits of a deploy range (oldest first) to merged PRs on record."""
    by_sha = {pr.merge_sha: pr for pr in known}
    by_number = {pr.number: pr for pr in known}
    found: dict[int, MergedPR] = {}
    unknown: list[int] = []
    unattributed: list[str] = []
    for commit in mainline(commits):
        pr = by_sha.get(commit.sha)
        number = pr.number if pr else pr_number_in(commit.message)
        if pr is None and number is not None:
            pr = by_number.get(number)
        if pr is not None:
            found.setdefault(pr.number, pr)
        elif number is not None:
            if number not in unknown:
                unknown.append(number)
        else:
            unattributed.append(commit.sha)
    return ChangeSet(
        prs=tuple(sorted(found.values(), key=lambda p: (p.merged_at, p.number))),
        unknown_numbers=tuple(unknown),
        unattributed=tuple(unattributed),
    )
