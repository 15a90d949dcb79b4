"""`GitHubForge`: the production `Forge`, speaking GitHub's REST and GraphQL APIs via githubkit.

Every call goes through the one retry policy and error mapping of
`rollback.github_client.GitHubClient` (`_call`/`_rest`; the mapping is drawn in that module).

Reverts are idempotent per `RevertRequest.key`: the PR body carries `<!-- rearguard-key: KEY -->`
and a PR with that marker (or on the key's branch) is returned instead of a new one, whatever
became of it (open, merged, or closed unmerged: the caller decides what a closed one means). It
is looked for among the PRs opened after the newest PR it reverts, newest first: a revert cannot
be older than what it reverts, so the search ends there however many PRs the repository has. One PR
is reverted by GraphQL `revertPullRequest`; several, or one GraphQL refuses, through the Git Data
API (tree, commit, ref, PR), refused with `RevertConflict` when later commits changed the same
files (which paths to restore or refuse is decided by `rollback.revert_plan`). The token never
appears in a message or log line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Literal, cast

from githubkit_schemas.latest.models import PullRequestSimple

from rollback.forge import (
    ChangeRequest,
    Commit,
    ForgeError,
    PullFile,
    PullInfo,
    PullRef,
    RevertConflict,
    RevertRequest,
    RevertResult,
)
from rollback.github_checks import GitHubChecks
from rollback.github_client import (
    GraphQLRefused,
    Opened,
    Rejected,
    Repo,
    as_opened,
    ref_path,
    segment,
    split_repo,
)
from rollback.github_learning import GitHubLearning
from rollback.revert_plan import Change, Tree, plan_revert, tree_entries

Keyed = RevertRequest | ChangeRequest  # a change found again by its branch or key marker

logger = logging.getLogger(__name__)

PER_PAGE = 100
MAX_PAGES = 30  # 3,000 commits in a deploy or open PRs to scan: beyond that, say so and stop
CONFLICT_PATHS_NAMED = 5

REVERT_MUTATION = """
mutation RearguardRevert($input: RevertPullRequestInput!) {
  revertPullRequest(input: $input) {
    revertPullRequest { number url headRefName headRefOid }
  }
}
"""


def marker(key: str) -> str:
    """The comment that ties a PR to its `RevertRequest.key` across retries and restarts."""
    return f"<!-- rearguard-key: {key} -->"


class GitHubForge(GitHubLearning, GitHubChecks):
    """The `Forge` over one githubkit client; use `async with` (or call `aclose`).

    Reverts and ranges are here; fix branches, issues, merges and closes in `GitHubChanges`;
    lessons PRs and spec comments in `GitHubLearning`; verdicts on commits (check runs or
    statuses, `rollback.checks.Checks`) in `GitHubChecks`."""

    async def commits_between(self, repo: str, base: str, head: str) -> list[Commit]:
        """Commits in `base...head`, oldest first, paging GitHub's compare past 250 commits."""
        at, basehead = split_repo(repo), f"{base}...{head}"
        compare = self._gh.rest.repos.async_compare_commits
        found: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            what, path = f"compare {repo} {basehead}", f"{segment(base)}...{segment(head)}"
            got = await self._rest(what, at, compare, path, page=page, per_page=PER_PAGE)
            found.extend(got.commits)
            if len(got.commits) < PER_PAGE or len(found) >= got.total_commits:
                return [
                    Commit(c.sha, c.commit.message, tuple(p.sha for p in c.parents)) for c in found
                ]
        raise ForgeError(f"compare {repo} {basehead}: more than {len(found)} commits")

    async def open_revert(self, request: RevertRequest) -> RevertResult:
        """Find the open revert PR for `request.key`, or open one (GraphQL, else Git Data)."""
        at = split_repo(request.repo)
        if not request.prs:
            raise ForgeError(f"revert {request.key}: no pull requests to revert")
        existing = await self._call("find an existing revert", partial(self._find, at, request))
        if existing is not None:
            return await self._finish(at, request, existing, reused=True)
        opened = await self._revert_with_graphql(at, request) if len(request.prs) == 1 else None
        if opened is None:
            opened = await self._revert_with_git_data(at, request)
        return await self._finish(at, request, opened, reused=False)

    async def pull_files(self, repo: str, number: int) -> list[PullFile]:
        """The PR's files with their patches, paged (GitHub lists at most 3,000)."""
        at, files = split_repo(repo), self._gh.rest.pulls.async_list_files
        found: list[PullFile] = []
        for page in range(1, MAX_PAGES + 1):
            got = await self._rest(
                f"list files of PR #{number}", at, files, number, page=page, per_page=PER_PAGE
            )
            found += [
                PullFile(f.filename, f.status, f.additions, f.deletions, f.patch or None,
                         f.previous_filename or None)
                for f in got
            ]  # fmt: skip
            if len(got) < PER_PAGE:
                break
        return found

    async def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        """GitHub's "pull requests associated with a commit" (merged ones carry `merged_at`)."""
        at = split_repo(repo)
        listed = self._gh.rest.repos.async_list_pull_requests_associated_with_commit
        what = f"list PRs of commit {sha[:12]}"
        pulls = await self._rest(what, at, listed, segment(sha), per_page=PER_PAGE)
        return [
            PullInfo(
                number=p.number, title=p.title, body=p.body or "",
                author=p.user.login if p.user else "ghost", url=p.html_url,
                head_sha=p.head.sha, base_ref=p.base.ref,
                merged_at=p.merged_at.timestamp() if p.merged_at else None,
                created_at=p.created_at.timestamp(),
                labels=tuple(label.name for label in p.labels), node_id=p.node_id,
                head_ref=p.head.ref,
            )
            for p in pulls
        ]  # fmt: skip

    # -- reverts -------------------------------------------------------------------------------

    async def _find(self, at: Repo, request: Keyed) -> Opened | None:
        """The PR on `request.branch` or carrying its marker (one try: callers retry): for a
        revert in any state, among the PRs newer than those it reverts; for a fix change, open."""
        tag = marker(request.key)
        state: Literal["all", "open"] = "open"
        floor = 0
        if isinstance(request, RevertRequest):
            state, floor = "all", max((pr.number for pr in request.prs), default=0)
        for page in range(1, MAX_PAGES + 1):
            listed = await self._gh.rest.pulls.async_list(
                *at, state=state, base=request.base_branch, sort="created", direction="desc",
                per_page=PER_PAGE, page=page,
            )  # fmt: skip
            pulls = cast("list[PullRequestSimple]", listed.parsed_data)
            for pull in pulls:
                if pull.number <= floor:
                    return None  # older than what it reverts, and so is every later page
                if pull.head.ref == request.branch or tag in (pull.body or ""):
                    return as_opened(pull)
            if len(pulls) < PER_PAGE:
                return None
        scanned = MAX_PAGES * PER_PAGE
        raise ForgeError(f"more than {scanned} PRs to scan: cannot rule out a duplicate")

    async def _create_once(
        self, what: str, at: Repo, request: Keyed, create: Callable[[], Awaitable[Opened]]
    ) -> Opened:
        """`create` under `_call`; a retry first looks for what a lost answer may have made."""
        attempted = False

        async def op() -> Opened:
            nonlocal attempted
            if attempted and (found := await self._find(at, request)) is not None:
                return found
            attempted = True
            return await create()

        return await self._call(what, op)

    async def _revert_with_graphql(self, at: Repo, request: RevertRequest) -> Opened | None:
        """GitHub's own revert of the one PR; None when GraphQL refuses (then use Git Data)."""
        number = request.prs[0].number
        try:
            pull = await self._rest(f"read PR #{number}", at, self._gh.rest.pulls.async_get, number)
        except Rejected as exc:
            if exc.status != 404:  # noqa: PLR2004 (not a GitHub PR: revert its commit instead)
                raise
            return None
        arguments = {"pullRequestId": pull.node_id, "title": request.title, "draft": False}

        async def create() -> Opened:
            variables = {"input": arguments | {"body": _body(request)}}
            return _opened_from_graphql(await self._gh.async_graphql(REVERT_MUTATION, variables))

        try:
            return await self._create_once(f"revert PR #{number} (GraphQL)", at, request, create)
        except GraphQLRefused as exc:
            logger.info("%s; reverting through the Git Data API instead", exc)
            return None

    async def _revert_with_git_data(self, at: Repo, request: RevertRequest) -> Opened:
        """Tree, commit, branch and PR undoing every PR in `request`, or `RevertConflict`."""
        git, base = self._gh.rest.git, request.base_branch
        ref = await self._rest(
            f"read branch {base}", at, git.async_get_ref, ref_path(f"heads/{base}")
        )
        head_sha = ref.object_.sha
        read = git.async_get_commit
        head = await self._rest(f"read commit {head_sha}", at, read, segment(head_sha))
        trees: dict[str, Tree] = {}
        head_tree = await self._tree(at, head.tree.sha, trees)
        changes = [await self._change(at, pr, trees) for pr in request.prs]
        restore, conflicts = plan_revert(changes, head_tree)
        if conflicts:
            raise RevertConflict(await self._conflict(at, request, head_sha, conflicts))
        entries = tree_entries(restore, head_tree)
        tree = await self._rest(
            "create the revert tree",
            at,
            git.async_create_tree,
            base_tree=head.tree.sha,
            tree=entries,
        )
        message = _commit_message(request)
        commit = await self._rest(
            "create the revert commit",
            at,
            git.async_create_commit,
            message=message,
            tree=tree.sha,
            parents=[head_sha],
        )
        await self._point_branch(at, request.branch, commit.sha)
        return await self._open_pull(at, request)

    async def _tree(self, at: Repo, sha: str, cache: dict[str, Tree]) -> Tree:
        """Every file of tree `sha` (recursive listing), as path -> entry."""
        if sha not in cache:
            read = self._gh.rest.git.async_get_tree
            listing = await self._rest(f"read tree {sha}", at, read, segment(sha), recursive="1")
            if listing.truncated:
                raise ForgeError(f"tree {sha} is too large for GitHub to list: revert by hand")
            cache[sha] = {e.path: (e.mode, e.type, e.sha) for e in listing.tree if e.type != "tree"}
        return cache[sha]

    async def _change(self, at: Repo, pr: PullRef, trees: dict[str, Tree]) -> Change:
        """What `pr`'s merge commit changed against its first parent."""
        read, what = self._gh.rest.git.async_get_commit, f"read PR #{pr.number}"
        merge = await self._rest(what, at, read, segment(pr.merge_sha))
        if not merge.parents:
            raise ForgeError(f"PR #{pr.number}: commit {pr.merge_sha} has no parent to revert to")
        parent = await self._rest(f"{what}'s parent", at, read, segment(merge.parents[0].sha))
        before = await self._tree(at, parent.tree.sha, trees)
        return Change(pr, before, await self._tree(at, merge.tree.sha, trees))

    async def _conflict(
        self, at: Repo, request: RevertRequest, head_sha: str, paths: list[str]
    ) -> str:
        """A message naming the conflicting files and the later commits that changed them."""
        merges = {pr.merge_sha for pr in request.prs}
        later: set[str] = set()
        for pr in request.prs:
            after = await self.commits_between(request.repo, pr.merge_sha, head_sha)
            later |= {c.sha for c in after} - merges
        named = []
        for path in paths[:CONFLICT_PATHS_NAMED]:
            history = await self._rest(
                f"list commits touching {path}",
                at,
                self._gh.rest.repos.async_list_commits,
                sha=head_sha,
                path=path,
                per_page=PER_PAGE,
            )
            culprits = [f"{c.sha[:10]} {c.commit.message.splitlines()[0]!r}" for c in history
                        if c.sha in later]  # fmt: skip
            named.append(f"{path} changed by {', '.join(culprits) or 'a later commit'}")
        more = len(paths) - CONFLICT_PATHS_NAMED
        prs = ", ".join(f"#{pr.number}" for pr in request.prs)
        tail = f"; and {more} more files" if more > 0 else ""
        files = "; ".join(named)
        return f"cannot revert {prs} on {request.base_branch}, files changed since: {files}{tail}"

    async def _point_branch(self, at: Repo, branch: str, sha: str) -> None:
        """Create `branch` at `sha`; a branch left by an earlier attempt is ours, so move it."""
        git = self._gh.rest.git
        try:
            create = git.async_create_ref
            await self._rest(
                f"create branch {branch}", at, create, ref=f"refs/heads/{branch}", sha=sha
            )
        except Rejected as exc:
            if exc.status != 422:  # noqa: PLR2004 (GitHub's "Reference already exists")
                raise
            move = git.async_update_ref
            await self._rest(
                f"move branch {branch}", at, move, ref_path(f"heads/{branch}"), sha=sha, force=True
            )

    async def _open_pull(self, at: Repo, request: RevertRequest) -> Opened:
        """Open the PR for `request.branch`; if GitHub says one exists, return that one."""

        async def create() -> Opened:
            created = await self._gh.rest.pulls.async_create(
                *at,
                title=request.title,
                head=request.branch,
                base=request.base_branch,
                body=_body(request),
                draft=False,
            )
            return as_opened(created.parsed_data)

        try:
            return await self._create_once(f"open PR for {request.branch}", at, request, create)
        except Rejected as exc:
            if exc.status != 422:  # noqa: PLR2004 (GitHub's "A pull request already exists")
                raise
            found = await self._call("find an existing revert", partial(self._find, at, request))
            if found is None:
                raise
            return found

    async def _finish(
        self, at: Repo, request: Keyed, opened: Opened, *, reused: bool
    ) -> RevertResult:
        """Add the labels the PR lacks and report it."""
        missing = [label for label in request.labels if label not in opened.labels]
        if missing:
            add = self._gh.rest.issues.async_add_labels
            await self._rest(f"label PR #{opened.number}", at, add, opened.number, labels=missing)
        return RevertResult(
            opened.url, opened.branch, opened.number, opened.head_sha, reused, opened.state
        )


def _body(request: RevertRequest) -> str:
    tag = marker(request.key)
    return request.body if tag in request.body else f"{request.body}\n\n{tag}"


def _commit_message(request: RevertRequest) -> str:
    reverted = ", ".join(f"#{pr.number} ({pr.merge_sha[:12]})" for pr in request.prs)
    return f"{request.title}\n\nReverts {reverted}.\n\nRearguard-Key: {request.key}\n"


def _opened_from_graphql(data: Mapping[str, Any]) -> Opened:
    """The new PR from `revertPullRequest { revertPullRequest { ... } }`."""
    new: Any = (data.get("revertPullRequest") or {}).get("revertPullRequest")
    try:
        return Opened(
            int(new["number"]),
            str(new["url"]),
            str(new["headRefName"]),
            str(new["headRefOid"]),
            frozenset(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(f"revertPullRequest answered without the new PR: {new!r}") from exc
