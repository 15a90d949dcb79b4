"""The HTTP API over loopback: `build_app` with a real DuckDB store and embedded clients.

Requests go through aiohttp's test client; the store is read back either through the app's own
GET endpoints while it runs or by reopening the DuckDB file after the client (and so the app,
its only writer) has closed.
"""

from __future__ import annotations

import copy
import hmac
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from attribution.records import MergedPR
from attribution.store import Store
from loop.api.app import build_app
from loop.clock import ManualClock
from loop.config import ENV_API_TOKEN, ENV_GITHUB_WEBHOOK_SECRET, Settings, settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge
from tests.shared_fixtures import load_json

API_TOKEN = "api-token-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"
SERVICE = "hello"
REPO = "Codertocat/Hello-World"  # the repository of GitHub's sample webhook payloads
START = 1_790_000_000.0
SHA = "9f3c2a1b7e6d5c4b3a29187f6e5d4c3b2a190817"
PR_BODY = (
    "Cache the greeting.\n\nCloses #1\n\n"
    "Agent-Session: sess-01J8ZQ\n"
    "Agent-Name: claude-code\n"
    "Agent-Model: claude-sonnet-4-6\n"
    "Agent-Tokens: 12345\n"
    "Agent-Cost-USD: 0.42\n"
)

Client = TestClient[web.Request, web.Application]


def make_settings(store: Path) -> Settings:
    return settings_from(
        {
            "server": {"store": str(store)},
            "services": {
                SERVICE: {
                    "repo": REPO,
                    "slis": {
                        "errors": {
                            "bad": 'sum(increase(http_requests_total{code=~"5.."}[$step]))',
                            "total": "sum(increase(http_requests_total[$step]))",
                        }
                    },
                }
            },
        },
        {ENV_API_TOKEN: API_TOKEN, ENV_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET},
        "test_api",
    )


@dataclass
class Api:
    """A running app, its test client, its clock and the path of its store."""

    client: Client
    clock: ManualClock
    store_path: Path

    async def stop(self) -> None:
        """Close the client, which runs the app's cleanup and closes the store."""
        await self.client.close()

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows from the store, reopened after `stop` (the app is its only writer)."""
        store = await Store.open(self.store_path)
        try:
            return await store.fetch(sql)
        finally:
            await store.close()

    async def prs(self) -> list[MergedPR]:
        store = await Store.open(self.store_path)
        try:
            return await store.prs.of_repo(REPO)
        finally:
            await store.close()


@pytest.fixture
async def api(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Api]:
    store_path = tmp_path / "store" / "rearguard.duckdb"
    clock = ManualClock(START)
    clients = (
        SimulatedSource(),
        LocalGitForge(tmp_path / "repo"),
        ConsoleNotifier(io.StringIO()),
    )
    app = build_app(make_settings(store_path), clock=clock, clients=clients, scheduler=False)
    client = await aiohttp_client(app)
    yield Api(client, clock, store_path)
    await client.close()


def bearer(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def deploy_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": SERVICE,
        "environment": "production",
        "sha": SHA,
        "previous_sha": "1111111111111111111111111111111111111111",
        "finished_at": "2026-11-02T10:00:00Z",
        "url": "https://ci.example.com/runs/7",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def sign(body: bytes, secret: str = WEBHOOK_SECRET, algorithm: str = "sha256") -> str:
    return f"{algorithm}=" + hmac.new(secret.encode(), body, algorithm).hexdigest()


def github_headers(
    event: str, delivery: str, body: bytes, signature: str | None = "sign"
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    return headers


async def post_github(api: Api, event: str, delivery: str, payload: Any) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    response = await api.client.post(
        "/v1/webhooks/github", data=body, headers=github_headers(event, delivery, body)
    )
    return response.status, await response.json()


def merged_pr_payload() -> dict[str, Any]:
    """GitHub's sample `pull_request` closed event, turned into a merge by an agent."""
    payload: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/pull_request/closed.payload.json")
    )
    pr = payload["pull_request"]
    pr["merged"] = True
    pr["merged_at"] = "2026-11-02T09:30:00Z"
    pr["merge_commit_sha"] = SHA
    pr["body"] = PR_BODY
    return payload


async def refused(api: Api, route: str, reason: str) -> float:
    """How many requests to `route` `/metrics` counts as refused for `reason`."""
    text = await (await api.client.get("/metrics")).text()
    line = f'rearguard_refused_requests_total{{reason="{reason}",route="{route}"}} '
    return sum(float(x.removeprefix(line)) for x in text.splitlines() if x.startswith(line))


def assert_error(payload: Any, code: str) -> None:
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message"}
    assert payload["error"]["code"] == code
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["message"]


# -- POST /v1/deploys ------------------------------------------------------------------------


