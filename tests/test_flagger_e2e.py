"""A Flagger canary on the path a real deployment takes: the culprit PR learned from a signed
`pull_request` webhook, the canary's deploy from Flagger's own webhook payload, a real Prometheus
scraping the sample app's canary series (a `version` label naming the commit) beside the stable
ones, and githubkit against the GitHub stand-in. The canary regresses: Flagger's checks turn
non-2xx, its rollback webhook is told yes, and the revert PR for the culprit is opened."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loop.api.app import build_app
from observer.prometheus import PrometheusSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    WEBHOOK_SECRET,
    deliver_pr,
    loop_settings,
    service_config,
    wait_final,
)
from tests.prometheus_server import PrometheusServer
from tests.waiting import wait_for_async

pytestmark = pytest.mark.prometheus

SERVICE = "e2e-flagger-regress"
ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}


async def _no_wait(seconds: float) -> None:
    """The forge's back-off between retries, taken at once (the test waits on conditions)."""


def _canary_service() -> dict[str, Any]:
    """The loop service, its SLI split by the `version` label (canary mode)."""
    config = service_config(SERVICE, "acme/shop")
    selector = f'service="{SERVICE}"'
    config["slis"]["http_errors"].update(
        bad=f'sum by (version) (increase(http_requests_total{{{selector},code=~"5.."}}[$step]))',
        total=f"sum by (version) (increase(http_requests_total{{{selector}}}[$step]))",
        version_label="version",
    )
    return config


@pytest.fixture
async def loop(
    tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp, aiohttp_client: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], FakeGitHub]]:
    """The app with canary prod/shop mapped to the service, GitHub's stand-in behind it."""
    github = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await github.start()
    forge = GitHubForge(github.url, github.token, timeout=5, sleep=_no_wait)
    source = PrometheusSource(prometheus.url, timeout=3)
    settings = loop_settings(
        str(tmp_path / "store.duckdb"), prometheus.url, {SERVICE: _canary_service()}, ENV,
        sections={"flagger": {"canaries": {"prod/shop": {"service": SERVICE}}}},
    )  # fmt: skip
    clients = (source, forge, ConsoleNotifier(io.StringIO()))
    client = await aiohttp_client(build_app(settings, clients=clients))
    yield client, github
    await client.close()
    await forge.aclose()
    await source.aclose()
    await github.close()


async def _call(client: TestClient[Any, Any], hook: str, sha: str, previous: str) -> Any:
    """One webhook as Flagger's `CallWebhook` sends it: POST, the JSON payload, Content-Type."""
    body = {"name": "shop", "namespace": "prod", "phase": "Progressing",
            "checksum": "6d8f5b7c9a", "metadata": {
                "token": API_TOKEN, "revision": sha, "previous_revision": previous}}  # fmt: skip
    response = await client.post(f"/v1/webhooks/flagger/{hook}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    return response.status, await response.json()


async def test_a_regressed_canary_fails_its_checks_and_its_culprit_is_reverted(
    loop: tuple[TestClient[Any, Any], FakeGitHub], traffic: SampleApp
) -> None:
    """The first `rollout` call starts the Watch; while the canary's 5% errors are judged
    against the stable version's 0.5% promotion waits; once regressed, `rollout` fails
    (409), `rollback` says yes (200), and a revert PR for the culprit is opened."""
    client, github = loop
    initial = github.head_sha()
    pr = github.merge_pr("Faster checkout", "Cache the cart.\n", {"services/shop/cart.py": "x\n"})
    await deliver_pr(client, github, pr.number)
    sha = github.head_sha()
    version = sha[:7]
    traffic.configure(SERVICE, version=version, rate=150, error_ratio=0.05)
    try:
        status, first = await _call(client, "rollout", sha, initial)
        assert status == 200, first
        assert first["verdict"] == "pending"
        deploy_id = first["deploy"]
        status, waiting = await _call(client, "confirm-promotion", sha, initial)
        assert (status, waiting["error"]["code"]) == (409, "verdict_pending")
        last: Any = None

        async def failing() -> Any:
            nonlocal last
            last = await _call(client, "rollout", sha, initial)
            return last if last[0] != 200 else None

        status, answer = await wait_for_async(
            failing, within=60, what="the rollout check to fail", interval=0.5,
            detail=lambda: f"last answer: {last}",
        )  # fmt: skip
        assert (status, answer["error"]["code"]) == (409, "canary_regressed"), answer
        assert deploy_id in answer["error"]["message"]
        status, rollback = await _call(client, "rollback", sha, initial)
        assert status == 200, rollback
        assert rollback["verdict"] == "regressed"
        view = await wait_final(client, deploy_id)
    finally:
        traffic.forget(SERVICE, version=version)
    assert view["phase"] == "reverted", view
    assert view["source"] == "flagger"
    assert {r["mode"] for r in view["verdict"]["results"]} == {"canary"}, view["verdict"]
    assert [p["number"] for p in view["prs"]] == [pr.number]
    (revert,) = [p for p in github.created_pulls() if p.title.startswith("Revert")]
    assert str(pr.number) in revert.title + revert.body
    status, after = await _call(client, "confirm-promotion", sha, initial)
    assert (status, after["error"]["code"]) == (409, "canary_regressed")
    listed = await (await client.get("/v1/deploys", headers=AUTH)).json()
    assert [d["id"] for d in listed["deploys"]] == [deploy_id]
