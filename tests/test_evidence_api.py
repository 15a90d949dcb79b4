"""Sentry and Alertmanager webhooks, CI events, feedback and reports over the HTTP API.

The app runs with a real DuckDB store; payloads start from the real samples in the shared
fixtures, with the scenario's values laid over them.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from attribution.records import Incident, Suspect
from attribution.store import Store
from attribution.watch_rows import OpenIncident
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.clock import ManualClock
from loop.config import (
    ENV_ALERTMANAGER_TOKEN,
    ENV_API_TOKEN,
    ENV_GITHUB_WEBHOOK_SECRET,
    ENV_SENTRY_SECRET,
    settings_from,
)
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge
from tests.shared_fixtures import load_json
from tests.test_api import PR_BODY, REPO, SHA, START, bearer

SENTRY_SECRET = "sentry-client-secret"
AM_TOKEN = "alertmanager-token"
GH_SECRET = "gh-secret"

Client = TestClient[web.Request, web.Application]


def settings(store: Path) -> Any:
    service = {
        "repo": REPO,
        "sentry_projects": ["1"],
        "routes": {"/checkout": ["src/checkout/**"]},
        "slis": {"errors": {"bad": "sum(bad)", "total": "sum(total)"}},
    }
    env = {
        ENV_API_TOKEN: "api-token-for-tests",
        ENV_SENTRY_SECRET: SENTRY_SECRET,
        ENV_ALERTMANAGER_TOKEN: AM_TOKEN,
        ENV_GITHUB_WEBHOOK_SECRET: GH_SECRET,
    }
    return settings_from(
        {"server": {"store": str(store)}, "services": {"hello": service}}, env, "t"
    )


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Client]:
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "repo"), ConsoleNotifier(io.StringIO()))
    app = build_app(
        settings(tmp_path / "s.duckdb"), clock=ManualClock(START), clients=clients, scheduler=False
    )
    c = await aiohttp_client(app)
    yield c
    await c.close()


def store_of(client: Client) -> Store:
    app = client.app
    assert app is not None
    return app[DEPS].store


def sentry_event() -> bytes:
    """Sentry's documented event alert, its innermost frame made an in-app frame of our code."""
    data = copy.deepcopy(load_json("sentry/webhooks/event_alert.triggered.json"))
    frames = data["data"]["event"]["exception"]["values"][0]["stacktrace"]["frames"]
    frames[-1].update(in_app=True, filename="src/checkout/pay.py", lineno=42, function="charge")
    data["data"]["event"]["datetime"] = "2026-09-21T12:00:00Z"
    return json.dumps(data).encode()


def sentry_headers(
    body: bytes, secret: str = SENTRY_SECRET, request_id: str = "r-1"
) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Sentry-Hook-Resource": "event_alert",
        "Sentry-Hook-Signature": signature,
        "Request-ID": request_id,
        "Content-Type": "application/json",
    }


async def signals(client: Client) -> list[tuple[Any, ...]]:
    return await store_of(client).fetch("SELECT source, key FROM signals ORDER BY id")


async def test_sentry_event_is_kept_once_with_its_in_app_frames(client: Client) -> None:
    """A signed event alert is stored with its in-app frame; its redelivery is not applied twice."""
    body = sentry_event()
    first = await client.post("/v1/webhooks/sentry", data=body, headers=sentry_headers(body))
    again = await client.post("/v1/webhooks/sentry", data=body, headers=sentry_headers(body))
    assert (first.status, (await first.json())["status"]) == (202, "accepted")
    assert (await again.json())["status"] == "duplicate"
    rows = await store_of(client).fetch("SELECT record FROM signals")
    assert len(rows) == 1
    assert json.loads(rows[0][0])["frames"] == [
        {"path": "src/checkout/pay.py", "line": 42, "function": "charge"}
    ]


