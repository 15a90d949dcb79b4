"""The GitHub forge's writes beyond reverts: fix branches and PRs, issues, merges and closes.

It owns the calls a fix and a merge need: reading file contents at a commit (Git Data trees and
blobs), building a branch whose tree sets given contents (blobs, tree, commit, ref) and opening it
as a draft PR with labels and assignees, opening the refined bug issue, asking for auto-merge
(GraphQL `enablePullRequestAutoMerge`, then REST merge when GitHub says the PR is already clean
and policy allows it), and closing a PR a person called a false alarm. It is a base of
`rollback.github.GitHubForge` and runs every call through `rollback.github_client`'s one retry
policy (`_call`/`_rest`); what to do with GitHub's auto-merge answer is `rollback.policy`'s
decision.
Each write is idempotent per key: the marker in the body, or the key's branch, finds it again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from githubkit.utils import Unset
from githubkit_schemas.latest.models import Issue

from rollback.forge import (
    ChangeRequest,
    ForgeError,
    IssueRequest,
    IssueResult,
    MergeResult,
    MergeState,
    RevertRequest,
    RevertResult,
)
from rollback.github_client import (
    GitHubClient,
    GraphQLRefused,
    Opened,
    Rejected,
    Repo,
    as_opened,
    ref_path,
    segment,
    split_repo,
)
from rollback.policy import MergeNext, after_auto_merge

if TYPE_CHECKING:
    from rollback.revert_plan import Tree

MERGE_METHOD = "SQUASH"  # one commit per revert on the default branch, easy to read and undo
PER_PAGE = 100
MAX_PAGES = 30

AUTO_MERGE_MUTATION = """
mutation RearguardAutoMerge($input: EnablePullRequestAutoMergeInput!) {
  enablePullRequestAutoMerge(input: $input) { pullRequest { number } }
}
"""


def issue_marker(key: str) -> str:
    """The comment that ties an issue to its `IssueRequest.key` across retries and restarts."""
    return f"<!-- rearguard-key: {key} -->"


class GitHubChanges(GitHubClient):
    """The fix, issue, merge and close calls of `GitHubForge` (see the module doc)."""

    if TYPE_CHECKING:  # the revert helpers these calls share, provided by GitHubForge

        async def _tree(self, at: Repo, sha: str, cache: dict[str, Tree]) -> Tree: ...

        async def _find(
            self, at: Repo, request: RevertRequest | ChangeRequest
        ) -> Opened | None: ...

        async def _create_once(
            self,
            what: str,
            at: Repo,
            request: RevertRequest | ChangeRequest,
            create: Callable[[], Awaitable[Opened]],
        ) -> Opened: ...

        async def _point_branch(self, at: Repo, branch: str, sha: str) -> None: ...

        async def _finish(
            self, at: Repo, request: RevertRequest | ChangeRequest, opened: Opened, *, reused: bool
        ) -> RevertResult: ...

    async def read_files(
        self, repo: str, ref: str, paths: Sequence[str]
    ) -> Mapping[str, str | None]:
        """Each path's text at commit `ref` (`sha^`: its first parent) through the Git Data API."""
        at, git = split_repo(repo), self._gh.rest.git
        sha = ref.removesuffix("^")
        commit = await self._rest(f"read commit {sha}", at, git.async_get_commit, segment(sha))
        if ref.endswith("^"):
            if not commit.parents:
                raise ForgeError(f"commit {sha[:10]} has no parent")
            parent = commit.parents[0].sha
            read = git.async_get_commit
            commit = await self._rest(f"read commit {parent}", at, read, segment(parent))
        tree = await self._tree(at, commit.tree.sha, {})
        out: dict[str, str | None] = {}
        for path in paths:
            entry = tree.get(path)
            if entry is None:
                out[path] = None
                continue
            blob = await self._rest(f"read {path}", at, git.async_get_blob, segment(entry[2]))
            try:
                out[path] = base64.b64decode(blob.content).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ForgeError(f"{path} at {ref[:10]} is not UTF-8 text") from exc
        return out

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        """`GET /repos/{owner}/{repo}/commits/{ref}`: the full sha of the commit `ref` names (a
        sha or its prefix, `refs/tags/NAME`), or None when GitHub knows no such commit (it answers
        422 "No commit found for SHA" or 404)."""
        at = split_repo(repo)
        try:
            found = await self._rest(
                f"resolve {ref}", at, self._gh.rest.repos.async_get_commit, ref_path(ref)
            )
        except Rejected as exc:
            if exc.status in {HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY}:
                return None
            raise
        return found.sha

    async def read_notes(self, repo: str, ref: str, shas: Sequence[str]) -> Mapping[str, str]:
        """Notes are an ordinary ref: `refs/notes/<ref>`'s commit holds a tree with one blob per
        annotated commit, named by its sha (fanned out as `ab/cdef…` in large notes trees)."""
        at, git = split_repo(repo), self._gh.rest.git
        what = f"read notes {ref}"
        try:
            found = await self._rest(what, at, git.async_get_ref, ref_path(f"notes/{ref}"))
        except Rejected as exc:
            if exc.status == HTTPStatus.NOT_FOUND:
                return {}
            raise
        commit = await self._rest(what, at, git.async_get_commit, segment(found.object_.sha))
        tree = await self._tree(at, commit.tree.sha, {})
        wanted, out = set(shas), dict[str, str]()
        for path, (_, kind, blob_sha) in tree.items():
            sha = path.replace("/", "")
            if kind != "blob" or sha not in wanted:
                continue
            blob = await self._rest(f"read the note of {sha[:10]}", at, git.async_get_blob,
                                    segment(blob_sha))  # fmt: skip
            try:
                out[sha] = base64.b64decode(blob.content).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue  # a note that is not text says nothing about lines
        return out

    async def open_change(self, request: ChangeRequest) -> RevertResult:
        """Find the open PR for `request.key`, or build its branch and open it (draft)."""
        at, git = split_repo(request.repo), self._gh.rest.git

        async def find() -> Opened | None:
            return await self._find(at, request)

        existing = await self._call("find an existing change", find)
        if existing is not None:
            return await self._assign(at, request, existing, reused=True)
        base = request.base_branch
        ref = await self._rest(
            f"read branch {base}", at, git.async_get_ref, ref_path(f"heads/{base}")
        )
        read = git.async_get_commit
        head = await self._rest("read the base commit", at, read, segment(ref.object_.sha))
        head_tree = await self._tree(at, head.tree.sha, {})
        entries: list[Any] = []
        for path, content in request.files:
            if content is None:
                if path in head_tree:
                    entries.append({"path": path, "mode": head_tree[path][0], "type": "blob",
                                    "sha": None})  # fmt: skip
                continue
            blob = await self._rest(
                f"write {path}", at, git.async_create_blob, content=content, encoding="utf-8"
            )
            mode = head_tree[path][0] if path in head_tree else "100644"
            entries.append({"path": path, "mode": mode, "type": "blob", "sha": blob.sha})
        tree = await self._rest(
            "create the change tree", at, git.async_create_tree, base_tree=head.tree.sha,
            tree=entries,
        )  # fmt: skip
        commit = await self._rest(
            "create the change commit", at, git.async_create_commit,
            message=request.message, tree=tree.sha, parents=[ref.object_.sha],
        )  # fmt: skip
        await self._point_branch(at, request.branch, commit.sha)

        async def create() -> Opened:
            created = await self._gh.rest.pulls.async_create(
                *at, title=request.title, head=request.branch, base=base,
                body=_with_marker(request.body, request.key), draft=request.draft,
            )  # fmt: skip
            return as_opened(created.parsed_data)

        opened = await self._create_once(f"open PR for {request.branch}", at, request, create)
        return await self._assign(at, request, opened, reused=False)

    async def _assign(
        self, at: Repo, request: ChangeRequest, opened: Opened, *, reused: bool
    ) -> RevertResult:
        result = await self._finish(at, request, opened, reused=reused)
        if request.assignees and opened.number:
            add = self._gh.rest.issues.async_add_assignees
            what = f"assign PR #{opened.number}"
            await self._rest(what, at, add, opened.number, assignees=list(request.assignees))
        return result

    async def open_issue(self, request: IssueRequest) -> IssueResult:
        """Find the open issue carrying `request.key`'s marker, or open it."""
        at, attempted = split_repo(request.repo), False

        async def op() -> IssueResult:
            nonlocal attempted
            found = await self._find_issue(at, request.key)
            if found is not None:
                return IssueResult(found.html_url, found.number, reused=not attempted)
            attempted = True
            created = await self._gh.rest.issues.async_create(
                *at, title=request.title, body=_with_marker(request.body, request.key),
                labels=list(request.labels), assignees=list(request.assignees),
            )  # fmt: skip
            issue = created.parsed_data
            return IssueResult(issue.html_url, issue.number, reused=False)

        return await self._call(f"open issue {request.key}", op)

    async def _find_issue(self, at: Repo, key: str) -> Issue | None:
        tag = issue_marker(key)
        for page in range(1, MAX_PAGES + 1):
            listed = await self._gh.rest.issues.async_list_for_repo(
                *at, state="open", labels="rearguard", per_page=PER_PAGE, page=page
            )
            issues = cast("list[Issue]", listed.parsed_data)
            for issue in issues:
                # The issues API lists PRs too; a plain issue has no `pull_request` key at all,
                # which githubkit reads as UNSET, not None.
                if _plain(issue) and tag in (issue.body or ""):
                    return issue
            if len(issues) < PER_PAGE:
                return None
        raise ForgeError(f"more than {MAX_PAGES * PER_PAGE} open issues: cannot rule out one")

    async def request_merge(self, repo: str, number: int, *, allow_rest_merge: bool) -> MergeResult:
        """GraphQL auto-merge; a clean PR is merged through REST if allowed; else left."""
        at, pulls = split_repo(repo), self._gh.rest.pulls
        pull = await self._rest(f"read PR #{number}", at, pulls.async_get, number)
        if pull.merged:
            return MergeResult(MergeState.MERGED, "already merged")
        variables = {"input": {"pullRequestId": pull.node_id, "mergeMethod": MERGE_METHOD}}

        async def enable() -> object:
            return await self._gh.async_graphql(AUTO_MERGE_MUTATION, variables)

        error: str | None = None
        try:
            await self._call(f"enable auto-merge on PR #{number}", enable)
        except GraphQLRefused as exc:
            error = str(exc)
        try:
            step, note = after_auto_merge(error, allow_rest_merge=allow_rest_merge)
        except ValueError as exc:
            raise ForgeError(str(exc)) from exc
        if step is MergeNext.ENABLED:
            return MergeResult(MergeState.AUTO_MERGE, note)
        if step is MergeNext.LEAVE:
            return MergeResult(MergeState.LEFT_FOR_PERSON, note)
        await self._rest(
            f"merge PR #{number}", at, pulls.async_merge, number, merge_method="squash"
        )
        return MergeResult(MergeState.MERGED, note)

    async def close_pull(self, repo: str, number: int, comment: str) -> None:
        """Comment why, then close PR `number` (closing a closed PR changes nothing)."""
        at = split_repo(repo)
        comment_on = self._gh.rest.issues.async_create_comment
        await self._rest(f"comment on PR #{number}", at, comment_on, number, body=comment)
        update = self._gh.rest.pulls.async_update
        await self._rest(f"close PR #{number}", at, update, number, state="closed")


def _plain(issue: Issue) -> bool:
    """Whether `issue` is an issue and not a pull request."""
    return isinstance(issue.pull_request, Unset) or issue.pull_request is None


def _with_marker(body: str, key: str) -> str:
    tag = issue_marker(key)
    return body if tag in body else f"{body}\n\n{tag}"
