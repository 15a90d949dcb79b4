"""Webhooks about repositories, environments, services or projects the config does not hold are
acknowledged (202, so the sender does not retry) and ignored with a reason in the journal; they
never start a Watch nor write a record. A CD hook naming an unknown service is the caller's
mistake and stays a 422."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from loop.api.context import DEPS
from tests.api_rig import (
    ALERTMANAGER_TOKEN,
    REPO,
    SENTRY_SECRET,
    SHA,
    Client,
    bearer,
    github_headers,
    start_app,
    table_counts,
)
from tests.shared_fixtures import load_json


def _payload(fixture: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(load_json(fixture))
    payload["repository"]["full_name"] = REPO
    for path, value in changes.items():
        target = payload
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return payload


DEPLOYMENT = "github-webhooks/deployment_status/payload.json"
PULL = "github-webhooks/pull_request/closed.payload.json"
RUN = "github-webhooks/workflow_run/completed.with-pull-requests.payload.json"
MERGED = {"pull_request__merged": True, "pull_request__merged_at": "2026-11-02T09:30:00Z",
          "pull_request__merge_commit_sha": SHA}  # fmt: skip


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        pytest.param(
            "deployment_status",
            partial(_payload, DEPLOYMENT, repository__full_name="else/where"),
            "repository",
            id="deploy-unknown-repo",
        ),
        pytest.param(
            "deployment_status",
            partial(_payload, DEPLOYMENT, deployment__environment="staging"),
            "environment",
            id="deploy-unwatched-environment",
        ),
        pytest.param(
            "deployment_status",
            partial(_payload, DEPLOYMENT, deployment__payload={"service": "nope"}),
            "service",
            id="deploy-unknown-service",
        ),
        pytest.param(
            "pull_request",
            partial(_payload, PULL, repository__full_name="else/where", **MERGED),
            "repository",
            id="merged-pr-unknown-repo",
        ),
        pytest.param(
            "workflow_run",
            partial(_payload, RUN, repository__full_name="else/where"),
            "repository",
            id="ci-unknown-repo",
        ),
    ],
)
async def test_github_webhook_for_something_not_configured_is_ignored_with_a_reason(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    event: str,
    payload: Callable[[], Any],
    reason: str,
) -> None:
    """A signed delivery about an unknown repository, environment or service: 202 ignored, the
    reason in the journal and the answer, no deploy, Watch, PR or CI row."""
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    body = json.dumps(payload()).encode()  # built here: without the shared samples, skips
    response = await client.post(
        "/v1/webhooks/github", data=body, headers=github_headers(body, event, "d-unknown")
    )
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer["status"] == "ignored"
    assert reason in answer["reason"]
    after = await table_counts(client)
    assert after == {**before, "journal": before["journal"] + 1}
    [(status, why)] = await _journal(client)
    assert (status, why) == ("ignored", answer["reason"])


async def _journal(client: Client) -> list[tuple[Any, ...]]:
    """Status and reason of every journaled delivery."""
    return await client.app[DEPS].store.fetch("SELECT status, error FROM journal ORDER BY source")


async def test_sentry_and_alertmanager_for_unknown_services_are_ignored_with_a_reason(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A Sentry project and an alert that no configured service claims: ignored, with reasons."""
    client = await start_app(aiohttp_client, tmp_path)
    sentry = copy.deepcopy(load_json("sentry/webhooks/event_alert.triggered.json"))
    sentry["data"]["event"]["project"] = 999
    body = json.dumps(sentry).encode()
    signature = hmac.new(SENTRY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = await client.post("/v1/webhooks/sentry", data=body, headers={
        "Sentry-Hook-Resource": "event_alert", "Sentry-Hook-Signature": signature,
        "Request-ID": "r-unknown"})  # fmt: skip
    assert answer.status == 202
    assert "Sentry project" in (await answer.json())["reason"]
    alert = copy.deepcopy(load_json("alertmanager/zulip/alert.json"))
    answer = await client.post(
        "/v1/webhooks/alertmanager", json=alert, headers=bearer(ALERTMANAGER_TOKEN)
    )
    assert answer.status == 202
    assert "service" in (await answer.json())["reason"]
    journal = await _journal(client)
    assert [status for status, _ in journal] == ["ignored", "ignored"]
    assert all(why for _, why in journal)
    assert (await table_counts(client))["signals"] == 0


async def test_cd_hook_for_an_unknown_service_stays_the_callers_error(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The CD hook names the service itself: an unknown one is a 422 it can act on."""
    client = await start_app(aiohttp_client, tmp_path)
    body = {"service": "nope", "environment": "production", "sha": SHA}
    response = await client.post("/v1/deploys", json=body, headers=bearer())
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "unknown_service"
