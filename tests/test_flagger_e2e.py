"""Flagger canaries on the path a real deployment takes: the culprit PR learned from a signed
`pull_request` webhook, the canary's deploy from Flagger's webhooks as its webhook.go sends them
(`tests/fakes/flagger.py`), a real Prometheus scraping the sample app's canary series (a
`version` label naming the commit) beside the stable ones, and githubkit against the GitHub
stand-in. A regressed canary fails its checks, its rollback webhook is told yes and the culprit's
revert PR is opened; a healthy one is let through to promotion."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loop.api.app import build_app
from observer.prometheus import PrometheusSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.fakes.flagger import Canary, Webhook, WebhookFailed, call_event_webhook, call_webhook
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    WEBHOOK_SECRET,
    deliver_pr,
    deploy_view,
    loop_settings,
    service_config,
    wait_final,
)
from tests.prometheus_server import PrometheusServer
from tests.waiting import wait_for_async

pytestmark = pytest.mark.prometheus

REGRESS, HEALTHY = "e2e-flagger-regress", "e2e-flagger-healthy"
CANARIES = {REGRESS: Canary("shop", "prod"), HEALTHY: Canary("web", "prod")}
ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}


async def _no_wait(seconds: float) -> None:
    """The forge's back-off between retries, taken at once (the test waits on conditions)."""


def _canary_service(name: str, watch: int) -> dict[str, Any]:
    """A loop service, its SLI split by the `version` label (canary mode)."""
    config = service_config(name, "acme/shop", watch=watch)
    selector = f'service="{name}"'
    config["slis"]["http_errors"].update(
        bad=f'sum by (version) (increase(http_requests_total{{{selector},code=~"5.."}}[$step]))',
        total=f"sum by (version) (increase(http_requests_total{{{selector}}}[$step]))",
        version_label="version",
    )
    return config


class Rig:
    """The app over loopback, GitHub's stand-in, and Flagger's webhooks pointed at the app."""

    def __init__(self, client: TestClient[Any, Any], github: FakeGitHub) -> None:
        self.client, self.github = client, github

    def hook(self, kind: str, sha: str, previous: str) -> Webhook:
        """A `spec.analysis.webhooks` entry as deploy/flagger/canary.yaml writes them."""
        url = str(self.client.make_url(f"/v1/webhooks/flagger/{kind}"))
        metadata = {"token": API_TOKEN, "revision": sha, "previous_revision": previous}
        return Webhook(kind, url, metadata, timeout="5s")

    async def passes(self, service: str, kind: str, sha: str, previous: str) -> str | None:
        """None when Flagger takes the answer as a pass, else the failure Flagger logs."""
        try:
            await call_webhook(CANARIES[service], "Progressing", self.hook(kind, sha, previous))
        except WebhookFailed as failed:
            return str(failed)
        return None


@pytest.fixture
async def rig(
    tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp, aiohttp_client: Any
) -> AsyncIterator[Rig]:
    """Canaries prod/shop and prod/web mapped to the two services."""
    github = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await github.start()
    forge = GitHubForge(github.url, github.token, timeout=5, sleep=_no_wait)
    source = PrometheusSource(prometheus.url, timeout=3)
    services = {REGRESS: _canary_service(REGRESS, 20), HEALTHY: _canary_service(HEALTHY, 10)}
    canaries = {f"{c.namespace}/{c.name}": {"service": s} for s, c in CANARIES.items()}
    settings = loop_settings(str(tmp_path / "store.duckdb"), prometheus.url, services, ENV,
                             sections={"flagger": {"canaries": canaries}})  # fmt: skip
    clients = (source, forge, ConsoleNotifier(io.StringIO()))
    client = await aiohttp_client(build_app(settings, clients=clients))
    yield Rig(client, github)
    await client.close()
    await forge.aclose()
    await source.aclose()
    await github.close()


async def _deploy_id(rig: Rig) -> str:
    listed = await (await rig.client.get("/v1/deploys", headers=AUTH)).json()
    (deploy,) = listed["deploys"]
    deploy_id: str = deploy["id"]
    return deploy_id


