"""The GitHub forge's writes of what incidents teach: a file proposed in one PR kept up to date
(the lessons section of `AGENTS.md`), and a comment made exactly once (on a spec's issue).

`propose_file` looks for the open PR whose head is the proposal's branch. None open (never
opened, or merged or closed since): the branch is (re)made on the base branch's head with the
edited file (blob, tree, commit; an old branch left by a merged or closed PR is moved, GitHub
answering 422 to creating a ref that exists) and a PR opened, never merged by Rearguard. One
open: its branch is re-made the same way on the current base (so the PR changes only what the
edit changes, whatever the base did since) and its body replaced; a branch that already holds
the text is left alone. The base already holding the text and no PR open: nothing is proposed.

`comment_once` puts a hidden marker (`issue_marker(key)`) in the comment and, before each
attempt, reads the issue's comments for it: an answer lost after GitHub made the comment, a
retry, a restart, all find the comment instead of making a second.

Every call goes through `GitHubClient._call`/`_rest` (one retry policy, errors mapped there).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

from githubkit_schemas.latest.models import IssueComment, PullRequest, PullRequestSimple

from rollback.forge import (
    CommentResult,
    FileProposal,
    ForgeError,
    Proposal,
    ProposalState,
)
from rollback.github_changes import GitHubChanges, issue_marker
from rollback.github_client import Rejected, Repo, ref_path, segment, split_repo

PER_PAGE = 100
MAX_PAGES = 30


class GitHubLearning(GitHubChanges):
    """`propose_file` and `comment_once` of `GitHubForge` (see the module doc)."""

    async def propose_file(self, proposal: FileProposal) -> Proposal:
        """Open or update the proposal's PR (see the module doc)."""
        at, git = split_repo(proposal.repo), self._gh.rest.git
        base = proposal.base_branch
        if proposal.branch == base:
            raise ForgeError(f"the proposal's branch is the base branch {base!r}")
        open_pull = await self._call(
            "find the open proposal", lambda: self._open_pull_of(at, proposal)
        )
        ref = await self._rest(
            f"read branch {base}", at, git.async_get_ref, ref_path(f"heads/{base}")
        )
        base_sha = ref.object_.sha
        current = (await self.read_files(proposal.repo, base_sha, [proposal.path]))[proposal.path]
        text = proposal.edit(current)
        if open_pull is not None:
            on_branch = await self.read_files(proposal.repo, open_pull.head.sha, [proposal.path])
            if on_branch[proposal.path] != text or not await self._based_on(
                at, open_pull, base_sha
            ):
                await self._commit_file(at, proposal, base_sha, text)
            update = self._gh.rest.pulls.async_update
            await self._rest(f"update PR #{open_pull.number}", at, update, open_pull.number,
                             title=proposal.title, body=proposal.body)  # fmt: skip
            return Proposal(ProposalState.UPDATED, open_pull.html_url, open_pull.number)
        if current == text:
            return Proposal(ProposalState.UNCHANGED)
        await self._commit_file(at, proposal, base_sha, text)
        opened = await self._open(at, proposal)
        return Proposal(ProposalState.OPENED, opened.html_url, opened.number)

    async def _open_pull_of(self, at: Repo, proposal: FileProposal) -> PullRequestSimple | None:
        listed = await self._gh.rest.pulls.async_list(
            *at, state="open", head=f"{at[0]}:{proposal.branch}", base=proposal.base_branch,
            per_page=PER_PAGE,
        )  # fmt: skip
        pulls = cast("list[PullRequestSimple]", listed.parsed_data)
        return next((p for p in pulls if p.head.ref == proposal.branch), None)

    async def _based_on(self, at: Repo, pull: PullRequestSimple, base_sha: str) -> bool:
        """Whether the PR's head commit sits directly on the base's head (nothing to rebase)."""
        read = self._gh.rest.git.async_get_commit
        head = await self._rest(f"read commit {pull.head.sha}", at, read, segment(pull.head.sha))
        return [p.sha for p in head.parents] == [base_sha]

    async def _commit_file(
        self, at: Repo, proposal: FileProposal, base_sha: str, text: str
    ) -> None:
        """One commit on `base_sha` setting the file to `text`, pointed to by the branch."""
        git = self._gh.rest.git
        base = await self._rest("read the base commit", at, git.async_get_commit, segment(base_sha))
        blob = await self._rest(f"write {proposal.path}", at, git.async_create_blob, content=text,
                                encoding="utf-8")  # fmt: skip
        head_tree = await self._tree(at, base.tree.sha, {})
        mode = head_tree[proposal.path][0] if proposal.path in head_tree else "100644"
        entries: list[Any] = [
            {"path": proposal.path, "mode": mode, "type": "blob", "sha": blob.sha}
        ]
        tree = await self._rest("create the proposal tree", at, git.async_create_tree,
                                base_tree=base.tree.sha, tree=entries)  # fmt: skip
        commit = await self._rest("create the proposal commit", at, git.async_create_commit,
                                  message=proposal.message, tree=tree.sha,
                                  parents=[base_sha])  # fmt: skip
        await self._point_branch(at, proposal.branch, commit.sha)

    async def _open(self, at: Repo, proposal: FileProposal) -> PullRequest | PullRequestSimple:
        """Open the PR; a retry (or GitHub's 422 "already exists") finds the one made before."""
        attempted = False

        async def op() -> PullRequest | PullRequestSimple:
            nonlocal attempted
            if attempted and (found := await self._open_pull_of(at, proposal)) is not None:
                return found
            attempted = True
            created = await self._gh.rest.pulls.async_create(
                *at, title=proposal.title, head=proposal.branch, base=proposal.base_branch,
                body=proposal.body, draft=False,
            )  # fmt: skip
            return created.parsed_data

        try:
            pull = await self._call(f"open PR for {proposal.branch}", op)
        except Rejected as exc:
            if exc.status != HTTPStatus.UNPROCESSABLE_ENTITY:
                raise
            found = await self._call("find the open proposal",
                                     lambda: self._open_pull_of(at, proposal))  # fmt: skip
            if found is None:
                raise
            pull = found
        if proposal.labels:
            add = self._gh.rest.issues.async_add_labels
            await self._rest(f"label PR #{pull.number}", at, add, pull.number,
                             labels=list(proposal.labels))  # fmt: skip
        return pull

    async def comment_once(self, repo: str, number: int, key: str, body: str) -> CommentResult:
        """Comment on `number` once per `key` (see the module doc)."""
        at, tag, attempted = split_repo(repo), issue_marker(key), False
        text = body if tag in body else f"{body}\n\n{tag}"

        async def op() -> CommentResult:
            nonlocal attempted
            found = await self._find_comment(at, number, tag)
            if found is not None:
                return CommentResult(found.html_url, reused=not attempted)
            attempted = True
            create = self._gh.rest.issues.async_create_comment
            made = (await create(*at, number, body=text)).parsed_data
            return CommentResult(made.html_url, reused=False)

        return await self._call(f"comment on {repo}#{number}", op)

    async def _find_comment(self, at: Repo, number: int, tag: str) -> IssueComment | None:
        for page in range(1, MAX_PAGES + 1):
            listed = await self._gh.rest.issues.async_list_comments(
                *at, number, per_page=PER_PAGE, page=page
            )
            comments = cast("list[IssueComment]", listed.parsed_data)
            for comment in comments:
                if tag in (comment.body or ""):
                    return comment
            if len(comments) < PER_PAGE:
                return None
        raise ForgeError(f"more than {MAX_PAGES * PER_PAGE} comments: cannot rule out one")