@pytest.mark.parametrize(
    ("mangle", "status", "code"),
    [
        (lambda b, h: (b, {**h, "Sentry-Hook-Signature": "0" * 64}), 401, "bad_signature"),
        (
            lambda b, h: (b, {k: v for k, v in h.items() if k != "Sentry-Hook-Signature"}),
            401,
            "bad_signature",
        ),
        (lambda b, h: (b"{not json", sentry_headers(b"{not json")), 400, "malformed_body"),
        (lambda b, h: (b'{"data": {}}', sentry_headers(b'{"data": {}}')), 400, "missing_field"),
    ],
)
async def test_sentry_refusals_apply_nothing(
    client: Client, mangle: Any, status: int, code: str
) -> None:
    """A bad signature or a malformed body gets a clear 4xx and nothing is stored."""
    body, headers = mangle(sentry_event(), sentry_headers(sentry_event()))
    answer = await client.post("/v1/webhooks/sentry", data=body, headers=headers)
    assert answer.status == status
    assert (await answer.json())["error"]["code"] == code
    assert await signals(client) == []
    assert await store_of(client).fetch("SELECT count(*) FROM journal") == [(0,)]


def alertmanager_body() -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(load_json("alertmanager/zulip/alert.json"))
    data["alerts"][0]["labels"].update(service="hello", handler="/checkout")
    return data


def _unlabelled_alert() -> bytes:
    return json.dumps({"status": "firing", "alerts": [{"labels": {"service": "hello"}}]}).encode()


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(
            lambda: json.dumps(alertmanager_body()).encode(),
            {"Authorization": "Bearer wrong"},
            401,
            id="wrong-token",
        ),
        pytest.param(lambda: b"[1, 2", {"Authorization": f"Bearer {AM_TOKEN}"}, 400, id="not-json"),
        pytest.param(
            _unlabelled_alert, {"Authorization": f"Bearer {AM_TOKEN}"}, 400, id="missing-fields"
        ),
    ],
)
async def test_alertmanager_refusals_apply_nothing(
    client: Client, body: Callable[[], bytes], headers: dict[str, str], status: int
) -> None:
    """A wrong token or a malformed body gets a clear 4xx and nothing is stored."""
    answer = await client.post("/v1/webhooks/alertmanager", data=body(), headers=headers)
    assert answer.status == status
    assert await signals(client) == []


async def test_alertmanager_firing_alert_for_a_service_is_kept_once(client: Client) -> None:
    """Of the sample's two firing alerts, the one labelled for our service is kept, once."""
    body = json.dumps(alertmanager_body()).encode()
    headers = {"Authorization": f"Bearer {AM_TOKEN}"}
    first = await client.post("/v1/webhooks/alertmanager", data=body, headers=headers)
    again = await client.post("/v1/webhooks/alertmanager", data=body, headers=headers)
    assert (await first.json())["alerts"] == 1
    assert (await again.json())["status"] == "duplicate"
    assert [r[0] for r in await signals(client)] == ["alertmanager"]


