"""Human gates on the path a real deployment takes: the app as `serve` builds it, the culprit PR
learned from a signed `pull_request` webhook (whose payload, like GitHub's, lists no files), the
deploy from the CD hook, a real Prometheus seeing the regression, and githubkit and slack_sdk
against the GitHub (a real git repository) and Slack stand-ins. Each test has its own service."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loop.api.app import build_app
from observer.prometheus import PrometheusSource
from rollback.github import GitHubForge
from rollback.slack import SlackNotifier
from tests.conftest import LOOP_SERVICES
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.loop_rig import (
    API_TOKEN,
    SLACK_CHANNEL,
    WEBHOOK_SECRET,
    deliver_pr,
    loop_settings,
    post_deploy,
    service_config,
    wait_final,
)
from tests.prometheus_server import PrometheusServer

pytestmark = pytest.mark.prometheus

ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
GATED = "services/shop/auth/session.py"
BODY = "Shorter sessions.\n\nAgent-Session: sess-gate\nAgent-Name: claude-code\n"


class Loop:
    """The app and its stand-ins for one test."""

    def __init__(self, client: TestClient[Any, Any], github: FakeGitHub, slack: FakeSlack) -> None:
        self.client, self.github, self.slack = client, github, slack


async def _no_wait(seconds: float) -> None:
    """The forge's back-off between retries, taken at once (the test waits on conditions)."""


Start = Callable[[str], Awaitable[Loop]]


@pytest.fixture
async def start(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    aiohttp_client: Any,
    aiohttp_server: Any,
) -> AsyncIterator[Start]:
    """Build and serve the app in a given mode, with the default human gates."""
    github = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await github.start()
    # Nothing pending on the revert: GitHub would let Rearguard merge it at once through REST.
    github.checks_pending = False
    slack = FakeSlack()
    slack.attach(await aiohttp_server(slack.app))
    forge = GitHubForge(github.url, github.token, timeout=5, sleep=_no_wait)
    notifier = SlackNotifier(slack.token, SLACK_CHANNEL, base_url=slack.url)
    source = PrometheusSource(prometheus.url, timeout=3)
    clients: list[TestClient[Any, Any]] = []

    async def build(mode: str) -> Loop:
        services = {name: service_config(name, "acme/shop") for name in LOOP_SERVICES}
        store = str(tmp_path / "store.duckdb")
        settings = loop_settings(store, prometheus.url, services, ENV, mode=mode)
        client = await aiohttp_client(build_app(settings, clients=(source, forge, notifier)))
        clients.append(client)
        return Loop(client, github, slack)

    yield build
    for client in clients:
        await client.close()
    await forge.aclose()
    await notifier.aclose()
    await source.aclose()
    await github.close()


async def _regress(loop: Loop, traffic: SampleApp, service: str, files: dict[str, str]) -> Any:
    """Merge one PR changing `files`, deliver its webhook, deploy it into a 5% error ratio; the
    deploy view once its Watch is final, and the PR."""
    initial = loop.github.head_sha()
    pr = loop.github.merge_pr("Shorter sessions", BODY, files)
    await deliver_pr(loop.client, loop.github, pr.number)
    traffic.configure(service, error_ratio=0.05)
    try:
        deploy_id = await post_deploy(
            loop.client, service, loop.github.head_sha(), initial, time.time()
        )
        view = await wait_final(loop.client, deploy_id)
    finally:
        traffic.configure(service, error_ratio=0.005)
    return view, pr


def _revert(github: FakeGitHub) -> FakePR:
    (revert,) = [p for p in github.created_pulls() if p.title.startswith("Revert")]
    return revert


def _never_merged(github: FakeGitHub, revert: FakePR) -> None:
    assert revert.auto_merge is None
    assert not revert.merged
    assert revert.state == "open"
    assert f"PUT /repos/acme/shop/pulls/{revert.number}/merge" not in github.requests


def _opening(slack: FakeSlack) -> tuple[FakeMessage, str]:
    (opening,) = [m for m in slack.messages if m.thread_ts is None]
    return opening, opening.text + str(opening.blocks)


async def test_act_mode_gates_a_webhook_pr_touching_auth(start: Start, traffic: SampleApp) -> None:
    """act, default gates, a webhook-learned culprit changing auth/session.py: the revert carries
    needs-human, is never merged nor set to auto-merge, and Slack names the path."""
    loop = await start("act")
    view, _ = await _regress(loop, traffic, "e2e-gate-act", {GATED: "TTL = 60\n"})
    assert view["phase"] == "reverted", view
    revert = _revert(loop.github)
    _never_merged(loop.github, revert)
    assert "needs-human" in revert.labels
    opening, text = _opening(loop.slack)
    assert GATED in text
    assert "a person must merge it" in text
    replies = [m.text for m in loop.slack.messages if m.thread_ts == opening.ts]
    assert any("needs-human" in r and GATED in r for r in replies), replies


async def test_propose_mode_labels_a_webhook_pr_touching_auth_needs_human(
    start: Start, traffic: SampleApp
) -> None:
    """propose, default gates, a webhook-learned culprit changing auth/session.py: the revert
    carries needs-human and Slack names the gated path."""
    loop = await start("propose")
    view, _ = await _regress(loop, traffic, "e2e-gate-propose", {GATED: "TTL = 60\n"})
    assert view["phase"] == "reverted", view
    revert = _revert(loop.github)
    assert "needs-human" in revert.labels
    _never_merged(loop.github, revert)
    _, text = _opening(loop.slack)
    assert GATED in text


async def test_act_mode_gates_a_revert_whose_files_github_cannot_list(
    start: Start, traffic: SampleApp
) -> None:
    """act, GitHub answering 502 to every listing of the culprit's files: the revert is gated
    (needs-human, never merged) and Slack and the bug issue say the files are unknown."""
    loop = await start("act")
    number = loop.github.next_number()
    loop.github.fail_next(10_000, 502, match=f"GET /repos/acme/shop/pulls/{number}/files")
    view, pr = await _regress(loop, traffic, "e2e-gate-unknown", {"services/shop/cart.py": "\n"})
    assert pr.number == number
    assert view["phase"] == "reverted", view
    assert f"GET /repos/acme/shop/pulls/{number}/files" in loop.github.requests
    revert = _revert(loop.github)
    assert "needs-human" in revert.labels
    _never_merged(loop.github, revert)
    _, text = _opening(loop.slack)
    assert f"files of PR #{number} unknown" in text
    (issue,) = loop.github.issues  # no fix PR for a change whose files are unknown
    assert f"files of PR #{number} unknown" in issue.body
