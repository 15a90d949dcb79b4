"""Every id that reaches a GitHub URL is checked where it enters: commit ids are hex, repository
names `owner/name`. The app runs as `serve` builds it (githubkit with the token, pointed at the
GitHub stand-in, the scheduler on), so a path-traversing `previous_sha` would take the token to
a path of the caller's choosing; the stand-in's request log says whether anything was sent."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from loop.api.app import build_app
from loop.config import ENV_GITHUB_TOKEN, settings_from
from tests.api_rig import ENV, REPO, SERVICE, SHA, Client, bearer, github_headers
from tests.fakes.github import FakeGitHub
from tests.shared_fixtures import load_json

TRAVERSAL = "../../../../x?y="


@pytest.fixture
async def served(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> AsyncIterator[tuple[Client, FakeGitHub]]:
    """The app with its own clients (as `serve` builds them) and the GitHub stand-in."""
    async with FakeGitHub(tmp_path / "github", repo=REPO) as github:
        data = {
            "server": {"store": str(tmp_path / "store.duckdb"), "tick": "0.1s"},
            "github": {"api_url": github.url},
            "prometheus": {"url": "http://127.0.0.1:9", "timeout": "1s"},
            "services": {SERVICE: {"repo": REPO, "slis": {"e": {"bad": "b", "total": "t"}}}},
        }
        settings = settings_from(data, {**ENV, ENV_GITHUB_TOKEN: github.token}, "test")
        client = await aiohttp_client(build_app(settings))
        yield client, github
        await client.close()


async def _nothing_deployed(client: Client, github: FakeGitHub) -> None:
    listed = await (await client.get("/v1/deploys", headers=bearer())).json()
    assert listed == {"deploys": []}
    assert github.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_sha", TRAVERSAL),
        ("previous_sha", "../../x"),
        ("previous_sha", "abc1234/../.."),
        ("sha", TRAVERSAL),
        ("repo", "../../x"),
        ("repo", "acme/../../x"),
        ("repo", "acme/.."),
    ],
)
async def test_cd_hook_refuses_ids_that_are_not_ids(
    served: tuple[Client, FakeGitHub], field: str, value: str
) -> None:
    """A deploy whose commit ids or repository are not ids: 400 naming the field, no request
    to GitHub, no deploy."""
    client, github = served
    body = {"service": SERVICE, "environment": "production", "sha": SHA, field: value}
    response = await client.post("/v1/deploys", json=body, headers=bearer())
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "bad_field"
    assert f"`{field}`" in error["message"]
    await _nothing_deployed(client, github)


async def test_cd_hook_refuses_a_repository_other_than_the_services(
    served: tuple[Client, FakeGitHub],
) -> None:
    """A well-formed `repo` that is not the service's configured repository refers to nothing
    Rearguard watches: 422, and Rearguard never acts on that repository."""
    client, github = served
    body = {"service": SERVICE, "environment": "production", "sha": SHA, "repo": "evil/repo"}
    response = await client.post("/v1/deploys", json=body, headers=bearer())
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "unknown_repository"
    await _nothing_deployed(client, github)


def _deployment_status(**deployment: Any) -> bytes:
    payload: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/deployment_status/payload.json")
    )
    payload["deployment"].update(deployment)
    return json.dumps(payload).encode()


def _merged_pr(**pull: Any) -> bytes:
    payload: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/pull_request/closed.payload.json")
    )
    merge = {"merged": True, "merged_at": "2026-11-02T09:30:00Z", "merge_commit_sha": SHA}
    payload["pull_request"].update({**merge, **pull})
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("event", "body", "field"),
    [
        ("deployment_status", partial(_deployment_status, sha=TRAVERSAL), "deployment.sha"),
        ("deployment_status", partial(_deployment_status, sha="main"), "deployment.sha"),
        (
            "pull_request",
            partial(_merged_pr, merge_commit_sha=TRAVERSAL),
            "pull_request.merge_commit_sha",
        ),
        (
            "pull_request",
            partial(_merged_pr, head={"sha": "../x", "ref": "b"}),
            "pull_request.head.sha",
        ),
        ("pull_request", partial(_merged_pr, number=-2), "pull_request.number"),
        ("pull_request", partial(_merged_pr, number=0), "pull_request.number"),
    ],
)
async def test_github_webhook_refuses_ids_that_are_not_ids(
    served: tuple[Client, FakeGitHub], event: str, body: Callable[[], bytes], field: str
) -> None:
    """A signed delivery whose commit id or PR number cannot be one: 400 naming the field,
    nothing journaled, no request to GitHub."""
    client, github = served
    data = body()  # built here: a clone without the shared samples skips this test only
    response = await client.post(
        "/v1/webhooks/github", data=data, headers=github_headers(data, event, "d-ids")
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "bad_field"
    assert f"`{field}`" in error["message"]
    await _nothing_deployed(client, github)
