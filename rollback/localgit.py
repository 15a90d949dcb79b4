"""`LocalGitForge`: the `Forge` over a git repository on disk, for the offline demo.

It owns every git invocation Rearguard makes against a local repository: reading a deploy's
commits, and making revert branches. A revert is built in a temporary detached worktree, so the
default branch and the main checkout are never touched, and the branch ref is created only once
the revert commit exists: a conflict or a failure leaves no branch and no worktree behind. Git runs
as the CLI (no shell) with a fixed identity and without global or system config, so the result does
not depend on the machine it runs on. Git's failures become `ForgeError` carrying git's stderr;
a revert that does not apply becomes `RevertConflict` naming the PR, its commit and the files.
A fix change is a branch built with plumbing (blobs, a private index, a tree, a commit) off the
base branch; an issue is a Markdown file under `.git/rearguard/issues/`. It never merges: a merge
request is answered "left for a person".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rollback.forge import (
    ChangeRequest,
    Commit,
    ForgeError,
    IssueRequest,
    IssueResult,
    MergeResult,
    MergeState,
    PullFile,
    PullInfo,
    PullRef,
    RevertConflict,
    RevertRequest,
    RevertResult,
)

IDENTITY_NAME = "Rearguard"
IDENTITY_EMAIL = "rearguard@localhost"
KEY_TRAILER = "Rearguard-Key"


def _git_env() -> dict[str, str]:
    """The caller's environment without any GIT_* that could redirect git, plus a fixed identity
    and no global or system config (a user's `commit.gpgSign` or hooks path must not leak in)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=IDENTITY_NAME,
        GIT_AUTHOR_EMAIL=IDENTITY_EMAIL,
        GIT_COMMITTER_NAME=IDENTITY_NAME,
        GIT_COMMITTER_EMAIL=IDENTITY_EMAIL,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    return env


@dataclass(frozen=True, slots=True)
class _Target:
    """A PR to revert, resolved: its full merge sha and whether that commit is a merge."""

    pr: PullRef
    sha: str
    is_merge: bool


class LocalGitForge:
    """The `Forge` over the git repository at `path`; `repo` arguments are not checked (one
    repository per forge). Revert branches are plain local branches named `request.branch`."""

    def __init__(self, path: Path, *, default_branch: str = "main") -> None:
        self._path = path
        self._default_branch = default_branch
        self._env = _git_env()
        # Two concurrent reverts for the same key must not both build a branch.
        self._lock = asyncio.Lock()

    async def commits_between(self, repo: str, base: str, head: str) -> list[Commit]:
        """Commits reachable from `head` and not from `base`, parents before children."""
        del repo  # the path names the repository
        base_sha = await self._resolve(base)
        head_sha = await self._resolve(head)
        out = await self._git(
            "log", "-z", "--reverse", "--topo-order", "--format=%H%x1f%P%x1f%B",
            f"{base_sha}..{head_sha}",
        )  # fmt: skip
        commits = []
        for record in out.split("\0"):
            if not record:
                continue
            sha, parents, message = record.split("\x1f", 2)
            commits.append(
                Commit(sha=sha, message=message.rstrip("\n"), parents=tuple(parents.split()))
            )
        return commits

    async def open_revert(self, request: RevertRequest) -> RevertResult:
        """Find the branch for `request.key`, or build it off the base branch tip in a temporary
        worktree: one commit undoing every PR, newest first, its message carrying the key."""
        branch = request.branch
        if not request.prs:
            raise ForgeError(f"revert {request.key!r} names no PRs")
        code, _, _ = await self._run("check-ref-format", f"refs/heads/{branch}")
        if code != 0:
            raise ForgeError(f"revert key {request.key!r} does not make a valid branch name")
        async with self._lock:
            existing = await self._tip(branch)
            if existing is not None:
                return self._result(branch, existing, reused=True)
            base = request.base_branch or self._default_branch
            tip = await self._tip(base)
            if tip is None:
                raise ForgeError(f"base branch {base!r} does not exist in {self._path}")
            targets = await self._newest_first(base, tip, request.prs)
            head = await self._build(tip, base, targets, request)
            # An empty old value: fail rather than move a branch someone else just made.
            await self._git("update-ref", f"refs/heads/{branch}", head, "")
        return self._result(branch, head, reused=False)

    async def pull_files(self, repo: str, number: int) -> list[PullFile]:
        """The files of the commit that landed PR `number` on the default branch (found by the
        number GitHub writes into merge and squash subjects), diffed against its first parent."""
        del repo
        sha = await self._landing_commit(number)
        if sha is None:
            raise ForgeError(f"no commit on {self._default_branch} names PR #{number}")
        out = await self._git("diff", "--find-renames", "--no-color", "--no-ext-diff",
                              f"{sha}^1", sha)  # fmt: skip
        return parse_git_diff(out)

    async def pulls_for_commit(self, repo: str, sha: str) -> list[PullInfo]:
        """Local git keeps no pull requests: a commit is never associated with one."""
        del repo, sha
        return []

    async def _landing_commit(self, number: int) -> str | None:
        out = await self._git("log", "--first-parent", "--format=%H%x1f%s", self._default_branch)
        for line in out.splitlines():
            sha, _, subject = line.partition("\x1f")
            if subject.startswith(f"Merge pull request #{number} ") or subject.endswith(
                f"(#{number})"
            ):
                return sha
        return None

    async def read_files(
        self, repo: str, ref: str, paths: Sequence[str]
    ) -> Mapping[str, str | None]:
        """Each path's text at commit `ref` (None where it does not exist)."""
        del repo
        sha = await self._resolve(ref)
        out: dict[str, str | None] = {}
        for path in paths:
            code, text, _ = await self._run("show", f"{sha}:{path}")
            out[path] = text if code == 0 else None
        return out

    async def read_notes(self, repo: str, ref: str, shas: Sequence[str]) -> Mapping[str, str]:
        """`git notes --ref=<ref> show` of each of `shas`; a commit without a note is left out."""
        del repo
        out: dict[str, str] = {}
        for sha in shas:
            code, text, _ = await self._run("notes", f"--ref={ref}", "show", sha)
            if code == 0:
                out[sha] = text
        return out

    async def open_change(self, request: ChangeRequest) -> RevertResult:
        """The branch for `request.key`, or a new one off the base branch whose tree sets
        `request.files`, built with a private index so no checkout is touched."""
        branch = request.branch
        code, _, _ = await self._run("check-ref-format", f"refs/heads/{branch}")
        if code != 0:
            raise ForgeError(f"change key {request.key!r} does not make a valid branch name")
        async with self._lock:
            existing = await self._tip(branch)
            if existing is not None:
                return self._result(branch, existing, reused=True)
            tip = await self._tip(request.base_branch)
            if tip is None:
                raise ForgeError(f"base branch {request.base_branch!r} does not exist")
            workdir = Path(tempfile.mkdtemp(prefix="rearguard-change-"))
            index = {"GIT_INDEX_FILE": str(workdir / "index")}
            try:
                await self._git("read-tree", tip, env=index)
                for path, content in request.files:
                    if content is None:
                        await self._git("update-index", "--force-remove", "--", path, env=index)
                        continue
                    blob = (await self._git("hash-object", "-w", "--stdin", stdin=content)).strip()
                    info = f"100644,{blob},{path}"
                    await self._git("update-index", "--add", "--cacheinfo", info, env=index)
                tree = (await self._git("write-tree", env=index)).strip()
            finally:
                await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
            message = f"{request.message.strip()}\n\n{KEY_TRAILER}: {request.key}\n"
            head = await self._git("commit-tree", tree, "-p", tip, "-F", "-", stdin=message)
            await self._git("update-ref", f"refs/heads/{branch}", head.strip(), "")
        return self._result(branch, head.strip(), reused=False)

    async def open_issue(self, request: IssueRequest) -> IssueResult:
        """Write the issue as `.git/rearguard/issues/<key>.md` unless it exists."""
        git_dir = Path((await self._git("rev-parse", "--absolute-git-dir")).strip())
        folder = git_dir / "rearguard" / "issues"
        path = folder / f"{request.key}.md"
        if path.name != f"{request.key}.md" or "/" in request.key:
            raise ForgeError(f"issue key {request.key!r} is not a file name")
        if path.exists():
            return IssueResult(path.as_uri(), None, reused=True)
        labels = ", ".join(request.labels)
        text = f"# {request.title}\n\nLabels: {labels}\n\n{request.body}\n"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_text, text)
        return IssueResult(path.as_uri(), None, reused=False)

    async def request_merge(self, repo: str, number: int, *, allow_rest_merge: bool) -> MergeResult:
        """A local repository has no auto-merge: a person merges the branch."""
        del repo, number, allow_rest_merge
        note = "a local repository has no auto-merge: a person merges the branch"
        return MergeResult(MergeState.LEFT_FOR_PERSON, note)

    async def close_pull(self, repo: str, number: int, comment: str) -> None:
        """A local repository has no pull requests to close."""
        raise ForgeError(f"no pull request #{number} in a local repository")

    def _result(self, branch: str, head: str, *, reused: bool) -> RevertResult:
        url = f"{self._path.resolve().as_uri()}#{branch}"
        return RevertResult(url=url, branch=branch, number=None, head_sha=head, reused=reused)

    async def _newest_first(self, base: str, tip: str, prs: tuple[PullRef, ...]) -> list[_Target]:
        """Resolve the PRs' commits, check each is on `base`, and order them newest first, by
        topology rather than by date (reverting out of order is what makes needless conflicts)."""
        resolved = [(pr, await self._resolve(pr.merge_sha)) for pr in prs]
        shas = [sha for _, sha in resolved]
        if len(set(shas)) != len(shas):
            raise ForgeError(f"two PRs in one revert share a merge commit: {', '.join(shas)}")
        code, out, _ = await self._run("merge-base", "--octopus", *shas)
        if code != 0:
            raise ForgeError(f"the commits to revert share no history: {', '.join(shas)}")
        oldest = out.strip()
        newer = (await self._git("rev-list", "--topo-order", tip, f"^{oldest}")).split()
        position = {sha: index for index, sha in enumerate(newer)}
        if await self._is_ancestor(oldest, tip):
            position.setdefault(oldest, len(newer))
        targets = []
        for pr, sha in sorted(resolved, key=lambda item: position.get(item[1], -1)):
            if sha not in position:
                raise ForgeError(f"#{pr.number} ({sha[:12]}) is not on {base}: nothing to revert")
            parents = (await self._git("rev-list", "--parents", "-n", "1", sha)).split()[1:]
            targets.append(_Target(pr=pr, sha=sha, is_merge=len(parents) > 1))
        return targets

    async def _build(
        self, tip: str, base: str, targets: list[_Target], request: RevertRequest
    ) -> str:
        """Make the revert commit in a detached worktree at `tip`, then remove the worktree."""
        workdir = Path(tempfile.mkdtemp(prefix="rearguard-revert-"))
        worktree = workdir / "tree"
        try:
            await self._git("worktree", "add", "--detach", str(worktree), tip)
            for target in targets:
                await self._revert(worktree, base, target)
            empty, _, _ = await self._run("diff", "--cached", "--quiet", cwd=worktree)
            if empty == 0:
                names = ", ".join(f"#{t.pr.number}" for t in targets)
                raise ForgeError(f"reverting {names} changes nothing on {base}: already reverted?")
            await self._git(
                "commit", "--quiet", "--no-verify", "--no-gpg-sign", "--cleanup=whitespace",
                "--file=-", cwd=worktree, stdin=_message(request, targets),
            )  # fmt: skip
            return (await self._git("rev-parse", "HEAD", cwd=worktree)).strip()
        finally:
            removed, _, _ = await self._run("worktree", "remove", "--force", str(worktree))
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
            if removed != 0:
                await self._run("worktree", "prune")

    async def _revert(self, worktree: Path, base: str, target: _Target) -> None:
        """Apply one PR's inverse to the worktree's index; a conflict names the PR and files."""
        mainline = ("-m", "1") if target.is_merge else ()
        code, _, err = await self._run("revert", "--no-commit", *mainline, target.sha, cwd=worktree)
        if code == 0:
            return
        unmerged = await self._git("diff", "--name-only", "-z", "--diff-filter=U", cwd=worktree)
        await self._run("revert", "--abort", cwd=worktree)
        files = sorted(name for name in unmerged.split("\0") if name)
        pr = f"#{target.pr.number} ({target.sha[:12]})"
        if files:
            raise RevertConflict(
                f"reverting {pr} conflicts with later changes on {base} in: {', '.join(files)}"
            )
        raise ForgeError(f"git revert of {pr} failed: {err.strip()}")

    async def resolve_commit(self, repo: str, ref: str) -> str | None:
        """The full sha of commit `ref` (a sha, a prefix, `refs/tags/NAME`), or None."""
        del repo  # the path names the repository
        if not ref or ref.startswith("-"):
            return None
        code, out, _ = await self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.strip() if code == 0 else None

    async def _resolve(self, rev: str) -> str:
        """The full sha of commit `rev`; refuses anything git could read as an option."""
        if not rev or rev.startswith("-"):
            raise ForgeError(f"not a commit: {rev!r}")
        code, out, _ = await self._run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if code != 0:
            raise ForgeError(f"unknown commit {rev!r} in {self._path}")
        return out.strip()

    async def _tip(self, branch: str) -> str | None:
        """The commit at the tip of local `branch`, or None when there is no such branch."""
        ref = f"refs/heads/{branch}^{{commit}}"
        code, out, _ = await self._run("rev-parse", "--verify", "--quiet", ref)
        return out.strip() if code == 0 else None

    async def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        code, _, err = await self._run("merge-base", "--is-ancestor", ancestor, descendant)
        if code > 1:
            raise ForgeError(f"git merge-base failed: {err.strip()}")
        return code == 0

    async def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        """Run git and return its stdout; a non-zero exit is a `ForgeError` with git's stderr."""
        code, out, err = await self._run(*args, cwd=cwd, stdin=stdin, env=env)
        if code != 0:
            raise ForgeError(f"git {args[0]} failed ({code}): {err.strip()}")
        return out

    async def _run(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Run git once: (exit code, stdout, stderr). Only failing to start it raises."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *args,
                cwd=cwd or self._path,
                env={**self._env, **(env or {})},
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ForgeError(f"cannot run git in {cwd or self._path}: {exc}") from exc
        try:
            out, err = await proc.communicate(None if stdin is None else stdin.encode())
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        code = await proc.wait()
        return code, out.decode(errors="replace"), err.decode(errors="replace")


def _message(request: RevertRequest, targets: list[_Target]) -> str:
    """Title, body, which commits it reverts, and the key as the last paragraph's trailer."""
    reverts = "\n".join(f"This reverts #{t.pr.number} (commit {t.sha})." for t in targets)
    paragraphs = [request.title.strip(), request.body.strip(), reverts]
    paragraphs.append(f"{KEY_TRAILER}: {request.key}")
    return "\n\n".join(p for p in paragraphs if p) + "\n"


_DIFF_HEADER = "diff --git "


def parse_git_diff(text: str) -> list[PullFile]:
    """`git diff` output split per file, as GitHub's PR files list them (patch: the hunks)."""
    files = []
    for piece in text.split("\n" + _DIFF_HEADER):
        chunk = piece.removeprefix(_DIFF_HEADER)
        if not chunk.strip():
            continue
        head, _, rest = chunk.partition("\n@@")
        patch = "@@" + rest if rest else None
        lines = head.splitlines()
        old = next((ln[4:] for ln in lines if ln.startswith("--- ")), None)
        new = next((ln[4:] for ln in lines if ln.startswith("+++ ")), None)
        renamed_from = next((ln[12:] for ln in lines if ln.startswith("rename from ")), None)
        renamed_to = next((ln[10:] for ln in lines if ln.startswith("rename to ")), None)
        path = renamed_to or (new[2:] if new and new != "/dev/null" else None)
        path = path or (old[2:] if old and old != "/dev/null" else lines[0].split(" b/", 1)[-1])
        status = "renamed" if renamed_to else "modified"
        if old == "/dev/null" or any(ln.startswith("new file mode") for ln in lines):
            status = "added"
        elif new == "/dev/null" or any(ln.startswith("deleted file mode") for ln in lines):
            status = "removed"
        body = (patch or "").splitlines()
        adds = sum(1 for ln in body if ln.startswith("+"))
        dels = sum(1 for ln in body if ln.startswith("-"))
        files.append(PullFile(path, status, adds, dels, patch, renamed_from))
    return files
