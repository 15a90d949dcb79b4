"""The `Forge` boundary: where commits are read and revert changes are opened.

Exception tree::

    ForgeError                 anything the forge could not do
    ├── ForgeUnavailable       5xx, timeout, rate limit beyond the budget: the action stays pending
                               (also an `observer.retry.Retryable`)
    └── RevertConflict         later commits touched the same lines: a person must revert by hand

Two halves: `ForgeReads` (commit ranges, the PRs behind commits, their files, file contents: what
attribution and change resolution read) and `ForgeWrites` (revert and fix changes, issues, merge
requests, closes: what rollback writes); `Forge` is both. Implementations: `GitHubForge`
(githubkit) and `LocalGitForge` (a git repository on disk, for the demo), each a whole `Forge`.
Writes are idempotent per request key (`RevertRequest.key`, `ChangeRequest.key`,
`IssueRequest.key`): asking twice returns what the first call made, in whatever state people
have since left it (a revert PR found merged or closed unmerged is returned, never made again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from observer.retry import Retryable


class ForgeError(Exception):
    """The forge could not complete a call; the message says what and why (no secrets)."""


class ForgeUnavailable(ForgeError, Retryable):
    """The forge is down, slow or rate limited; the same call may succeed later.

    `retry_after`, when the forge said how long to wait (a rate limit), is in seconds.
    """


class RevertConflict(ForgeError):
    """The revert does not apply cleanly on the current default branch."""


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit in a deploy's range, oldest first in any list of them."""

    sha: str
    message: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PullFile:
    """One file of a pull request as the forge lists it; `patch` is its unified diff (GitHub
    leaves it out for binary and very large files)."""

    path: str
    status: str
    additions: int
    deletions: int
    patch: str | None = None
    previous_path: str | None = None


@dataclass(frozen=True, slots=True)
class PullInfo:
    """A pull request found through a commit (GitHub's "pull requests associated with a commit").

    Times are Unix seconds; `merged_at` is None for a PR that was not merged.
    """

    number: int
    title: str
    body: str
    author: str
    url: str
    head_sha: str
    base_ref: str
    merged_at: float | None
    created_at: float | None = None
    labels: tuple[str, ...] = ()
    node_id: str | None = None
    head_ref: str | None = None


@dataclass(frozen=True, slots=True)
class PullRef:
    """A merged pull request to revert: its number and the commit that landed it."""

    number: int
    merge_sha: str
    title: str


@dataclass(frozen=True, slots=True)
class RevertRequest:
    """One revert change: the PRs to undo, on a branch whose name is derived from `key`."""

    repo: str
    key: str
    base_branch: str
    prs: tuple[PullRef, ...]
    title: str
    body: str
    labels: tuple[str, ...]

    @property
    def branch(self) -> str:
        """Deterministic branch name, so a retry finds the change it already made."""
        return f"rearguard/{self.key}"


class ChangeState(StrEnum):
    """Where a change the forge made stands now: people may have merged or closed it."""

    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"  # closed unmerged: a person decided against it


@dataclass(frozen=True, slots=True)
class RevertResult:
    """What the forge made: a PR (number and URL) or, for local git, a branch and its commit;
    `state` is the PR's now (a reused one may have been merged or closed since)."""

    url: str
    branch: str
    number: int | None
    head_sha: str
    reused: bool
    state: ChangeState = ChangeState.OPEN


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """A branch off `base_branch` whose tree sets `files` (None deletes), opened as a PR.

    The fix PR: its files are the original change plus the fix, so it re-applies the change.
    """

    repo: str
    key: str
    base_branch: str
    files: tuple[tuple[str, str | None], ...]
    message: str
    title: str
    body: str
    labels: tuple[str, ...]
    assignees: tuple[str, ...]
    draft: bool = True

    @property
    def branch(self) -> str:
        """Deterministic branch name, so a retry finds the change it already made."""
        return f"rearguard/{self.key}"


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """An issue (the refined bug report a fix falls back to), found again by `key`."""

    repo: str
    key: str
    title: str
    body: str
    labels: tuple[str, ...]
    assignees: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IssueResult:
    """Where the issue is: its URL and number (None for a local file), and whether it existed."""

    url: str
    number: int | None
    reused: bool


