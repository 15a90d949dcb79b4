"""FakeGitHub: an in-process GitHub (REST + GraphQL) over a real git repository on disk.

It answers the paths githubkit calls for `rollback.github.GitHubForge` (compare, commits, pulls,
issue labels, Git Data refs/commits/trees, GraphQL `revertPullRequest`), with bodies that pass
githubkit's models (`tests.fakes.github_payloads`). Every commit, branch and revert is a real git
object, so a test can check that a revert branch really restores the files.

Scenario API (plain sync methods; git runs synchronously on the loop, which also serialises the
fake's requests the way one repository would):

- `merge_pr(title, body, files, author=, labels=, method=)` -> `FakePR`: branch, commit, merge.
- `commit(files, message, branch="main")` -> sha: a direct push (e.g. a later conflicting change).
- `head_sha(branch)`, `read_file(path, ref)`, `pulls` (every PR), `open_pulls()`,
  `created_pulls()` (those opened through the API), `requests` ("METHOD /path" log).
- `pull_request_closed_webhook(number)`, `deployment_status_webhook(sha, environment, state)`.
- Faults: `fail_next(count, status, match=, after=)`, `delay(seconds)`,
  `rate_limit_next(retry_after, secondary=, count=)`, `refuse_graphql_reverts(message)`.

Serve it with `aiohttp_server(fake.app)` and set `fake.url = str(server.make_url("/"))`, or with
`await fake.start()` / `await fake.close()` (also `async with`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes import github_payloads as payloads
from tests.fakes.github_payloads import FakePR, Json, MergeMethod

__all__ = ["ApiError", "FakeGitHub", "FakePR", "GitFailed"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Fault:
    status: int
    match: str | None
    after: bool


class GitFailed(Exception):
    """A git command failed; the message carries its stderr."""


class FakeGitHub:
    """A GitHub stand-in for one repository (`repo`, default `acme/app`, branch `main`)."""

    def __init__(self, workdir: Path, *, token: str = "fake-token", repo: str = "acme/app") -> None:
        self.workdir = workdir
        self.token = token
        self.full_name = repo
        self.url = ""
        self.pulls: list[FakePR] = []
        self.requests: list[str] = []
        self._ticks = 0
        self._failures: list[_Fault] = []
        self._rate_limits: list[tuple[int, bool]] = []
        self._delay = 0.0
        self._graphql_refusal: str | None = None
        self._runner: web.AppRunner | None = None
        self._init_repo()
        self.app = web.Application(middlewares=[self._faults, self._auth])
        self._routes()

    # -- serving ------------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on a free loopback port; returns (and sets) `url`."""
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    async def close(self) -> None:
        """Stop serving (only if `start` did)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGitHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def api(self) -> str:
        """The API root as payload URLs spell it (no trailing slash)."""
        return self.url.rstrip("/")

    # -- git -----------------------------------------------------------------------------------

    def git(
        self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """Run git in the repository; raise `GitFailed` with stderr when it fails."""
        stamp = f"@{int((_START + timedelta(minutes=self._ticks)).timestamp())} +0000"
        full_env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Fake Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.invalid",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
            **(env or {}),
        }
        done = subprocess.run(
            ["git", *args], cwd=self.workdir, input=stdin, capture_output=True, text=True,
            env=full_env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise GitFailed(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def tick(self) -> str:
        """Advance the fake clock a minute (so rewritten commits get new shas); ISO time."""
        self._ticks += 1
        return (_START + timedelta(minutes=self._ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def resolve(self, rev: str) -> str | None:
        """The commit sha `rev` names, or None."""
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except GitFailed:
            return None

    def _init_repo(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self._write({"README.md": "# app\n"})
        self.git("commit", "-q", "-m", "Initial commit")

    def _write(self, files: Mapping[str, str | None]) -> None:
        for path, content in files.items():
            if content is None:
                self.git("rm", "-q", "--", path)
            else:
                target = self.workdir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                self.git("add", "--", path)

    # -- scenario ------------------------------------------------------------------------------

    def commit(self, files: Mapping[str, str | None], message: str, branch: str = "main") -> str:
        """Push one commit straight to `branch` (None deletes a file); returns its sha."""
        self.tick()
        self.git("checkout", "-q", branch)
        try:
            self._write(files)
            self.git("commit", "-q", "-m", message)
        finally:
            self.git("checkout", "-q", "main")
        return self.head_sha(branch)

    def merge_pr(
        self,
        title: str,
        body: str = "",
        files: Mapping[str, str | None] | None = None,
        *,
        author: str = "agent-bot",
        labels: Iterable[str] = (),
        method: MergeMethod = "merge",
    ) -> FakePR:
        """Open a PR with one commit changing `files` and merge it into main with `method`."""
        number = self.next_number()
        branch = f"{author}/change-{number}"
        self.tick()
        self.git("checkout", "-q", "-b", branch, "main")
        self._write(files or {f"change-{number}.txt": f"{title}\n"})
        self.git("commit", "-q", "-m", title)
        head = self.head_sha(branch)
        self.git("checkout", "-q", "main")
        merged_at = self.tick()
        if method == "merge":
            message = f"Merge pull request #{number} from {self.owner}/{branch}\n\n{title}"
            self.git("merge", "-q", "--no-ff", "-m", message, branch)
        elif method == "squash":
            self.git("merge", "-q", "--squash", branch)
            self.git("commit", "-q", "-m", f"{title} (#{number})\n\n{body}")
        else:
            self.git("cherry-pick", branch)
        pr = self.new_pr(number, title, body, author=author, head_ref=branch, head_sha=head)
        pr.state, pr.merged, pr.merged_at = "closed", True, merged_at
        pr.merge_sha, pr.merge_method = self.head_sha("main"), method
        pr.labels, pr.files = list(labels), dict(files or {})
        return pr

    def new_pr(
        self, number: int, title: str, body: str, *, author: str, head_ref: str, head_sha: str
    ) -> FakePR:
        """Record a PR against main (open until a caller says otherwise)."""
        html_url = f"https://github.com/{self.full_name}/pull/{number}"
        pr = FakePR(
            number=number, node_id=f"PR_kwDOfake{number:04d}", title=title, body=body,
            author=author, head_ref=head_ref, head_sha=head_sha, base_ref="main",
            base_sha=self.head_sha("main"), html_url=html_url, created_at=self.tick(),
        )  # fmt: skip
        self.pulls.append(pr)
        return pr

    def next_number(self) -> int:
        """The next issue/PR number, as GitHub shares one sequence for both."""
        return len(self.pulls) + 1

    @property
    def owner(self) -> str:
        """The repository owner's login."""
        return self.full_name.split("/", maxsplit=1)[0]

    def head_sha(self, branch: str = "main") -> str:
        """The commit `branch` points at."""
        sha = self.resolve(f"refs/heads/{branch}")
        if sha is None:
            raise KeyError(f"no branch {branch!r}")
        return sha

    def read_file(self, path: str, ref: str = "main") -> str | None:
        """`path`'s content at `ref`, or None when it does not exist there."""
        try:
            return self.git("show", f"{ref}:{path}")
        except GitFailed:
            return None

    def pull(self, number: int) -> FakePR:
        """The PR numbered `number`."""
        return next(pr for pr in self.pulls if pr.number == number)

    def open_pulls(self) -> list[FakePR]:
        """PRs still open."""
        return [pr for pr in self.pulls if pr.state == "open"]

    def created_pulls(self) -> list[FakePR]:
        """PRs opened through the API (REST create or GraphQL revert), oldest first."""
        return [pr for pr in self.pulls if pr.opened_by_api]

    def pull_request_closed_webhook(self, number: int) -> Json:
        """The `pull_request` closed+merged webhook payload for PR `number`."""
        return payloads.pull_request_closed_webhook(self.pull(number), self.site)

    def deployment_status_webhook(
        self, sha: str, environment: str = "production", state: str = "success"
    ) -> Json:
        """A `deployment_status` webhook payload for a deploy of `sha`."""
        return payloads.deployment_status_webhook(sha, self.site, environment, state)

    # -- faults --------------------------------------------------------------------------------

    def fail_next(
        self, count: int, status: int = 502, *, match: str | None = None, after: bool = False
    ) -> None:
        """Answer the next `count` requests (those whose "METHOD /path" contains `match`) with
        `status`; with `after`, handle each first, so the change is made but its answer lost."""
        self._failures.extend([_Fault(status, match, after)] * count)

    def rate_limit_next(self, retry_after: int, *, secondary: bool = True, count: int = 1) -> None:
        """Answer the next `count` requests 403 rate limited, asking to wait `retry_after` s."""
        self._rate_limits.extend([(retry_after, secondary)] * count)

    def delay(self, seconds: float) -> None:
        """Hold every answer `seconds` before sending it (0 to stop)."""
        self._delay = seconds

    def refuse_graphql_reverts(
        self, message: str = "Could not revert: not merged on GitHub"
    ) -> None:
        """Make `revertPullRequest` answer with a GraphQL error, as for PRs merged elsewhere."""
        self._graphql_refusal = message

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        line = f"{request.method} {request.path}"
        self.requests.append(line)
        if self._delay:
            await asyncio.sleep(self._delay)
        fault = next((f for f in self._failures if f.match is None or f.match in line), None)
        if fault is not None:
            self._failures.remove(fault)
            if fault.after:
                await handler(request)
            body = payloads.error("Server Error", fault.status)
            return web.json_response(body, status=fault.status)
        if self._rate_limits:
            retry_after, secondary = self._rate_limits.pop(0)
            return _rate_limited(retry_after, secondary=secondary)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"token", "bearer"} or credential != self.token:
            return web.json_response(payloads.error("Bad credentials", 401), status=401)
        owner, repo = request.match_info.get("owner"), request.match_info.get("repo")
        try:
            if owner is not None and f"{owner}/{repo}" != self.full_name:
                raise ApiError(404, "Not Found")
            return await handler(request)
        except ApiError as exc:
            return web.json_response(payloads.error(str(exc), exc.status), status=exc.status)

    # -- REST and GraphQL ----------------------------------------------------------------------

    def _routes(self) -> None:
        repo, add = "/repos/{owner}/{repo}", self.app.router.add_route
        add("GET", f"{repo}/compare/{{basehead}}", self._compare)
        add("GET", f"{repo}/commits", self._list_commits)
        add("GET", f"{repo}/pulls", self._list_pulls)
        add("POST", f"{repo}/pulls", self._create_pull)
        add("GET", f"{repo}/pulls/{{number:\\d+}}", self._get_pull)
        add("POST", f"{repo}/issues/{{number:\\d+}}/labels", self._add_labels)
        add("GET", f"{repo}/git/ref/{{ref:.+}}", self._get_ref)
        add("POST", f"{repo}/git/refs", self._create_ref)
        add("PATCH", f"{repo}/git/refs/{{ref:.+}}", self._update_ref)
        add("GET", f"{repo}/git/commits/{{sha}}", self._get_commit)
        add("POST", f"{repo}/git/commits", self._create_commit)
        add("GET", f"{repo}/git/trees/{{sha}}", self._get_tree)
        add("POST", f"{repo}/git/trees", self._create_tree)
        add("POST", "/graphql", self._graphql)

    def _log(self, *args: str) -> list[Json]:
        """`git log` records as `Commit` payloads."""
        out = self.git("log", "--format=%H%x00%P%x00%B%x1e", *args)
        commits = []
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            sha, parents, message = record.lstrip("\n").split("\x00", 2)
            commits.append(
                payloads.repo_commit(self.site, sha, message.rstrip("\n"), parents.split())
            )
        return commits

    @property
    def site(self) -> payloads.Site:
        """Where payload URLs point."""
        return payloads.Site(self.api, self.full_name)

    async def _compare(self, request: web.Request) -> web.Response:
        base_ref, sep, head_ref = request.match_info["basehead"].partition("...")
        base, head = self.resolve(base_ref), self.resolve(head_ref)
        if not sep or base is None or head is None:
            raise ApiError(404, "Not Found")
        commits = self._log("--reverse", "--date-order", f"{base}..{head}")
        behind = int(self.git("rev-list", "--count", f"{head}..{base}"))
        if {"page", "per_page"} & set(request.query):
            shown = _page(commits, request.query)
        else:
            shown = commits[-250:]
        statuses = {(True, True): "identical", (False, True): "ahead", (True, False): "behind"}
        status = statuses.get((not commits, behind == 0), "diverged")
        merge_base = self.git("merge-base", base, head).strip()
        body = payloads.comparison(
            self.site, status, (len(commits), behind), shown,
            base=self._log("-1", base)[0], merge_base=self._log("-1", merge_base)[0],
        )  # fmt: skip
        return web.json_response(body)

    async def _list_commits(self, request: web.Request) -> web.Response:
        start = self.resolve(request.query.get("sha", "main"))
        if start is None:
            raise ApiError(404, "Not Found")
        path = request.query.get("path")
        records = self._log(start, *(["--", path] if path else []))
        return web.json_response(_page(records, request.query))

    async def _list_pulls(self, request: web.Request) -> web.Response:
        q = request.query
        state, head, base = q.get("state", "open"), q.get("head"), q.get("base")
        chosen = [
            pr for pr in self.pulls
            if state in ("all", pr.state)
            and head in (None, f"{self.owner}:{pr.head_ref}")
            and base in (None, pr.base_ref)
        ]  # fmt: skip
        if q.get("direction", "desc") == "desc":
            chosen.reverse()
        shown = _page(chosen, q)
        return web.json_response(
            [payloads.pull_request(pr, self.site, simple=True) for pr in shown]
        )

    async def _create_pull(self, request: web.Request) -> web.Response:
        data = await request.json()
        head, base = str(data["head"]).split(":")[-1], str(data["base"])
        head_sha = self.resolve(f"refs/heads/{head}")
        if head_sha is None or self.resolve(f"refs/heads/{base}") is None:
            raise ApiError(422, "Validation Failed: head or base is not a branch")
        if any(p.state == "open" and (p.head_ref, p.base_ref) == (head, base) for p in self.pulls):
            raise ApiError(422, f"A pull request already exists for {self.owner}:{head}.")
        if self.git("rev-list", "--count", f"{base}..{head_sha}").strip() == "0":
            raise ApiError(422, f"No commits between {base} and {head}")
        pr = self.new_pr(
            self.next_number(), str(data.get("title", head)), str(data.get("body") or ""),
            author="rearguard-bot", head_ref=head, head_sha=head_sha,
        )  # fmt: skip
        pr.base_ref, pr.draft, pr.opened_by_api = base, bool(data.get("draft", False)), True
        return web.json_response(payloads.pull_request(pr, self.site), status=201)

    def _pull_or_404(self, request: web.Request) -> FakePR:
        number = int(request.match_info["number"])
        found = [pr for pr in self.pulls if pr.number == number]
        if not found:
            raise ApiError(404, "Not Found")
        return found[0]

    async def _get_pull(self, request: web.Request) -> web.Response:
        return web.json_response(payloads.pull_request(self._pull_or_404(request), self.site))

    async def _add_labels(self, request: web.Request) -> web.Response:
        pr = self._pull_or_404(request)
        data = await request.json()
        items = data.get("labels", []) if isinstance(data, dict) else data
        for item in items:
            name = item if isinstance(item, str) else str(item["name"])
            if name not in pr.labels:
                pr.labels.append(name)
        return web.json_response([payloads.label(name, self.site) for name in pr.labels])

    async def _get_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        sha = self.resolve(ref)
        if sha is None:
            raise ApiError(404, "Not Found")
        return web.json_response(payloads.git_ref(self.site, ref, sha))

    async def _create_ref(self, request: web.Request) -> web.Response:
        data = await request.json()
        ref, sha = str(data["ref"]), str(data["sha"])
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have two slashes")
        if self.resolve(ref) is not None:
            raise ApiError(422, "Reference already exists")
        if self.resolve(sha) != sha:
            raise ApiError(422, "Object does not exist")
        self.git("update-ref", ref, sha)
        return web.json_response(payloads.git_ref(self.site, ref, sha), status=201)

    async def _update_ref(self, request: web.Request) -> web.Response:
        ref = f"refs/{request.match_info['ref']}"
        data = await request.json()
        sha, current = str(data["sha"]), self.resolve(ref)
        if current is None:
            raise ApiError(422, "Reference does not exist")
        if self.resolve(sha) != sha:
            raise ApiError(422, "Object does not exist")
        if not data.get("force") and self.git("merge-base", current, sha).strip() != current:
            raise ApiError(422, "Update is not a fast forward")
        self.git("update-ref", ref, sha)
        return web.json_response(payloads.git_ref(self.site, ref, sha))

    async def _get_commit(self, request: web.Request) -> web.Response:
        return web.json_response(self._git_commit(request.match_info["sha"]))

    def _git_commit(self, sha: str) -> Json:
        if self.resolve(sha) != sha:
            raise ApiError(404, "Not Found")
        tree, parents, date, message = self.git(
            "show", "-s", "--format=%T%x00%P%x00%cI%x00%B", sha
        ).split("\x00", 3)
        return payloads.git_commit(
            self.site, sha, message=message.rstrip("\n"), tree=tree, parents=parents.split(),
            date=date,
        )  # fmt: skip

    async def _create_commit(self, request: web.Request) -> web.Response:
        data = await request.json()
        tree, parents = str(data["tree"]), [str(p) for p in data.get("parents", [])]
        if self._tree_sha(tree) != tree or any(self.resolve(p) != p for p in parents):
            raise ApiError(422, "Tree or parent SHA does not exist")
        self.tick()
        args = [arg for parent in parents for arg in ("-p", parent)]
        sha = self.git("commit-tree", tree, *args, "-F", "-", stdin=str(data["message"])).strip()
        return web.json_response(self._git_commit(sha), status=201)

    def _tree_sha(self, rev: str) -> str | None:
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}").strip()
        except GitFailed:
            return None

    def _tree_json(self, tree: str, *, recursive: bool) -> Json:
        listing = self.git("ls-tree", *(["-r", "-t"] if recursive else []), tree)
        entries = []
        for line in listing.splitlines():
            meta, path = line.split("\t", 1)
            mode, kind, sha = meta.split()
            entries.append({"path": path, "mode": mode, "type": kind, "sha": sha})
        return payloads.git_tree(self.site, tree, entries)

    async def _get_tree(self, request: web.Request) -> web.Response:
        tree = self._tree_sha(request.match_info["sha"])
        if tree is None:
            raise ApiError(404, "Not Found")
        recursive = request.query.get("recursive", "") not in ("", "0", "false")
        return web.json_response(self._tree_json(tree, recursive=recursive))

    async def _create_tree(self, request: web.Request) -> web.Response:
        data = await request.json()
        index = {"GIT_INDEX_FILE": str(self.workdir / ".git" / "fake-api-index")}
        base = data.get("base_tree")
        self.git("read-tree", *([str(base)] if base else ["--empty"]), env=index)
        for entry in data["tree"]:
            path, sha = str(entry["path"]), entry.get("sha")
            if entry.get("content") is not None:
                sha = self.git("hash-object", "-w", "--stdin", stdin=str(entry["content"])).strip()
            if sha is None:
                if not self.git("ls-files", "--", path, env=index).strip():
                    raise ApiError(422, f"GitRPC::BadObjectState: {path} is not in the base tree")
                self.git("update-index", "--force-remove", "--", path, env=index)
            else:
                cacheinfo = f"{entry['mode']},{sha},{path}"
                self.git("update-index", "--add", "--cacheinfo", cacheinfo, env=index)
        tree = self.git("write-tree", env=index).strip()
        return web.json_response(self._tree_json(tree, recursive=False), status=201)

    async def _graphql(self, request: web.Request) -> web.Response:
        data = await request.json()
        if "revertPullRequest" not in str(data.get("query", "")):
            return _graphql_error("UNPROCESSABLE", "the fake speaks only revertPullRequest")
        arguments = (data.get("variables") or {}).get("input") or {}
        found = [pr for pr in self.pulls if pr.node_id == arguments.get("pullRequestId")]
        if not found:
            return _graphql_error("NOT_FOUND", "Could not resolve to a node with the global id")
        original = found[0]
        if self._graphql_refusal is not None or not original.merged or not original.merge_sha:
            return _graphql_error("UNPROCESSABLE", self._graphql_refusal or "PR is not merged")
        branch = f"revert-{original.number}-{original.head_ref}"
        try:
            head_sha = self._revert_on_branch(original.merge_sha, branch)
        except GitFailed:
            return _graphql_error(
                "UNPROCESSABLE", "This pull request can't be reverted automatically"
            )
        revert = self.new_pr(
            self.next_number(), str(arguments.get("title") or f'Revert "{original.title}"'),
            str(arguments.get("body") or f"Reverts {self.full_name}#{original.number}"),
            author="rearguard-bot", head_ref=branch, head_sha=head_sha,
        )  # fmt: skip
        revert.draft, revert.opened_by_api = bool(arguments.get("draft", False)), True
        payload = {"pullRequest": _graphql_pr(original), "revertPullRequest": _graphql_pr(revert)}
        return web.json_response({"data": {"revertPullRequest": payload}})

    def _revert_on_branch(self, merge_sha: str, branch: str) -> str:
        """Revert `merge_sha` (its first parent as mainline) on a new `branch` off main."""
        mainline = (
            ["-m", "1"] if len(self.git("show", "-s", "--format=%P", merge_sha).split()) > 1 else []
        )
        self.tick()
        self.git("checkout", "-q", "-b", branch, "main")
        try:
            self.git("revert", "--no-edit", *mainline, merge_sha)
        except GitFailed:
            with contextlib.suppress(GitFailed):
                self.git("revert", "--abort")
            self.git("checkout", "-q", "main")
            self.git("branch", "-q", "-D", branch)
            raise
        self.git("checkout", "-q", "main")
        return self.head_sha(branch)


