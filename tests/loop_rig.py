"""End-to-end wiring for the loop tests: the real app over loopback, a real Prometheus scraping
the sample app, and the GitHub and Slack stand-ins with the production clients pointed at them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp.test_utils import TestClient

from loop.config import Settings, settings_from
from tests.fakes.github import FakeGitHub
from tests.waiting import wait_for_async

API_TOKEN = "api-token-for-tests"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}  # the CD hook's and, by default, the reads' token
WEBHOOK_SECRET = "webhook-secret-for-tests"
SLACK_CHANNEL = "C0ROLLBACK"
STEP = 2
"""Seconds between two evaluations of a loop-test Watch."""
BASELINE = 20
"""Seconds of history before the deploy that a loop-test Watch compares against."""
FINAL = {"healthy", "inconclusive", "reverted", "escalated"}


def service_config(
    name: str, repo: str, *, watch: int = 20, baseline: int = BASELINE
) -> dict[str, Any]:
    """A service whose SLI is the sample app's 5xx ratio for `service="name"`."""
    selector = f'service="{name}"'
    return {
        "repo": repo,
        "step": f"{STEP}s",
        "watch": f"{watch}s",
        "baseline": f"{baseline}s",
        "slis": {
            "http_errors": {
                "kind": "ratio",
                "bad": f'sum(increase(http_requests_total{{{selector},code=~"5.."}}[$step]))',
                "total": f"sum(increase(http_requests_total{{{selector}}}[$step]))",
                "min_events": 100,
            }
        },
    }


def loop_settings(
    store: str,
    prometheus_url: str,
    services: dict[str, Any],
    env: dict[str, str],
    *,
    mode: str = "propose",
    sections: dict[str, Any] | None = None,
) -> Settings:
    """The loop tests' settings; `sections` adds config tables (`flagger`)."""
    return settings_from(
        {
            **(sections or {}),
            "server": {"store": store, "tick": "0.5s", "public_url": "http://rearguard.test"},
            "prometheus": {"url": prometheus_url, "timeout": "3s"},
            "slack": {"channel": SLACK_CHANNEL},
            "policy": {"mode": mode},
            "services": services,
        },
        env,
        "e2e",
    )


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver_pr(client: TestClient[Any, Any], github: FakeGitHub, number: int) -> None:
    """Send the `pull_request` closed+merged webhook for PR `number`, signed."""
    body = json.dumps(github.pull_request_closed_webhook(number)).encode()
    response = await client.post(
        "/v1/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": f"delivery-{github.full_name}-{number}",
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
        },
    )
    assert response.status == 202, await response.text()


async def post_deploy(
    client: TestClient[Any, Any], service: str, sha: str, previous: str, finished_at: float
) -> str:
    response = await client.post(
        "/v1/deploys",
        json={
            "service": service,
            "environment": "production",
            "sha": sha,
            "previous_sha": previous,
            "finished_at": finished_at,
        },
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert response.status == 202, await response.text()
    deploy_id: str = (await response.json())["id"]
    return deploy_id


async def deploy_view(client: TestClient[Any, Any], deploy_id: str) -> Any:
    """The deploy as the API shows it (phase, reason, last verdict)."""
    response = await client.get(f"/v1/deploys/{deploy_id}", headers=AUTH)
    return await response.json()


async def wait_final(client: TestClient[Any, Any], deploy_id: str, within: float = 60) -> Any:
    """Poll the deploy until its Watch is final; the deploy view."""
    last: Any = None

    async def final() -> Any:
        nonlocal last
        last = await deploy_view(client, deploy_id)
        return last if last["phase"] in FINAL else None

    return await wait_for_async(
        final,
        within=within,
        what=f"deploy {deploy_id} to be final",
        interval=0.25,
        detail=lambda: f"deploy: {last}",
    )