def gh_headers(body: bytes, event: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


async def test_workflow_runs_are_counted_per_pr(client: Client) -> None:
    """Two attempts of a workflow run on PR #2, one failed: two runs, one failure."""
    for attempt, conclusion in ((1, "failure"), (2, "success")):
        data = copy.deepcopy(
            load_json("github-webhooks/workflow_run/completed.with-pull-requests.payload.json")
        )
        data["workflow_run"].update(run_attempt=attempt, conclusion=conclusion)
        data["workflow_run"]["pull_requests"] = [{"number": 2}]
        data["repository"]["full_name"] = REPO
        body = json.dumps(data).encode()
        answer = await client.post(
            "/v1/webhooks/github",
            data=body,
            headers=gh_headers(body, "workflow_run", f"d-{attempt}"),
        )
        assert answer.status == 202
    rows = await store_of(client).fetch(
        "SELECT number, attempt, conclusion FROM ci_runs ORDER BY attempt"
    )
    assert rows == [(2, 1, "failure"), (2, 2, "success")]


async def _incident_blaming(client: Client, agent_pr: int) -> str:
    """A merged PR by `claude-code`, deployed, and an incident above the bar blaming it."""
    store = store_of(client)
    data = copy.deepcopy(
        load_json("github-webhooks/pull_request/closed.merged.create-issue-branch.json")
    )
    data["repository"]["full_name"] = REPO
    data["pull_request"].update(number=agent_pr, body=PR_BODY, merge_commit_sha=SHA)
    body = json.dumps(data).encode()
    await client.post(
        "/v1/webhooks/github", data=body, headers=gh_headers(body, "pull_request", "p1")
    )
    answer = await client.post(
        "/v1/deploys",
        headers=bearer(),
        json={"service": "hello", "environment": "production", "sha": SHA},
    )
    deploy_id = (await answer.json())["id"]
    await store.prs.set_deploy_prs(deploy_id, REPO, [agent_pr])
    incident = Incident(
        "inc_1",
        deploy_id,
        "hello",
        "production",
        "errors",
        START,
        {},
        False,
        0.9,
        (agent_pr,),
        "blamed",
        (Suspect(REPO, agent_pr, 0.9, "frame"),),
    )
    await store.watches.transition(
        deploy_id,
        "deployed",
        "regressed",
        now=START,
        next_due=START,
        reason="x",
        rows=(OpenIncident(incident),),
    )
    return incident.id


async def agent_row(client: Client) -> dict[str, Any]:
    rows = (await (await client.get("/v1/reports/agents", headers=bearer())).json())["rows"]
    row: dict[str, Any] = next(r for r in rows if r["agent"] == "claude-code")
    return row


async def test_wrong_pr_restores_the_prior_and_the_report_shows_it(client: Client) -> None:
    """Blamed, the agent's rate rises; marked "wrong PR", it is back and the report says so."""
    incident = await _incident_blaming(client, 2)
    blamed = await agent_row(client)
    assert (blamed["culprits"], blamed["corrections"]) == (1, 0)
    answer = await client.post(
        f"/v1/incidents/{incident}/feedback",
        headers=bearer(),
        json={"kind": "wrong_pr", "pr": 2, "actor": "alice"},
    )
    assert answer.status == 201
    corrected = await agent_row(client)
    assert (corrected["culprits"], corrected["corrections"], corrected["incidents_blamed"]) == (
        0,
        1,
        1,
    )
    assert corrected["smoothed_rate"] < blamed["smoothed_rate"]
    assert corrected["regression_rate"] == 0.0
    rows = await store_of(client).fetch("SELECT kind, pr_number, actor, source FROM feedback")
    assert rows == [("wrong_pr", 2, "alice", "api")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "maybe", "actor": "a"}, 400),
        ({"kind": "confirmed"}, 400),
        ({"kind": "wrong_pr", "pr": 99, "actor": "a"}, 422),  # well-formed, names an unknown PR
        ({"kind": "confirmed", "culprit": 2, "actor": "a"}, 400),
    ],
)
async def test_bad_feedback_is_refused(client: Client, body: dict[str, Any], status: int) -> None:
    """Unknown kinds, no actor, PRs outside the incident: refused, nothing recorded."""
    incident = await _incident_blaming(client, 2)
    answer = await client.post(f"/v1/incidents/{incident}/feedback", headers=bearer(), json=body)
    assert answer.status == status
    assert await store_of(client).fetch("SELECT * FROM feedback") == []


async def test_feedback_needs_the_bearer_token(client: Client) -> None:
    """Without the API token the verdict is refused."""
    incident = await _incident_blaming(client, 2)
    answer = await client.post(
        f"/v1/incidents/{incident}/feedback", json={"kind": "false_alarm", "actor": "a"}
    )
    assert answer.status == 401