async def test_deploy_is_accepted_and_shown_as_deployed(api: Api) -> None:
    """A CD hook answers 202 with an id, and the deploy reads back in phase `deployed`."""
    response = await api.client.post("/v1/deploys", json=deploy_body(), headers=bearer())
    assert response.status == 202
    deploy_id = (await response.json())["id"]
    assert deploy_id.startswith("dep_")

    shown = await api.client.get(f"/v1/deploys/{deploy_id}", headers=bearer())
    assert shown.status == 200
    view = await shown.json()
    assert view["id"] == deploy_id
    assert view["phase"] == "deployed"
    assert (view["service"], view["environment"], view["sha"]) == (SERVICE, "production", SHA)
    assert view["repo"] == REPO
    assert view["source"] == "cd"
    assert view["finished_at"] == pytest.approx(1_793_613_600.0)
    assert [step["to"] for step in view["timeline"]] == ["deployed"]


async def test_same_deploy_posted_twice_makes_one_deploy(api: Api) -> None:
    """A CD hook that retries gets the same id back and the store keeps one deploy."""
    first = await api.client.post("/v1/deploys", json=deploy_body(), headers=bearer())
    await api.clock.sleep(30)
    second = await api.client.post("/v1/deploys", json=deploy_body(), headers=bearer())
    assert (first.status, second.status) == (202, 202)
    first_body, second_body = await first.json(), await second.json()
    assert first_body["id"] == second_body["id"]
    assert (first_body["created"], second_body["created"]) == (True, False)

    listed = await (await api.client.get("/v1/deploys", headers=bearer())).json()
    assert [d["id"] for d in listed["deploys"]] == [first_body["id"]]
    await api.stop()
    assert await api.rows("SELECT count(*) FROM deploys") == [(1,)]
    assert await api.rows("SELECT count(*) FROM watches") == [(1,)]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(bearer("not-the-token"), id="wrong-token"),
        pytest.param({"Authorization": f"Basic {API_TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="empty-token"),
    ],
)
async def test_deploy_without_the_bearer_token_is_refused(
    api: Api, headers: dict[str, str]
) -> None:
    """No or a wrong bearer token answers 401 in the JSON error shape and records nothing."""
    response = await api.client.post("/v1/deploys", json=deploy_body(), headers=headers)
    assert response.status == 401
    assert response.content_type == "application/json"
    assert_error(await response.json(), "unauthorized")
    await api.stop()
    assert await api.rows("SELECT count(*) FROM deploys") == [(0,)]
    assert await api.rows("SELECT count(*) FROM journal") == [(0,)]


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        pytest.param(
            json.dumps(deploy_body(service="nope")), 422, "unknown_service", "nope", id="service"
        ),
        pytest.param(b'{"service": "hello", ', 400, "malformed_body", "JSON", id="malformed"),
        pytest.param(b"[1, 2]", 400, "malformed_body", "object", id="not-an-object"),
        pytest.param(json.dumps(deploy_body(sha=None)), 400, "missing_field", "`sha`", id="no-sha"),
        pytest.param(json.dumps(deploy_body(sha="main")), 400, "bad_field", "`sha`", id="bad-sha"),
        pytest.param(json.dumps(deploy_body(sha=1234567)), 400, "bad_field", "`sha`", id="int-sha"),
        pytest.param(
            json.dumps(deploy_body(finished_at="2026-11-02T10:00:00")),
            400,
            "bad_field",
            "`finished_at`",
            id="naive-finished-at",
        ),
        pytest.param(
            json.dumps(deploy_body(finished_at=float("nan"))),
            400,
            "bad_field",
            "`finished_at`",
            id="nan-finished-at",
        ),
        pytest.param(
            json.dumps(deploy_body(finished_at=1e300)),
            400,
            "bad_field",
            "`finished_at`",
            id="far-finished-at",
        ),
        pytest.param(
            json.dumps(deploy_body(environment=None)),
            400,
            "missing_field",
            "`environment`",
            id="no-environment",
        ),
    ],
)
async def test_bad_deploy_body_is_refused_naming_the_problem(
    api: Api, body: str | bytes, status: int, code: str, names: str
) -> None:
    """A deploy body that cannot be a deploy answers 400 (422 when it names an unknown service)
    and the message says why."""
    response = await api.client.post(
        "/v1/deploys",
        data=body,
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert response.status == status
    payload = await response.json()
    assert_error(payload, code)
    assert names in payload["error"]["message"]
    listed = await (await api.client.get("/v1/deploys", headers=bearer())).json()
    assert listed == {"deploys": []}


# -- POST /v1/webhooks/github: pull_request ---------------------------------------------------


async def test_merged_pr_is_recorded_with_its_agent_session(api: Api) -> None:
    """A signed `pull_request` closed+merged event records the PR and the agent that wrote it."""
    status, answer = await post_github(api, "pull_request", "d-merged-1", merged_pr_payload())
    assert status == 202
    assert answer == {"status": "accepted", "delivery": "d-merged-1"}
    await api.stop()

    [pr] = await api.prs()
    assert (pr.repo, pr.number, pr.merge_sha) == (REPO, 2, SHA)
    assert pr.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert pr.url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert pr.labels == ("bug",)
    assert pr.identity.kind == "agent"
    assert pr.identity.session == "sess-01J8ZQ"
    assert pr.identity.name == "claude-code"
    assert pr.identity.model == "claude-sonnet-4-6"
    assert pr.identity.spec == "Codertocat/Hello-World#1"
    assert pr.identity.tokens == 12345
    assert pr.identity.cost_usd == pytest.approx(0.42)
    assert await api.rows("SELECT id, agent_name, model FROM agent_sessions") == [
        ("sess-01J8ZQ", "claude-code", "claude-sonnet-4-6")
    ]
    assert await api.rows("SELECT source, event, status FROM journal") == [
        ("github", "pull_request", "applied")
    ]


async def test_closed_unmerged_pr_is_journaled_as_ignored(api: Api) -> None:
    """GitHub's sample closed-not-merged event is kept in the journal as ignored, no PR row."""
    payload = load_json("github-webhooks/pull_request/closed.payload.json")
    assert payload["pull_request"]["merged"] is False
    status, answer = await post_github(api, "pull_request", "d-closed-1", payload)
    assert status == 202
    assert answer["status"] == "ignored"
    await api.stop()
    assert await api.prs() == []
    assert await api.rows("SELECT id, status, body IS NOT NULL FROM journal") == [
        ("github:d-closed-1", "ignored", True)
    ]


def _wrong_secret(body: bytes) -> str:
    return sign(body, "not-the-secret")


def _sha1(body: bytes) -> str:
    return sign(body, algorithm="sha1")


def _not_hex(body: bytes) -> str:
    return "sha256=" + "z" * 64


def _tampered(body: bytes) -> str:
    return sign(body + b" ")


@pytest.mark.parametrize(
    ("header", "make"),
    [
        pytest.param("X-Hub-Signature-256", _wrong_secret, id="wrong-secret"),
        pytest.param("X-Hub-Signature-256", _tampered, id="other-body"),
        pytest.param("X-Hub-Signature-256", _not_hex, id="not-hex"),
        pytest.param("X-Hub-Signature-256", _sha1, id="sha1-value"),
        pytest.param("X-Hub-Signature", _sha1, id="only-sha1-header"),
        pytest.param(None, None, id="missing"),
    ],
)
async def test_unverified_github_delivery_is_refused_and_writes_nothing(
    api: Api, header: str | None, make: Callable[[bytes], str] | None
) -> None:
    """A bad, SHA-1 or missing signature answers 401, is counted, and writes no row at all."""
    body = json.dumps(merged_pr_payload()).encode()
    headers = github_headers("pull_request", "d-forged-1", body, signature=None)
    if header is not None and make is not None:
        headers[header] = make(body)
    response = await api.client.post("/v1/webhooks/github", data=body, headers=headers)
    assert response.status == 401
    assert_error(await response.json(), "bad_signature")
    assert await refused(api, "/v1/webhooks/github", "bad_signature") == 1
    await api.stop()
    assert await api.rows("SELECT count(*) FROM journal") == [(0,)]
    assert await api.rows("SELECT count(*) FROM pull_requests") == [(0,)]
    assert await api.rows("SELECT count(*) FROM agent_sessions") == [(0,)]


async def test_valid_delivery_after_a_forged_one_with_its_id_is_applied(api: Api) -> None:
    """A rejected request does not claim its delivery id: the genuine delivery still applies."""
    body = json.dumps(merged_pr_payload()).encode()
    forged = await api.client.post(
        "/v1/webhooks/github",
        data=body,
        headers=github_headers("pull_request", "d-shared", body, signature=_wrong_secret(body)),
    )
    assert forged.status == 401
    status, answer = await post_github(api, "pull_request", "d-shared", merged_pr_payload())
    assert (status, answer["status"]) == (202, "accepted")
    await api.stop()
    assert [pr.number for pr in await api.prs()] == [2]
    assert await api.rows("SELECT status FROM journal") == [("applied",)]


async def test_malformed_github_body_with_a_valid_signature_is_a_bad_request(api: Api) -> None:
    """A correctly signed body that is not JSON answers 400, not 401 or 500."""
    body = b'{"action": "closed", "pull_request": '
    response = await api.client.post(
        "/v1/webhooks/github", data=body, headers=github_headers("pull_request", "d-bad", body)
    )
    assert response.status == 400
    assert_error(await response.json(), "malformed_body")
    assert await refused(api, "/v1/webhooks/github", "malformed_body") == 1
    await api.stop()
    assert await api.rows("SELECT count(*) FROM journal") == [(0,)]


async def test_merged_pr_without_a_number_is_refused_naming_the_field(api: Api) -> None:
    """A merged PR event missing `pull_request.number` answers 400 naming that field."""
    payload = merged_pr_payload()
    del payload["pull_request"]["number"]
    status, answer = await post_github(api, "pull_request", "d-nonumber", payload)
    assert status == 400
    assert_error(answer, "missing_field")
    assert "`pull_request.number`" in answer["error"]["message"]
    await api.stop()
    assert await api.rows("SELECT count(*) FROM pull_requests") == [(0,)]


async def test_redelivered_pr_is_answered_duplicate_and_applied_once(api: Api) -> None:
    """The same X-GitHub-Delivery twice: the second answer says duplicate and changes nothing."""
    first_status, first = await post_github(api, "pull_request", "d-again", merged_pr_payload())
    await api.clock.sleep(3600)
    again = merged_pr_payload()
    again["pull_request"]["title"] = "A title the redelivery must not write"
    second_status, second = await post_github(api, "pull_request", "d-again", again)
    assert (first_status, first["status"]) == (202, "accepted")
    assert second["status"] == "duplicate"
    assert second["delivery"] == "d-again"
    assert second_status in {200, 202}
    await api.stop()
    [pr] = await api.prs()
    assert pr.title == "Update the README with new information."
    assert await api.rows("SELECT epoch(recorded_at) FROM pull_requests") == [(START,)]
    assert await api.rows("SELECT count(*) FROM journal") == [(1,)]


# -- POST /v1/webhooks/github: deployment_status ----------------------------------------------


async def test_successful_deployment_status_records_a_deploy(api: Api) -> None:
    """GitHub's sample `deployment_status` success event becomes deploy `gh_<deployment id>`."""
    payload = load_json("github-webhooks/deployment_status/payload.json")
    assert payload["deployment_status"]["state"] == "success"
    status, answer = await post_github(api, "deployment_status", "d-deploy-1", payload)
    assert (status, answer["status"]) == (202, "accepted")

    shown = await api.client.get(f"/v1/deploys/gh_{payload['deployment']['id']}", headers=bearer())
    assert shown.status == 200
    view = await shown.json()
    assert view["phase"] == "deployed"
    assert view["service"] == SERVICE
    assert view["sha"] == payload["deployment"]["sha"]
    assert (view["environment"], view["source"], view["repo"]) == ("production", "github", REPO)
    assert view["url"] is None  # the sample's empty target_url is no URL


async def test_pending_deployment_status_is_ignored(api: Api) -> None:
    """A `deployment_status` that is not `success` is journaled as ignored and makes no deploy."""
    payload = load_json("github-webhooks/deployment_status/payload.json")
    payload["deployment_status"]["state"] = "pending"
    status, answer = await post_github(api, "deployment_status", "d-pending", payload)
    assert (status, answer["status"]) == (202, "ignored")
    missing = await api.client.get(
        f"/v1/deploys/gh_{payload['deployment']['id']}", headers=bearer()
    )
    assert missing.status == 404
    assert await (await api.client.get("/v1/deploys", headers=bearer())).json() == {"deploys": []}


async def test_deployment_status_of_an_unknown_repository_is_ignored(api: Api) -> None:
    """A deploy of a repository no service watches is acknowledged and ignored, with a reason,
    and starts no Watch (tests/test_unknown_targets.py has the other cases)."""
    payload = load_json("github-webhooks/deployment_status/payload.json")
    payload["repository"]["full_name"] = "someone/else"
    status, answer = await post_github(api, "deployment_status", "d-other", payload)
    assert (status, answer["status"]) == (202, "ignored")
    assert "not in the config" in answer["reason"]
    await api.stop()
    assert await api.rows("SELECT count(*) FROM watches") == [(0,)]


# -- reads, health and unknown routes ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/incidents/inc_nope", "/v1/deploys/dep_nope"])
async def test_unknown_deploy_or_incident_is_not_found(api: Api, path: str) -> None:
    """An id the store does not hold answers 404 in the JSON error shape."""
    response = await api.client.get(path, headers=bearer())
    assert response.status == 404
    payload = await response.json()
    assert_error(payload, "not_found")
    assert "nope" in payload["error"]["message"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints_answer_ok(api: Api, path: str) -> None:
    """Liveness and readiness answer 200 once the store is open."""
    response = await api.client.get(path)
    assert response.status == 200
    assert (await response.json())["status"] in {"ok", "ready"}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/webhooks/github", 405, "method_not_allowed"),
    ],
)
async def test_unknown_route_answers_a_json_error(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    """Routing failures use the same JSON error shape as the handlers."""
    response = await api.client.request(method, path)
    assert response.status == status
    assert response.content_type == "application/json"
    assert_error(await response.json(), code)
