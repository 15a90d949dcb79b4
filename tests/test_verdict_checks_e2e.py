"""The verdict back in GitHub, on the whole loop: a real Prometheus scraping the sample app, the
app over loopback, githubkit against the GitHub stand-in (a real git repository) authenticated
as a GitHub App (JWT, then installation tokens) or with a personal token, and a DuckDB file.

A regressed deploy leaves a completed `failure` check run on its sha naming the suspect PR and a
check run on the revert PR's head naming the incident; a healthy deploy with a personal token
leaves commit statuses `pending` then `success`, and its Watch does not wait for GitHub to
answer the `pending` one."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loop.api.app import build_app
from loop.config import GitHubAppSettings, Secret, github_credentials
from observer.prometheus import PrometheusSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.github_app_keys import key_pair
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    WEBHOOK_SECRET,
    deliver_pr,
    deploy_view,
    loop_settings,
    post_deploy,
    service_config,
    wait_final,
)
from tests.prometheus_server import PrometheusServer
from tests.waiting import wait_for_async

pytestmark = [pytest.mark.prometheus, pytest.mark.shared_samples]

ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
APP_ID, INSTALLATION = 9191, 31337

Rig = tuple[TestClient[Any, Any], FakeGitHub]


@pytest.fixture
def rig(
    tmp_path: Path, prometheus: PrometheusServer, aiohttp_client: Any
) -> Callable[..., AbstractAsyncContextManager[Rig]]:
    @asynccontextmanager
    async def started(service: str, as_app: bool, github_timeout: float = 5) -> AsyncIterator[Rig]:
        async with AsyncExitStack() as closing:
            github = await closing.enter_async_context(
                FakeGitHub(tmp_path / "github", repo="acme/shop")
            )
            env = ENV if as_app else ENV | {"GITHUB_TOKEN": github.token}
            services = {service: service_config(service, "acme/shop")}
            store = str(tmp_path / "store.duckdb")
            settings = loop_settings(store, prometheus.url, services, env)
            if as_app:  # the App as `[github] app_id` loads it; the installation looked up
                github.enable_app(APP_ID, key_pair().public_pem, INSTALLATION)
                app = GitHubAppSettings(APP_ID, Secret(key_pair().private_pem))
                settings = dataclasses.replace(settings, github_app=app)
            credentials = github_credentials(settings)
            assert credentials is not None
            forge = await closing.enter_async_context(
                GitHubForge(github.url, credentials, timeout=github_timeout)
            )
            source = await closing.enter_async_context(PrometheusSource(prometheus.url, timeout=3))
            notices = closing.enter_context((tmp_path / "notices.txt").open("w"))
            notifier = ConsoleNotifier(notices)
            client = await aiohttp_client(build_app(settings, clients=(source, forge, notifier)))
            closing.push_async_callback(client.close)
            yield client, github

    return started


async def test_a_regressed_deploy_fails_its_check_run_naming_the_suspect(
    rig: Callable[..., AbstractAsyncContextManager[Rig]], traffic: SampleApp
) -> None:
    """0.5% -> 5% 5xx after an agent PR: the deployed sha's check run goes in progress, then
    completed `failure` with the numbers and the suspect PR; the revert PR's head gets a check
    run naming the incident. One run per sha, however many steps the Watch took."""
    async with rig("e2e-checks-app", True) as (client, github):
        initial = github.head_sha()
        culprit = github.merge_pr("Drop the payment retry <!channel>", "Agent-Session: s-9",
                                  {"src/pay.py": "# no retry\n"})  # fmt: skip
        await deliver_pr(client, github, culprit.number)
        traffic.configure("e2e-checks-app", error_ratio=0.05)
        try:
            deploy_id = await post_deploy(client, "e2e-checks-app", github.head_sha(), initial,
                                          time.time())  # fmt: skip
            view = await wait_final(client, deploy_id)
        finally:
            traffic.configure("e2e-checks-app", error_ratio=0.005)
        assert view["phase"] == "reverted", view
        (run,) = github.checks.runs_on(github.head_sha())
        assert (run.name, run.status, run.conclusion) == ("rearguard", "completed", "failure")
        assert run.updates >= 1  # created in progress, completed by an update
        assert run.external_id == f"rearguard-{deploy_id}"
        assert f"#{culprit.number}" in run.output["title"]
        assert "`Drop the payment retry <!channel>`" in run.output["summary"]
        assert "statistic" in run.output["summary"]
        assert run.details_url == f"http://rearguard.test/v1/incidents/{view['incident_id']}"
        (revert,) = github.created_pulls()
        (on_revert,) = github.checks.runs_on(revert.head_sha)
        assert view["incident_id"] in on_revert.output["title"]
        assert on_revert.conclusion == "neutral"
        assert github.checks.statuses == []
        incident = await (
            await client.get(f"/v1/incidents/{view['incident_id']}", headers=AUTH)
        ).json()
        checks = [a for a in incident["actions"] if a["kind"] == "check"]
        assert [a["status"] for a in checks] == ["completed"]
        assert checks[0]["url"] == f"https://github.com/acme/shop/runs/{on_revert.id}"


async def test_a_healthy_deploy_with_a_token_gets_commit_statuses(
    rig: Callable[..., AbstractAsyncContextManager[Rig]], traffic: SampleApp
) -> None:
    """With a personal token GitHub takes no check runs: the deployed sha gets the `rearguard`
    status `pending`, then `success`."""
    async with rig("e2e-checks-token", False) as (client, github):
        initial = github.head_sha()
        pr = github.merge_pr("Rename a variable", "Agent-Session: s-h")
        await deliver_pr(client, github, pr.number)
        deploy_id = await post_deploy(client, "e2e-checks-token", github.head_sha(), initial,
                                      time.time())  # fmt: skip
        view = await wait_final(client, deploy_id)
        assert view["phase"] == "healthy", view
        statuses = github.checks.statuses_on(github.head_sha())
        assert [(s["state"], s["context"]) for s in statuses] == [
            ("pending", "rearguard"), ("success", "rearguard")]  # fmt: skip
        assert statuses[-1]["description"].startswith("healthy")
        assert github.checks.check_runs == []


async def test_a_watch_evaluates_while_github_holds_its_observing_status(
    rig: Callable[..., AbstractAsyncContextManager[Rig]], traffic: SampleApp
) -> None:
    """GitHub holds the answer to the observing report's first call (a slow GitHub, or a
    thousand deploys' reports ahead of this one) past the Watch's first steps: the Watch is
    evaluated when due all the same, and the statuses still land in order, `pending` before
    `success`."""
    async with rig("e2e-checks-held", False, github_timeout=12) as (client, github):
        initial = github.head_sha()
        pr = github.merge_pr("Tidy a log line", "Agent-Session: s-held")
        await deliver_pr(client, github, pr.number)
        sha = github.head_sha()
        held = github.hold_answer(f"GET /repos/acme/shop/commits/{sha}/status")
        deploy_id = await post_deploy(client, "e2e-checks-held", sha, initial, time.time())
        await wait_for_async(lambda: _set(held), within=20, what="the observing report's call")

        async def evaluated() -> Any:
            view = await deploy_view(client, deploy_id)
            return view if view.get("verdict") else None

        view = await wait_for_async(evaluated, within=10, what="an evaluation while GitHub holds")
        assert view["phase"] == "observing", view
        assert github.checks.statuses_on(sha) == []  # the call is still held: nothing posted
        view = await wait_final(client, deploy_id, within=90)
        assert view["phase"] == "healthy", view
        statuses = github.checks.statuses_on(sha)
        assert [s["state"] for s in statuses] == ["pending", "success"]


async def _set(event: asyncio.Event) -> bool:
    return event.is_set()