def _rate_limited(retry_after: int, *, secondary: bool) -> web.Response:
    """GitHub's 403: secondary limits send `retry-after`, primary ones a reset time."""
    if secondary:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        headers = {"retry-after": str(retry_after)}
    else:
        message = "API rate limit exceeded for installation."
        reset = int(datetime.now(tz=UTC).timestamp()) + retry_after
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    body = json.dumps(payloads.error(message, 403))
    return web.Response(status=403, text=body, content_type="application/json", headers=headers)


class ApiError(Exception):
    """An error answer: the middleware turns it into GitHub's error body with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _page(items: list[Any], query: Mapping[str, str]) -> list[Any]:
    """One page of `items` per GitHub's `page`/`per_page` (default 30, at most 100)."""
    per_page = min(int(query.get("per_page", "30")), 100)
    page = max(int(query.get("page", "1")), 1)
    return items[(page - 1) * per_page : page * per_page]


def _graphql_pr(pr: FakePR) -> Json:
    """The fields of a GraphQL `PullRequest` the forge selects."""
    return {"id": pr.node_id, "number": pr.number, "url": pr.html_url, "title": pr.title,
            "headRefName": pr.head_ref, "headRefOid": pr.head_sha}  # fmt: skip


def _graphql_error(kind: str, message: str) -> web.Response:
    """GitHub's GraphQL failure: HTTP 200 with `errors` and a null field."""
    error = {"type": kind, "path": ["revertPullRequest"], "message": message,
             "locations": [{"line": 2, "column": 3}]}  # fmt: skip
    return web.json_response({"data": {"revertPullRequest": None}, "errors": [error]})
