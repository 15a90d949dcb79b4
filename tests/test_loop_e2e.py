"""The whole loop on real parts: a real Prometheus scraping the sample app, the app over loopback,
githubkit against the GitHub stand-in (a real git repository), slack_sdk against the Slack
stand-in, and a DuckDB file. Each test uses its own service label, so history does not mix."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loop.api.app import build_app
from observer.prometheus import PrometheusSource
from rollback.github import GitHubForge
from rollback.slack import SlackNotifier
from tests.conftest import LOOP_SERVICES
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    SLACK_CHANNEL,
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


class Loop:
    """The app and its stand-ins for one test."""

    def __init__(self, client: TestClient[Any, Any], github: FakeGitHub, slack: FakeSlack) -> None:
        self.client, self.github, self.slack = client, github, slack


@pytest.fixture
async def loop(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    aiohttp_client: Any,
    aiohttp_server: Any,
) -> AsyncIterator[Loop]:
    async with AsyncExitStack() as closing:
        github = await closing.enter_async_context(
            FakeGitHub(tmp_path / "github", repo="acme/shop")
        )
        slack = FakeSlack()
        slack.attach(await aiohttp_server(slack.app))
        services = {name: service_config(name, "acme/shop") for name in LOOP_SERVICES}
        settings = loop_settings(str(tmp_path / "store.duckdb"), prometheus.url, services, ENV)
        # Entered before the app starts, as the server does, so the scheduler's task shares (and
        # the teardown closes) githubkit's connection pool.
        forge = await closing.enter_async_context(GitHubForge(github.url, github.token, timeout=5))
        notifier = SlackNotifier(slack.token, SLACK_CHANNEL, base_url=slack.url)
        closing.push_async_callback(notifier.aclose)
        source = await closing.enter_async_context(PrometheusSource(prometheus.url, timeout=3))
        client = await aiohttp_client(build_app(settings, clients=(source, forge, notifier)))
        closing.push_async_callback(client.close)  # first: stops the scheduler, then the clients
        yield Loop(client, github, slack)


AGENT_BODY = (
    "{what}\n\nAgent-Session: {session}\nAgent-Name: claude-code\nAgent-Model: claude-sonnet-4-6\n"
    "Spec: acme/shop#{spec}"
)


async def evaluated_with_data(client: TestClient[Any, Any], deploy_id: str) -> bool:
    """Whether the Watch has evaluated the deploy at least once with requests in its window."""
    verdict = (await deploy_view(client, deploy_id))["verdict"] or {}
    return any(result["watch_total"] > 0 for result in verdict.get("results", []))


def _merge_agent_prs(github: FakeGitHub) -> list[int]:
    numbers = []
    for i, what in enumerate(["Add cart totals", "Tidy logging", "Retry-free payment client"]):
        body = AGENT_BODY.format(what=what, session=f"sess-{i}", spec=10 + i)
        pr = github.merge_pr(what, body, {f"src/module_{i}.py": f"# {what}\n"})
        numbers.append(pr.number)
    return numbers


async def test_regression_is_reverted_and_announced(loop: Loop, traffic: SampleApp) -> None:
    """0.5% -> 5% 5xx after the deploy of one agent PR: one revert PR and one Slack message."""
    initial = loop.github.head_sha()
    first, second, culprit = _merge_agent_prs(loop.github)
    for number in (first, second, culprit):
        await deliver_pr(loop.client, loop.github, number)
    before_culprit = loop.github.pull(second).merge_sha
    assert before_culprit is not None
    now = time.time()
    # The first two PRs went out earlier and were healthy; the culprit goes out now.
    await post_deploy(loop.client, "e2e-regress", before_culprit, initial, now - 60)
    traffic.configure("e2e-regress", error_ratio=0.05)
    deploy_id = await post_deploy(
        loop.client, "e2e-regress", loop.github.head_sha(), before_culprit, time.time()
    )
    view = await wait_final(loop.client, deploy_id)
    assert view["phase"] == "reverted", view
    incident = await (
        await loop.client.get(f"/v1/incidents/{view['incident_id']}", headers=AUTH)
    ).json()
    assert incident["suspects"][0]["number"] == culprit
    assert incident["revert_unit"] == [culprit]
    assert incident["suspects"][0]["pr"]["agent"]["session"] == "sess-2"
    result = next(r for r in incident["verdict"]["results"] if r["sli"] == "http_errors")
    assert result["watch_value"] > 3 * result["baseline_value"]
    assert result["statistic"] >= result["threshold"]
    reverts = loop.github.created_pulls()
    assert len(reverts) == 1
    revert = next(a for a in incident["actions"] if a["kind"] == "revert")
    assert revert["url"] == reverts[0].html_url
    assert loop.github.read_file("src/module_2.py", reverts[0].head_ref) is None
    # The delivery reports read what the Watch wrote: one of the service's two deploys failed,
    # and the incident's diagnosis times are measured, none invented.
    reports = "/v1/reports/{}?service=e2e-regress"
    dora = await (await loop.client.get(reports.format("dora"), headers=AUTH)).json()
    [week] = [r for r in dora["rows"] if r["deployment_frequency"]["value"]]
    assert (week["change_failure_rate"]["value"], week["change_failure_rate"]["n"]) == (0.5, 2)
    assert week["failed_deployment_recovery_time"]["reason"] == (
        "none of the 1 failed deploys has a verified recovery"
    )
    loop_report = await (await loop.client.get(reports.format("loop"), headers=AUTH)).json()
    [diagnosis] = loop_report["incident_rows"]
    assert diagnosis["incidents"] == 1
    assert diagnosis["detection_to_attribution"]["value"] == 0.0  # one step: detect, attribute
    assert 0 <= diagnosis["detection_to_revert"]["value"] < 60
    onset = diagnosis["onset_to_detection"]
    assert 0 <= onset["value"] < 60, onset  # the excursion onset the detector measured
    (opening,) = [m for m in loop.slack.messages if m.thread_ts is None]
    text = opening.text + str(opening.blocks)
    for needle in (f"#{culprit}", "sess-2", "http_errors", reverts[0].html_url):
        assert needle in text
    replies = [m.text for m in loop.slack.messages if m.thread_ts == opening.ts]
    assert [r.split(":")[0] for r in replies] == [
        "Revert PR opened",
        "Bug issue opened (no fix PR)",
    ]
    traffic.configure("e2e-regress", error_ratio=0.005)


async def test_unchanged_metrics_are_healthy_and_open_nothing(
    loop: Loop, traffic: SampleApp
) -> None:
    """A deploy with no change in the metrics ends healthy; no PR, no message."""
    initial = loop.github.head_sha()
    pr = loop.github.merge_pr("Rename a variable", AGENT_BODY.format(
        what="Rename", session="sess-h", spec=20))  # fmt: skip
    await deliver_pr(loop.client, loop.github, pr.number)
    deploy_id = await post_deploy(
        loop.client, "e2e-healthy", loop.github.head_sha(), initial, time.time()
    )
    view = await wait_final(loop.client, deploy_id)
    assert view["phase"] == "healthy", view
    assert view["incident_id"] is None
    assert loop.github.created_pulls() == []
    assert loop.slack.messages == []


async def test_prometheus_stopped_mid_watch_is_inconclusive(
    loop: Loop, traffic: SampleApp, prometheus: PrometheusServer
) -> None:
    """Prometheus stopped after the first steps: inconclusive with the reason, no revert, one
    notice that Prometheus is unreachable."""
    initial = loop.github.head_sha()
    pr = loop.github.merge_pr("Change timeouts", AGENT_BODY.format(
        what="Timeouts", session="sess-o", spec=30))  # fmt: skip
    await deliver_pr(loop.client, loop.github, pr.number)
    deploy_id = await post_deploy(
        loop.client, "e2e-outage", loop.github.head_sha(), initial, time.time()
    )
    await wait_for_async(
        lambda: evaluated_with_data(loop.client, deploy_id),
        within=30,
        what=f"a first evaluation of deploy {deploy_id} with data",
    )
    prometheus.stop()
    view = await wait_final(loop.client, deploy_id)
    assert view["phase"] == "inconclusive", view
    assert "metrics source failed" in view["reason"]
    assert loop.github.created_pulls() == []
    # The one message: Prometheus unreachable, posted once however many evaluations failed.
    keys = [(m.metadata or {}).get("event_payload", {}).get("key") for m in loop.slack.messages]
    assert keys == ["query-failure-e2e-outage-source_unavailable"]
