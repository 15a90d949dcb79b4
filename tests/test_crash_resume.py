"""Kill -9 between the incident row and the revert PR: the restarted server makes exactly one
revert PR and one Slack message. `rearguard serve` runs as a real process with a TOML config,
against a real Prometheus and the GitHub and Slack stand-ins."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    BASELINE,
    FINAL,
    SLACK_CHANNEL,
    STEP,
    WEBHOOK_SECRET,
    sign,
)
from tests.prometheus_server import PrometheusServer
from tests.waiting import wait_for_async

pytestmark = [pytest.mark.prometheus, pytest.mark.shared_samples]
SERVICE = "e2e-crash"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
step = "{STEP}s"
watch = "20s"
baseline = "{BASELINE}s"
[services.{SERVICE}.slis.http_errors]
bad = '{bad}'
total = '{total}'
""")
    return path


class Server:
    """`rearguard serve` as a child process."""

    def __init__(self, config: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.config, self.env, self.url, self.log = config, env, f"http://127.0.0.1:{port}", log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loop.cli.main", "serve", "--config", str(self.config)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_env() -> dict[str, str]:
    """The server's environment: this one's, less any real GitHub or Slack credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK"))}


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, headers=AUTH) as response:
        return await response.json()


async def _wait_up(session: aiohttp.ClientSession, server: Server) -> None:
    async def ready() -> bool:
        try:
            async with session.get(f"{server.url}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for_async(ready, within=30, what="the server to be ready", detail=server.tail)


async def _phase(session: aiohttp.ClientSession, server: Server, deploy_id: str) -> str | None:
    phase: str | None = (await _get(session, f"{server.url}/v1/deploys/{deploy_id}"))["phase"]
    return phase


@pytest.fixture
async def stand_ins(tmp_path: Path) -> AsyncIterator[tuple[FakeGitHub, FakeSlack]]:
    async with FakeGitHub(tmp_path / "github", repo="acme/crash") as github, FakeSlack() as slack:
        yield github, slack


async def test_sigkill_after_incident_resumes_to_one_revert_and_one_message(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    stand_ins: tuple[FakeGitHub, FakeSlack],
    server_env: dict[str, str],
) -> None:
    """SIGKILL after the incident row, before the revert: one revert PR, one message."""
    github, slack = stand_ins
    port = _free_port()
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
            await _wait_up(session, server)
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

            # Once the change set is read, every GitHub answer takes 4 s: the kill then lands
            # after the incident row and before the revert PR.
            async def watching() -> bool:
                return await _phase(session, server, deploy_id) not in ("deployed", None)

            await wait_for_async(
                watching, within=60, what="the Watch to read the change set", detail=server.tail
            )
            github.delay(4)

            view: Any = None

            async def incidents() -> list[Any]:
                nonlocal view
                found: list[Any] = (await _get(session, f"{server.url}/v1/incidents"))["incidents"]
                view = found or await _get(session, f"{server.url}/v1/deploys/{deploy_id}")
                return found

            await wait_for_async(
                incidents,
                within=60,
                what=f"an incident for {deploy_id}",
                detail=lambda: f"deploy: {view}",
            )
            server.kill()
            assert github.created_pulls() == []
            assert slack.messages == []

            github.delay(0)
            server.start()
            await _wait_up(session, server)

            async def final() -> Any:
                view = await _get(session, f"{server.url}/v1/deploys/{deploy_id}")
                return view if view["phase"] in FINAL else None

            view = await wait_for_async(
                final, within=60, what=f"deploy {deploy_id} to be final", detail=server.tail
            )
            assert view["phase"] == "reverted", view
            assert len(github.created_pulls()) == 1
            (first,) = [m for m in slack.messages if m.thread_ts is None]
            assert f"#{pr.number}" in first.text
            assert len({m.text for m in slack.messages}) == len(slack.messages)  # no duplicate
    finally:
        server.stop()
        traffic.configure(SERVICE, error_ratio=0.005)
