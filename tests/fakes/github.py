"""FakeGitHub: an in-process GitHub (REST + GraphQL) over a real git repository on disk.

It answers the paths githubkit calls for `rollback.github.GitHubForge` (compare, commits, pulls,
issue labels, Git Data refs/commits/trees, GraphQL `revertPullRequest`), with bodies that pass
githubkit's models (`tests.fakes.github_payloads`). Every commit, branch and revert is a real git
object (`tests.fakes.git_repo.GitRepo`), so a test can check that a revert branch really restores
the files. This module holds the fake's state, scenario API, faults and serving; the routes are
`tests.fakes.github_api.GitHubApi`.

Scenario API (plain sync methods; git runs synchronously on the loop, which also serialises the
fake's requests the way one repository would):

- `merge_pr(title, body, files, author=, labels=, method=, branch=)` -> `FakePR`: branch,
  commit, merge.
- `commit(files, message, branch="main")` -> sha: a direct push (e.g. a later conflicting change).
- `add_issue(number, title, body)` -> `FakeIssue`: an issue opened by a person (a spec).
- `head_sha(branch)`, `read_file(path, ref)`, `pulls` (every PR), `open_pulls()`,
  `created_pulls()` (those opened through the API), `requests` ("METHOD /path" log, the path
  decoded) and `raw_requests` (the same as sent: path still quoted, query included).
- `permissions` (what `GET /repos/{o}/{r}` reports of the token; push by default) and
  `oauth_scopes` (the `X-OAuth-Scopes` of a classic token; None: a fine-grained one).
- `checks` (`tests.fakes.github_checks_api`): check runs and commit statuses made through the
  API (`checks.runs_on(sha)`, `checks.statuses_on(sha)`); `enable_app(app_id, public_key,
  installation_id)` accepts GitHub App JWTs and installation tokens besides `token`.
- `pull_request_closed_webhook(number)`, `deployment_status_webhook(sha, environment, state)`.
- Faults: `fail_next(count, status, match=, after=)`, `delay(seconds)`,
  `rate_limit_next(retry_after, secondary=, count=, status=, match=)`,
  `refuse_graphql_reverts(message)`, `hold_answer(match)` (the change is made, its answer never
  sent: the moment a client is killed after GitHub acted), `clear_faults()`.

Serve it with `aiohttp_server(fake.app)` and set `fake.url = str(server.make_url("/"))`, or with
`await fake.start()` / `await fake.close()` (also `async with`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from aiohttp import web

from tests.fakes import github_payloads as payloads
from tests.fakes.git_repo import GitFailed, GitRepo
from tests.fakes.github_api import ApiError, GitHubApi
from tests.fakes.github_changes_api import FakeIssue
from tests.fakes.github_checks_api import CREDENTIAL, FakeApp, GitHubChecksApi
from tests.fakes.github_payloads import FakePR, Json, MergeMethod
from tests.fakes.latency import Latency

__all__ = ["ApiError", "FakeGitHub", "FakeIssue", "FakePR", "GitFailed"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Fault:
    status: int
    match: str | None
    after: bool


@dataclass(frozen=True)
class _Limit:
    retry_after: int | None
    secondary: bool
    status: int
    match: str | None


class FakeGitHub(GitRepo):
    """A GitHub stand-in for one repository (`repo`, default `acme/app`, branch `main`)."""

    def __init__(self, workdir: Path, *, token: str = "fake-token", repo: str = "acme/app") -> None:
        super().__init__(workdir)
        self.token = token
        self.full_name = repo
        self.url = ""
        self.pulls: list[FakePR] = []
        self.issues: list[FakeIssue] = []
        self.auto_merge_allowed = True
        self.checks_pending = True  # False: GitHub calls an open PR "clean" (nothing to wait for)
        self.requests: list[str] = []
        # What `GET /repos/{o}/{r}` reports of the token: its `permissions`, and for a classic
        # token its scopes (`X-OAuth-Scopes`; None: a fine-grained or installation token).
        self.permissions = {"admin": False, "maintain": False, "push": True, "triage": True,
                            "pull": True}  # fmt: skip
        self.oauth_scopes: str | None = None
        self.raw_requests: list[str] = []  # "METHOD /raw/path?query" as it came over the wire
        self._failures: list[_Fault] = []
        self._rate_limits: list[_Limit] = []
        self._holds: dict[str, asyncio.Event] = {}
        self._release = asyncio.Event()
        self._delay = 0.0
        self._latency = Latency(0.0)
        self._runner: web.AppRunner | None = None
        self._api = GitHubApi(self)
        self.checks = GitHubChecksApi(self)
        self.app = web.Application(middlewares=[self._faults, self._auth])
        self._api.register(self.app)
        self.checks.register(self.app)

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
        """Stop serving (only if `start` did); held answers are let go first."""
        self._release.set()
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

    # -- scenario ------------------------------------------------------------------------------

    def merge_pr(
        self,
        title: str,
        body: str = "",
        files: Mapping[str, str | None] | None = None,
        *,
        author: str = "agent-bot",
        labels: Iterable[str] = (),
        method: MergeMethod = "merge",
        branch: str | None = None,
    ) -> FakePR:
        """Open a PR with one commit changing `files` and merge it into main with `method`
        (from head `branch`, by default `<author>/change-<number>` as agents name branches)."""
        number = self.next_number()
        branch = branch or f"{author.removesuffix('[bot]')}/change-{number}"
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
        numbers = [p.number for p in self.pulls] + [i.number for i in self.issues]
        return max(numbers, default=0) + 1

    def add_issue(self, number: int, title: str, body: str = "") -> FakeIssue:
        """An issue a person opened earlier (a spec), numbered `number`."""
        if number in {p.number for p in self.pulls} | {i.number for i in self.issues}:
            raise ValueError(f"#{number} exists")
        issue = FakeIssue(number=number, title=title, body=body, labels=[], assignees=[],
                          html_url=f"https://github.com/{self.full_name}/issues/{number}",
                          created_at=self.tick())  # fmt: skip
        self.issues.append(issue)
        return issue

    def merge_branch(self, pr: FakePR) -> None:
        """Squash-merge open `pr` into main, as the REST merge (or auto-merge) would."""
        self.tick()
        self.git("checkout", "-q", "main")
        self.git("merge", "-q", "--squash", pr.head_ref)
        self.git("commit", "-q", "-m", f"{pr.title} (#{pr.number})")
        pr.state, pr.merged, pr.merged_at = "closed", True, self.tick()
        pr.merge_sha, pr.merge_method = self.head_sha("main"), "squash"

    @property
    def owner(self) -> str:
        """The repository owner's login."""
        return self.full_name.split("/", maxsplit=1)[0]

    @property
    def site(self) -> payloads.Site:
        """Where payload URLs point."""
        return payloads.Site(self.api, self.full_name)

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

    def rate_limit_next(
        self,
        retry_after: int | None,
        *,
        secondary: bool = True,
        count: int = 1,
        status: int = 403,
        match: str | None = None,
    ) -> None:
        """Answer the next `count` requests (those whose "METHOD /path" contains `match`) with
        `status` (403 or 429) rate limited: a secondary limit with `retry-after: retry_after`, or
        with no `retry-after` at all when it is None (GitHub then says only "wait at least a
        minute"); a primary limit with `x-ratelimit-remaining: 0` and the reset `retry_after`
        seconds away."""
        self._rate_limits.extend([_Limit(retry_after, secondary, status, match)] * count)

    def hold_answer(self, line: str) -> asyncio.Event:
        """Handle the next request whose "METHOD /path" is `line`, then never answer it (until
        `close`): the returned event is set once the change is made, so a test can kill the
        client at the moment GitHub has acted and the client has not heard."""
        made = asyncio.Event()
        self._holds[line] = made
        return made

    def clear_faults(self) -> None:
        """Forget every queued failure and rate limit: GitHub is healthy again."""
        self._failures.clear()
        self._rate_limits.clear()

    def delay(self, seconds: float, upto: float | None = None, *, seed: int = 0) -> None:
        """Hold every answer `seconds` before sending it (0 to stop); with `upto`, a time drawn
        uniformly between the two for each answer, from a generator seeded with `seed`."""
        self._delay = seconds
        self._latency = Latency(seconds, upto, seed)

    def refuse_graphql_reverts(
        self, message: str = "Could not revert: not merged on GitHub"
    ) -> None:
        """Make `revertPullRequest` answer with a GraphQL error, as for PRs merged elsewhere."""
        self._api.refusal = message

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        line = f"{request.method} {request.path}"
        self.requests.append(line)
        self.raw_requests.append(f"{request.method} {request.raw_path}")
        if self._delay:
            await asyncio.sleep(self._latency.draw())
        fault = next((f for f in self._failures if f.match is None or f.match in line), None)
        if fault is not None:
            self._failures.remove(fault)
            if fault.after:
                await handler(request)
            body = payloads.error("Server Error", fault.status)
            return web.json_response(body, status=fault.status)
        limit = next((x for x in self._rate_limits if x.match is None or x.match in line), None)
        if limit is not None:
            self._rate_limits.remove(limit)
            return _rate_limited(limit)
        made = self._holds.pop(line, None)
        if made is not None:
            response = await handler(request)
            made.set()
            await self._release.wait()
            return response
        return await handler(request)

    def enable_app(self, app_id: int, public_key: str, installation_id: int) -> FakeApp:
        """Accept GitHub App authentication: JWTs signed with the key `public_key` (PEM) pairs
        with, and the installation tokens they are exchanged for (`checks.app.tokens`)."""
        self.checks.app = FakeApp(app_id, public_key, installation_id)
        return self.checks.app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        kind = self.checks.credential_kind(request, credential)
        if scheme.lower() not in {"token", "bearer"} or kind is None:
            return web.json_response(payloads.error("Bad credentials", 401), status=401)
        request[CREDENTIAL] = kind
        if kind == "jwt" and not (request.path.startswith("/app/")
                                  or request.path.endswith("/installation")):  # fmt: skip
            return web.json_response(payloads.error("Bad credentials", 401), status=401)
        owner, repo = request.match_info.get("owner"), request.match_info.get("repo")
        try:
            if owner is not None and f"{owner}/{repo}" != self.full_name:
                raise ApiError(404, "Not Found")
            return await handler(request)
        except ApiError as exc:
            return web.json_response(payloads.error(str(exc), exc.status), status=exc.status)


def _rate_limited(limit: _Limit) -> web.Response:
    """GitHub's 403 or 429 when rate limited. A secondary limit counts nothing down (the primary
    budget still has requests left) and sends `retry-after` only sometimes; a primary limit sends
    `x-ratelimit-remaining: 0` and the reset time."""
    now = int(datetime.now(tz=UTC).timestamp())
    if limit.secondary:
        message = (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
            "again. If you reach out to GitHub Support for help, please include the request ID."
        )
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990",
                   "x-ratelimit-reset": str(now + 3600)}  # fmt: skip
        if limit.retry_after is not None:
            headers["retry-after"] = str(limit.retry_after)
    else:
        message = "API rate limit exceeded for installation."
        reset = now + (limit.retry_after or 0)
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                   "x-ratelimit-reset": str(reset)}  # fmt: skip
    body = json.dumps(payloads.error(message, limit.status))
    return web.Response(
        status=limit.status, text=body, content_type="application/json", headers=headers
    )