class MergeState(StrEnum):
    """What an auto-merge request achieved."""

    AUTO_MERGE = "auto_merge"  # GitHub merges it once the checks pass
    MERGED = "merged"  # it was already clean and was merged now
    LEFT_FOR_PERSON = "left_for_person"  # the repository (or the forge) does not allow it


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The state and a sentence for people saying what happened and why."""

    state: MergeState
    note: str


class ForgeReads(Protocol):
    """What attribution, change resolution and fix drafting read: deploy ranges, PRs, files."""

    async def commits_between(self, repo: str, base: str, head: str) -> list[Commit]:
        """Commits reachable from `head` and not from `base`, oldest first."""
        ...

    async def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        """The pull requests that brought commit `sha` in (for commits with no PR on record)."""
        ...

    async def pull_files(self, repo: str, number: int) -> list[PullFile]:
        """Every file PR `number` changed, with its patch (attribution needs the line ranges)."""
        ...

    async def read_files(
        self, repo: str, ref: str, paths: Sequence[str]
    ) -> Mapping[str, str | None]:
        """The text of each path at commit `ref` (`sha^`: its first parent; None: absent)."""
        ...

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        """The full sha of the commit `ref` names (a sha, a sha prefix, `refs/tags/NAME`), or
        None when the repository has none (revision mapping: an image tag to its commit)."""
        ...

    async def read_notes(self, repo: str, ref: str, shas: Sequence[str]) -> Mapping[str, str]:
        """The git notes under `refs/notes/<ref>` of those of `shas` that have one (line-level
        provenance: git-ai's `ai`, Agent Trace's `agent-trace`); no such ref: none."""
        ...


class ForgeWrites(Protocol):
    """What rollback writes: revert and fix changes, issues, merge requests, closes; never a
    push to the default branch."""

    async def open_revert(self, request: RevertRequest) -> RevertResult:
        """Open the revert change for `request`, or find the one made for its key before, in
        any state (open, merged, or closed unmerged)."""
        ...

    async def open_change(self, request: ChangeRequest) -> RevertResult:
        """Open (or find, if it exists) the branch and PR for `request`."""
        ...

    async def open_issue(self, request: IssueRequest) -> IssueResult:
        """Open (or find, if it exists) the issue for `request`."""
        ...

    async def request_merge(self, repo: str, number: int, *, allow_rest_merge: bool) -> MergeResult:
        """Enable auto-merge on PR `number`, or merge it now when it is already clean."""
        ...

    async def close_pull(self, repo: str, number: int, comment: str) -> None:
        """Close PR `number` unmerged with `comment` (a person said it was a false alarm)."""
        ...


class Forge(ForgeReads, ForgeWrites, Protocol):
    """Both halves, as `GitHubForge` and `LocalGitForge` implement them and the Watch holds it."""


@dataclass(frozen=True, slots=True)
class FileProposal:
    """One file's new text proposed as a PR from `branch`, kept up to date in place: `edit`
    turns the file's text on the base branch (None: absent) into the proposed text."""

    repo: str
    branch: str
    base_branch: str
    path: str
    edit: Callable[[str | None], str]
    message: str
    title: str
    body: str
    labels: tuple[str, ...] = ()


class ProposalState(StrEnum):
    """What `propose_file` did."""

    OPENED = "opened"  # a new PR
    UPDATED = "updated"  # the open PR's branch and body were brought up to date
    UNCHANGED = "unchanged"  # the base branch already says it, and no PR is open


@dataclass(frozen=True, slots=True)
class Proposal:
    """The proposal's PR (None when nothing needed proposing) and what was done."""

    state: ProposalState
    url: str | None = None
    number: int | None = None


@dataclass(frozen=True, slots=True)
class CommentResult:
    """The comment's URL, and whether it was already there (made by an earlier attempt)."""

    url: str
    reused: bool


@runtime_checkable
class LearningForge(Protocol):
    """What flows back to repositories: a proposed file kept up to date in one PR, and a
    comment made once per key (the GitHub forge; the demo's local git has none)."""

    async def propose_file(self, proposal: FileProposal) -> Proposal:
        """Open the PR for `proposal.branch`, or update the open one (its branch re-made on the
        base branch's head, its body replaced); never merged."""
        ...

    async def comment_once(self, repo: str, number: int, key: str, body: str) -> CommentResult:
        """Comment on issue (or PR) `number` unless a comment carrying `key`'s marker is there."""
        ...