async def test_a_regressed_canary_fails_its_checks_and_its_culprit_is_reverted(
    rig: Rig, traffic: SampleApp
) -> None:
    """The first `rollout` call starts the Watch; while the canary's 5% errors are judged
    against the stable version's 0.5%, promotion waits; once regressed, `rollout` fails,
    `rollback` says yes, and a revert PR for the culprit is opened."""
    github = rig.github
    initial = github.head_sha()
    pr = github.merge_pr("Faster checkout", "Cache the cart.\n", {"services/shop/cart.py": "x\n"})
    await deliver_pr(rig.client, github, pr.number)
    sha = github.head_sha()
    traffic.configure(REGRESS, version=sha[:7], rate=150, error_ratio=0.05)
    try:
        assert await rig.passes(REGRESS, "rollout", sha, initial) is None
        deploy_id = await _deploy_id(rig)
        waiting = await rig.passes(REGRESS, "confirm-promotion", sha, initial)
        assert waiting is not None
        assert "verdict_pending" in waiting
        last: str | None = None

        async def failing() -> str | None:
            nonlocal last
            last = await rig.passes(REGRESS, "rollout", sha, initial)
            return last

        failure = await wait_for_async(
            failing, within=60, what="the rollout check to fail", interval=0.5,
            detail=lambda: f"last answer: {last}",
        )  # fmt: skip
        assert failure is not None
        assert "canary_regressed" in failure
        assert deploy_id in failure
        assert await rig.passes(REGRESS, "rollback", sha, initial) is None  # roll back: yes
        await call_event_webhook(CANARIES[REGRESS], rig.hook("event", sha, initial),
                                 "Rolling back shop.prod failed checks threshold reached 5",
                                 "Warning")  # fmt: skip
        view = await wait_final(rig.client, deploy_id)
    finally:
        traffic.forget(REGRESS, version=sha[:7])
    assert view["phase"] == "reverted", view
    assert view["source"] == "flagger"
    assert {r["mode"] for r in view["verdict"]["results"]} == {"canary"}, view["verdict"]
    assert [p["number"] for p in view["prs"]] == [pr.number]
    (revert,) = [p for p in github.created_pulls() if p.title.startswith("Revert")]
    assert str(pr.number) in revert.title + revert.body
    assert ("event", "Warning") in {(e["hook"], e["event_type"]) for e in view["flagger"]}
    after = await rig.passes(REGRESS, "confirm-promotion", sha, initial)
    assert after is not None
    assert "canary_regressed" in after


async def test_a_healthy_canary_is_promoted_and_not_rolled_back(
    rig: Rig, traffic: SampleApp
) -> None:
    """A canary as good as the stable version: checks pass, promotion waits for the Watch and
    then passes, rollback is refused, and nothing is reverted."""
    github = rig.github
    initial = github.head_sha()
    pr = github.merge_pr("Tidy the footer", "Footer copy.\n", {"services/web/footer.py": "y\n"})
    await deliver_pr(rig.client, github, pr.number)
    sha = github.head_sha()
    traffic.configure(HEALTHY, version=sha[:7], rate=150, error_ratio=0.005)
    try:
        assert await rig.passes(HEALTHY, "confirm-rollout", sha, initial) is None
        deploy_id = await _deploy_id(rig)
        assert await rig.passes(HEALTHY, "rollout", sha, initial) is None
        last: str | None = None

        async def promoted() -> bool:
            nonlocal last
            last = await rig.passes(HEALTHY, "confirm-promotion", sha, initial)
            return last is None

        await wait_for_async(
            promoted, within=60, what="confirm-promotion to pass", interval=0.5,
            detail=lambda: f"last answer: {last}",
        )  # fmt: skip
        refused = await rig.passes(HEALTHY, "rollback", sha, initial)
        assert refused is not None
        assert "no_rollback" in refused
        view = await deploy_view(rig.client, deploy_id)
    finally:
        traffic.forget(HEALTHY, version=sha[:7])
    assert view["phase"] == "healthy", view
    assert {r["mode"] for r in view["verdict"]["results"]} == {"canary"}, view["verdict"]
    assert not [p for p in github.created_pulls() if p.title.startswith("Revert")]
