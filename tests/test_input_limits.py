"""Bodies past what Rearguard can hold are refused where they enter, with 400 and a message
naming the field: times outside 1970-2100, a start after the finish, numbers of 400 digits or
past 64 bits, NaN, JSON nested past the limit, lone surrogates anywhere, negative PR numbers.
Every sender's body goes through the one JSON reader; nothing refused reaches the store."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from tests.api_rig import (
    ALERTMANAGER_TOKEN,
    SENTRY_SECRET,
    SERVICE,
    SHA,
    SLACK_SECRET,
    START,
    bearer,
    github_headers,
    start_app,
    table_counts,
)
from tests.shared_fixtures import load_json

DEEP = 65  # one level past the reader's limit


def _deploy(**fields: Any) -> str:
    body = {"service": SERVICE, "environment": "production", "sha": SHA, **fields}
    return json.dumps(body)


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(_deploy(finished_at="0001-01-01T00:00:00Z"), "finished_at", id="year-1"),
        pytest.param(_deploy(finished_at="1969-12-31T23:59:59Z"), "finished_at", id="1969"),
        pytest.param(_deploy(finished_at="2100-01-01T00:00:00Z"), "finished_at", id="2100"),
        pytest.param(_deploy(finished_at="9999-12-31T23:59:59+14:00"), "finished_at", id="9999"),
        pytest.param(_deploy(finished_at=-1), "finished_at", id="negative"),
        pytest.param(_deploy(finished_at=4102444800), "finished_at", id="number-2100"),
        pytest.param(_deploy(finished_at=1e300), "finished_at", id="1e300"),
        pytest.param(_deploy(finished_at=float("nan")), "finished_at", id="nan"),
        pytest.param(_deploy(finished_at=float("inf")), "finished_at", id="infinity"),
        pytest.param(_deploy()[:-1] + ', "finished_at": 1' + "0" * 399 + "}", "finished_at",
                     id="400-digit-int"),
        pytest.param(_deploy()[:-1] + ', "finished_at": 1' + "0" * 399 + ".5}", "finished_at",
                     id="400-digit-float"),
        pytest.param(_deploy(finished_at="2026-11-02T10:00:00Z", started_at="2026-11-02T11:00:00Z"),
                     "started_at", id="started-after-finished"),
        pytest.param(_deploy(started_at="0001-01-01T00:00:00Z"), "started_at", id="start-year-1"),
        pytest.param(_deploy()[:-1] + ', "extra": ' + str(2**64) + "}", "extra",
                     id="past-64-bits"),
        pytest.param(_deploy(extra=-(2**63) - 1), "extra", id="below-64-bits"),
        pytest.param('{"service": "\\ud800", "environment": "production"}', "service",
                     id="lone-surrogate"),
        pytest.param(_deploy()[:-1] + ', "note": ["ok", "\\udfff"]}', "note[1]",
                     id="surrogate-in-a-list"),
        pytest.param(_deploy()[:-1] + ', "\\ud800": 1}', "\\ud800", id="surrogate-key"),
        pytest.param(_deploy()[:-1] + f', "x": {_nested(DEEP)}}}', "x[0][0]", id="too-deep"),
        pytest.param(_deploy()[:-1] + f', "x": {_nested(100_000)}}}', "body", id="far-too-deep"),
        pytest.param(_deploy(url="javascript:alert(1)"), "url", id="script-url"),
    ],
)  # fmt: skip
async def test_cd_hook_refuses_what_cannot_be_held(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: str, field: str
) -> None:
    """A deploy body past the limits: 400 in the JSON error shape naming the field (its path
    from the root), no row."""
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    response = await client.post(
        "/v1/deploys", data=body, headers={**bearer(), "Content-Type": "application/json"}
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] in {"bad_field", "malformed_body"}
    assert f"`{field}" in error["message"], error
    assert await table_counts(client) == before


def _github(event: str, fixture: str, path: tuple[str, ...], value: Any) -> tuple[str, bytes]:
    payload: dict[str, Any] = copy.deepcopy(load_json(fixture))
    payload["repository"]["full_name"] = "Codertocat/Hello-World"
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event, json.dumps(payload).encode()


DEPLOYMENT = "github-webhooks/deployment_status/payload.json"
PULL = "github-webhooks/pull_request/closed.payload.json"


@pytest.mark.parametrize(
    ("event_body", "field"),
    [
        (
            partial(_github, "deployment_status", DEPLOYMENT, ("deployment", "id"), 2**64),
            "deployment.id",
        ),
        (
            partial(_github, "deployment_status", DEPLOYMENT, ("deployment", "id"), -5),
            "deployment.id",
        ),
        (
            partial(
                _github,
                "deployment_status",
                DEPLOYMENT,
                ("deployment_status", "updated_at"),
                "0001-01-01T00:00:00Z",
            ),
            "deployment_status.updated_at",
        ),
        (
            partial(
                _github,
                "deployment_status",
                DEPLOYMENT,
                ("deployment", "created_at"),
                "2300-01-01T00:00:00Z",
            ),
            "deployment.created_at",
        ),
        (
            partial(_github, "pull_request", PULL, ("pull_request", "title"), "\ud800"),
            "pull_request.title",
        ),
    ],
)
async def test_github_webhook_refuses_what_cannot_be_held(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    event_body: Callable[[], tuple[str, bytes]],
    field: str,
) -> None:
    """A signed GitHub delivery past the limits: 400 naming the field, nothing journaled."""
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    event, body = event_body()  # built here: without the shared samples only this test skips
    headers = github_headers(body, event, "d-limits")
    response = await client.post("/v1/webhooks/github", data=body, headers=headers)
    assert response.status == 400, await response.text()
    assert f"`{field}`" in (await response.json())["error"]["message"]
    assert await table_counts(client) == before


def _alert(starts: str) -> bytes:
    data: dict[str, Any] = copy.deepcopy(load_json("alertmanager/zulip/alert.json"))
    data["alerts"][0]["labels"].update(service=SERVICE)
    data["alerts"][0]["startsAt"] = starts
    return json.dumps(data).encode()


def _sentry(when: str) -> bytes:
    data: dict[str, Any] = copy.deepcopy(load_json("sentry/webhooks/event_alert.triggered.json"))
    data["data"]["event"]["datetime"] = when
    return json.dumps(data).encode()


def _slack_signed(body: bytes) -> dict[str, str]:
    base = f"v0:{int(START)}:".encode() + body
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(int(START)), "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


def _sentry_signed(body: bytes) -> dict[str, str]:
    signature = hmac.new(SENTRY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Sentry-Hook-Resource": "event_alert", "Sentry-Hook-Signature": signature,
            "Request-ID": "r-limits", "Content-Type": "application/json"}  # fmt: skip


SLACK_DEEP = urlencode({"payload": '{"type": "block_actions", "x": ' + _nested(DEEP) + "}"})
SLACK_SURROGATE = urlencode({"payload": '{"type": "block_actions", "user": {"id": "\\ud800"}}'})


Request = tuple[str, Callable[[], bytes], dict[str, str] | None]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            (
                "/v1/webhooks/alertmanager",
                partial(_alert, "0001-01-01T00:00:00Z"),
                bearer(ALERTMANAGER_TOKEN),
            ),
            "alerts[0].startsAt",
        ),
        (
            ("/v1/webhooks/sentry", partial(_sentry, "2200-01-01T00:00:00Z"), None),
            "data.event.datetime",
        ),
        (("/v1/webhooks/slack", SLACK_DEEP.encode, None), "payload.x[0]"),
        (("/v1/webhooks/slack", SLACK_SURROGATE.encode, None), "payload.user.id"),
    ],
)
async def test_every_sender_body_goes_through_the_one_reader(
    aiohttp_client: AiohttpClient, tmp_path: Path, request_: Request, field: str
) -> None:
    """Alertmanager, Sentry and Slack bodies past the limits: 400 naming the field, no row."""
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    path, make_body, headers = request_
    body = make_body()  # built here: without the shared samples only this test skips
    if headers is None:
        headers = _slack_signed(body) if path.endswith("slack") else _sentry_signed(body)
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 400, await response.text()
    assert f"`{field}" in (await response.json())["error"]["message"]
    assert await table_counts(client) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "confirmed", "actor": "a", "pr": -2}, "pr"),
        ({"kind": "confirmed", "actor": "a", "pr": 2**70}, "pr"),
        ({"kind": "confirmed", "actor": "\ud800"}, "actor"),
    ],
)
async def test_feedback_refuses_what_cannot_be_held(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    """A feedback body with a negative or 70-bit PR number or a lone surrogate: 400 naming it
    (before the incident is even looked up)."""
    client = await start_app(aiohttp_client, tmp_path)
    response = await client.post(
        "/v1/incidents/inc_1/feedback",
        data=json.dumps(body),
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert response.status == 400, await response.text()
    assert f"`{field}`" in (await response.json())["error"]["message"]
