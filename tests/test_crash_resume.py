"""Kill -9 between the incident row and the revert PR: the restarted server makes exactly one
revert PR and one Slack message. `rearguard serve` runs as a real process with a TOML config,
against a real Prometheus and the GitHub and Slack stand-ins."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import API_TOKEN, FINAL, SLACK_CHANNEL, WEBHOOK_SECRET, sign
from tests.prometheus_server import PrometheusServer
from tests.serve_rig import Server, free_port, wait_up
from tests.serve_rig import server_env as clean_env

pytestmark = pytest.mark.prometheus
SERVICE = "e2e-crash"


def _config(tmp: Path, port: int, prometheus: str, github: str, slack: str) -> Path:
    selector = f'service="{SERVICE}"'
    bad = f'sum(increase(http_requests_total{{{selector},code=~"5.."}}[$step]))'
    total = f"sum(increase(http_requests_total{{{selector}}}[$step]))"
    path = tmp / "rearguard.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
store = "{tmp / "store.duckdb"}"
tick = "0.3s"
[github]
api_url = "{github}"
[prometheus]
url = "{prometheus}"
timeout = "3s"
[slack]
api_url = "{slack}"
channel = "{SLACK_CHANNEL}"
[services.{SERVICE}]
repo = "acme/crash"
step = "2s"
watch = "20s"
baseline = "20s"
[services.{SERVICE}.slis.http_errors]
bad = '{bad}'
total = '{total}'
""")
    return path


@pytest.fixture
def server_env() -> dict[str, str]:
    """The server's environment: this one's, less any real GitHub or Slack credentials."""
    return clean_env()


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        return await response.json()


@pytest.fixture
async def stand_ins(tmp_path: Path) -> AsyncIterator[tuple[FakeGitHub, FakeSlack]]:
    github = FakeGitHub(tmp_path / "github", repo="acme/crash")
    await github.start()
    slack = FakeSlack()
    await slack.start()
    yield github, slack
    await slack.close()
    await github.close()


async def test_sigkill_after_incident_resumes_to_one_revert_and_one_message(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    stand_ins: tuple[FakeGitHub, FakeSlack],
    server_env: dict[str, str],
) -> None:
    """SIGKILL after the incident row, before the revert: one revert PR, one message."""
    github, slack = stand_ins
    port = free_port()
    config = _config(tmp_path, port, prometheus.url, github.url, slack.url)
    env = server_env | {
        "REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_TOKEN": github.token, "SLACK_BOT_TOKEN": slack.token,
    }  # fmt: skip
    server = Server(config, env, port, tmp_path / "server.log")
    initial = github.head_sha()
    pr = github.merge_pr("Drop payment retries", "Agent-Session: sess-k\nAgent-Name: codex")
    body = json.dumps(github.pull_request_closed_webhook(pr.number)).encode()
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server)
            async with session.post(f"{server.url}/v1/webhooks/github", data=body, headers={
                "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "crash-1",
                "X-Hub-Signature-256": sign(body), "Content-Type": "application/json",
            }) as response:  # fmt: skip
                assert response.status == 202
            traffic.configure(SERVICE, error_ratio=0.05)
            async with session.post(
                f"{server.url}/v1/deploys",
                json={"service": SERVICE, "environment": "production", "sha": github.head_sha(),
                      "previous_sha": initial, "finished_at": time.time()},
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as response:  # fmt: skip
                assert response.status == 202
                deploy_id = (await response.json())["id"]
            deadline = time.monotonic() + 60
            # Once the change set is read, every GitHub answer takes 4 s: the kill then lands
            # after the incident row and before the revert PR.
            while (await _get(session, f"{server.url}/v1/deploys/{deploy_id}"))["phase"] in (
                "deployed",
                None,
            ):
                assert time.monotonic() < deadline, server.tail()
                await asyncio.sleep(0.05)
            github.delay(4)
            while not (await _get(session, f"{server.url}/v1/incidents"))["incidents"]:
                if time.monotonic() > deadline:
                    view = await _get(session, f"{server.url}/v1/deploys/{deploy_id}")
                    raise AssertionError(f"no incident within 60 s: {view}")
                await asyncio.sleep(0.05)
            server.kill()
            assert github.created_pulls() == []
            assert slack.messages == []

            github.delay(0)
            server.start()
            await wait_up(session, server)
            deadline = time.monotonic() + 60
            view = await _get(session, f"{server.url}/v1/deploys/{deploy_id}")
            while view["phase"] not in FINAL:
                assert time.monotonic() < deadline, view
                await asyncio.sleep(0.2)
                view = await _get(session, f"{server.url}/v1/deploys/{deploy_id}")
            assert view["phase"] == "reverted", view
            assert len(github.created_pulls()) == 1
            (first,) = [m for m in slack.messages if m.thread_ts is None]
            assert f"#{pr.number}" in first.text
            assert len({m.text for m in slack.messages}) == len(slack.messages)  # no duplicate
    finally:
        server.stop()
        traffic.configure(SERVICE, error_ratio=0.005)
