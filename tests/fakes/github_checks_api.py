"""Check runs, commit statuses and GitHub App authentication for `FakeGitHub`.

As strict as GitHub where Rearguard could go wrong:

- `POST /repos/{o}/{r}/check-runs` and `PATCH .../check-runs/{id}` answer 403 "You must
  authenticate via a GitHub App." to anything but an installation token; 422 for a `head_sha`
  the repository does not hold, a missing `name`, an unknown `status` or `conclusion`,
  `status: completed` without a `conclusion` (a `conclusion` alone sets `completed`, as GitHub
  does), an `output` without `title` and `summary`, a summary over 65,535 characters or more
  than 50 annotations; 404 for an unknown check run.
- `GET .../commits/{ref}/check-runs` lists them (`check_name`, newest first).
- `POST .../statuses/{sha}`: 422 for an unknown sha or a state other than pending, success,
  failure, error; `GET .../commits/{ref}/status` is the combined status (latest per context).
- The App flow: with `enable_app(app_id, public_key_pem, installation_id)`, a JWT (RS256, checked
  against the public key, `iss` the App id, `exp` at most 10 minutes after `iat`) is taken by
  `POST /app/installations/{id}/access_tokens`, which answers a fresh installation token, and by
  `GET /repos/{o}/{r}/installation`; every other call takes the token, never the JWT.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from tests.fakes.git_repo import GitFailed
from tests.fakes.github_api import ApiError

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

Json = dict[str, Any]
STATUSES = {"queued", "in_progress", "completed", "waiting", "requested", "pending"}
CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped",
               "stale", "timed_out"}  # fmt: skip
STATES = {"pending", "success", "failure", "error"}
CREDENTIAL = web.RequestKey("credential_kind", str)
"""What authenticated the request: `token`, `installation` or `jwt` (set by the auth middleware)."""
APP_PERMISSIONS = {"checks": "write", "contents": "write", "issues": "write", "metadata": "read",
                   "pull_requests": "write", "statuses": "write"}  # fmt: skip


@dataclass
class FakeCheckRun:
    """A check run as created and updated through the API."""

    id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    external_id: str | None
    output: Json
    details_url: str | None
    updates: int = 0


@dataclass
class FakeApp:
    """The one GitHub App the fake knows, and the installation tokens it handed out."""

    app_id: int
    public_key: str
    installation_id: int
    permissions: Json = field(default_factory=lambda: dict(APP_PERMISSIONS))
    tokens: set[str] = field(default_factory=set)
    jwts_seen: int = 0


class GitHubChecksApi:
    """The check-run, status and App routes of one `FakeGitHub`."""

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = fake
        self.check_runs: list[FakeCheckRun] = []
        self.statuses: list[Json] = []  # oldest first, each with its `sha`
        self.app: FakeApp | None = None
        self._ids = itertools.count(1001)

    def register(self, app: web.Application) -> None:
        repo, add = "/repos/{owner}/{repo}", app.router.add_route
        add("POST", f"{repo}/check-runs", self._create_run)
        add("PATCH", f"{repo}/check-runs/{{id:\\d+}}", self._update_run)
        add("GET", f"{repo}/commits/{{ref}}/check-runs", self._list_runs)
        add("POST", f"{repo}/statuses/{{sha}}", self._create_status)
        add("GET", f"{repo}/commits/{{ref}}/status", self._combined)
        add("GET", f"{repo}/installation", self._repo_installation)
        add("POST", "/app/installations/{id:\\d+}/access_tokens", self._access_token)

    # -- authentication ------------------------------------------------------------------------

    def credential_kind(self, request: web.Request, credential: str) -> str | None:
        """`token` (the personal token), `installation`, `jwt` (only on the App's own routes),
        or None (401)."""
        if credential == self._fake.token:
            return "token"
        app = self.app
        if app is None:
            return None
        if credential in app.tokens:
            return "installation"
        app_route = request.path.startswith("/app/") or request.path.endswith("/installation")
        if app_route and self._valid_jwt(app, credential):
            return "jwt"
        return None

    def _valid_jwt(self, app: FakeApp, token: str) -> bool:
        try:
            claims = jwt.decode(token, app.public_key, algorithms=["RS256"],
                                options={"require": ["iss", "iat", "exp"]}, leeway=60)  # fmt: skip
        except jwt.PyJWTError:
            return False
        if str(claims["iss"]) != str(app.app_id) or claims["exp"] - claims["iat"] > 600:
            return False
        app.jwts_seen += 1
        return True

    async def _access_token(self, request: web.Request) -> web.Response:
        app = self._need(request, "jwt")
        if int(request.match_info["id"]) != app.installation_id:
            raise ApiError(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        app.tokens.add(token)
        expires = (datetime.now(tz=UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"token": token, "expires_at": expires, "permissions": app.permissions,
                "repository_selection": "all"}  # fmt: skip
        return web.json_response(body, status=201)

    async def _repo_installation(self, request: web.Request) -> web.Response:
        app = self._need(request, "jwt")
        body = {"id": app.installation_id, "app_id": app.app_id, "target_type": "Organization",
                "account": {"login": self._fake.owner}, "permissions": app.permissions,
                "repository_selection": "all"}  # fmt: skip
        return web.json_response(body)

    def _need(self, request: web.Request, kind: str) -> FakeApp:
        if self.app is None or request.get(CREDENTIAL) != kind:
            raise ApiError(401, "A JSON web token could not be decoded")
        return self.app

    # -- check runs ----------------------------------------------------------------------------

    def _known_sha(self, sha: str) -> bool:
        if len(sha) != 40:
            return False
        try:
            return self._fake.git("cat-file", "-t", sha).strip() == "commit"
        except GitFailed:
            return False

    def _installation_only(self, request: web.Request) -> None:
        if request.get(CREDENTIAL) != "installation":
            raise ApiError(403, "You must authenticate via a GitHub App.")

    async def _create_run(self, request: web.Request) -> web.Response:
        self._installation_only(request)
        body = await request.json()
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise ApiError(422, 'Invalid request.\n\n"name" wasn\'t supplied.')
        sha = body.get("head_sha")
        if not isinstance(sha, str) or not self._known_sha(sha):
            raise ApiError(422, f"No commit found for SHA: {sha}")
        status, conclusion = _status_of(body, "queued")
        run = FakeCheckRun(next(self._ids), sha, body["name"], status, conclusion,
                           body.get("external_id"), _output(body, {}),
                           body.get("details_url"))  # fmt: skip
        self.check_runs.append(run)
        return web.json_response(self._run_json(run), status=201)

    async def _update_run(self, request: web.Request) -> web.Response:
        self._installation_only(request)
        run_id = int(request.match_info["id"])
        run = next((r for r in self.check_runs if r.id == run_id), None)
        if run is None:
            raise ApiError(404, "Not Found")
        body = await request.json()
        run.status, run.conclusion = _status_of(body, run.status, run.conclusion)
        run.output = _output(body, run.output)
        run.name = body.get("name", run.name)
        run.external_id = body.get("external_id", run.external_id)
        run.details_url = body.get("details_url", run.details_url)
        run.updates += 1
        return web.json_response(self._run_json(run))

    async def _list_runs(self, request: web.Request) -> web.Response:
        sha = self._resolve(request.match_info["ref"])
        name = request.query.get("check_name")
        runs = [r for r in reversed(self.check_runs)
                if r.head_sha == sha and (name is None or r.name == name)]  # fmt: skip
        return web.json_response({"total_count": len(runs),
                                  "check_runs": [self._run_json(r) for r in runs]})  # fmt: skip

    def _resolve(self, ref: str) -> str:
        try:
            return self._fake.git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}").strip()
        except GitFailed as exc:
            raise ApiError(422, f"No commit found for SHA: {ref}") from exc

    def _run_json(self, run: FakeCheckRun) -> Json:
        site = self._fake.site
        return {
            "id": run.id, "head_sha": run.head_sha, "node_id": f"CR_fake{run.id}",
            "external_id": run.external_id or "", "name": run.name, "status": run.status,
            "conclusion": run.conclusion, "details_url": run.details_url,
            "url": f"{site.api}/repos/{site.full_name}/check-runs/{run.id}",
            "html_url": f"https://github.com/{site.full_name}/runs/{run.id}",
            "output": {**run.output, "annotations_count": 0},
            "app": {"id": self.app.app_id if self.app else None, "slug": "rearguard"},
            "pull_requests": [],
        }  # fmt: skip

    # -- statuses ------------------------------------------------------------------------------

    async def _create_status(self, request: web.Request) -> web.Response:
        sha = request.match_info["sha"]
        body = await request.json()
        if not self._known_sha(sha):
            raise ApiError(422, f"No commit found for SHA: {sha}")
        if body.get("state") not in STATES:
            raise ApiError(422, "Validation Failed: state is not included in the list")
        description = body.get("description")
        if description is not None and len(str(description)) > 140:
            raise ApiError(422, "Validation Failed: description is too long (maximum is 140)")
        status = {"id": next(self._ids), "sha": sha, "state": body["state"],
                  "description": description, "target_url": body.get("target_url"),
                  "context": body.get("context") or "default"}  # fmt: skip
        self.statuses.append(status)
        return web.json_response(status, status=201)

    async def _combined(self, request: web.Request) -> web.Response:
        sha = self._resolve(request.match_info["ref"])
        latest: dict[str, Json] = {}
        for status in self.statuses:
            if status["sha"] == sha:
                latest[status["context"]] = status
        listed = sorted(latest.values(), key=lambda s: -int(s["id"]))
        states = {s["state"] for s in listed}
        state = ("failure" if states & {"failure", "error"} else
                 "pending" if "pending" in states or not states else "success")  # fmt: skip
        return web.json_response({"state": state, "sha": sha, "total_count": len(listed),
                                  "statuses": listed})  # fmt: skip

    def statuses_on(self, sha: str) -> list[Json]:
        """Every status posted on `sha`, oldest first."""
        return [s for s in self.statuses if s["sha"] == sha]

    def runs_on(self, sha: str) -> list[FakeCheckRun]:
        """Every check run on `sha`, oldest first."""
        return [r for r in self.check_runs if r.head_sha == sha]


def _status_of(body: Json, status: str, conclusion: str | None = None) -> tuple[str, str | None]:
    """The run's status and conclusion after `body`, by GitHub's rules."""
    new_status, new_conclusion = body.get("status", status), body.get("conclusion", conclusion)
    if "conclusion" in body and "status" not in body:
        new_status = "completed"
    if new_status not in STATUSES:
        raise ApiError(422, f"Invalid request.\n\n{new_status!r} is not a valid status.")
    if new_conclusion is not None and new_conclusion not in CONCLUSIONS:
        raise ApiError(422, f"Invalid request.\n\n{new_conclusion!r} is not a conclusion.")
    if new_status == "completed" and new_conclusion is None:
        raise ApiError(422, "Invalid request.\n\nNo conclusion given for a completed check.")
    if new_status != "completed":
        new_conclusion = None
    return new_status, new_conclusion


def _output(body: Json, current: Json) -> Json:
    output = body.get("output")
    if output is None:
        return current
    if not isinstance(output, dict) or not output.get("title") or not output.get("summary"):
        raise ApiError(422, 'Invalid request.\n\n"title" and "summary" are required.')
    if len(str(output["summary"])) > 65_535 or len(str(output.get("text", ""))) > 65_535:
        raise ApiError(422, "Invalid request.\n\nOnly 65535 characters are allowed.")
    if len(output.get("annotations") or []) > 50:
        raise ApiError(422, "Invalid request.\n\nOnly 50 annotations are allowed per request.")
    return {"title": output["title"], "summary": output["summary"],
            "text": output.get("text")}  # fmt: skip
