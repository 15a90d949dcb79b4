"""Which opened reverts a deploy carries: a pure match of the deploy's commits to revert PRs.

A revert reaches production through the repository's own CI and CD, so Rearguard learns that it
was deployed only by finding it in a later deploy's change range. A revert counts as carried when
any commit of the range is its merge, however the PR was merged:

- its key (`revert-inc_…`) is in the message: GitHub's merge message names the head branch
  (`rearguard/revert-inc_…`), and revert commits built by Rearguard carry a `Rearguard-Key` trailer;
- the message names the revert PR's number the way GitHub writes merge and squash subjects;
- the commit is the revert branch's head (a rebase or fast-forward merge), or the merge commit of
  a PR on record that is the revert PR or carries its key marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from attribution.changes import RangeCommit, pr_number_in
from attribution.records import MergedPR


@dataclass(frozen=True, slots=True)
class OpenedRevert:
    """A revert waiting to be deployed: its key, and the PR or branch the forge made for it."""

    key: str
    pr_number: int | None = None
    head_sha: str | None = None

    @classmethod
    def from_detail(cls, key: str, detail: Mapping[str, object]) -> OpenedRevert:
        """From the revert action's stored detail (`number`, `head_sha`)."""
        number, head = detail.get("number"), detail.get("head_sha")
        return cls(
            key,
            number if isinstance(number, int) else None,
            head if isinstance(head, str) and head else None,
        )


def _names_key(text: str, key: str) -> bool:
    """`key` as a whole token: `revert-inc_1` must not match `revert-inc_1-r2`."""
    return re.search(re.escape(key) + r"(?![\w-])", text) is not None


def carries(
    commits: Sequence[RangeCommit], known: Sequence[MergedPR], revert: OpenedRevert
) -> bool:
    """Whether a deploy range (`commits`, any order) holds the merge of `revert`."""
    merged_by_sha = {pr.merge_sha: pr for pr in known}
    for commit in commits:
        if _names_key(commit.message, revert.key) or commit.sha == revert.head_sha:
            return True
        if revert.pr_number is not None and pr_number_in(commit.message) == revert.pr_number:
            return True
        pr = merged_by_sha.get(commit.sha)
        if pr is not None and (pr.number == revert.pr_number or _names_key(pr.body, revert.key)):
            return True
    return False
