"""The GitHub-edge tests' harness. Rearguard as a deployment runs it: a TOML config read by
`load_settings`, secrets from the environment, and either `rearguard serve` as a child process
(`Server`) or the app exactly as `serve` builds it (`build_app(settings)`, its clients made from
the config) in this process.

Both point at a real Prometheus scraping the sample app and at the GitHub and Slack stand-ins.
`JumpClock` is the wall clock plus a jump a test makes, so that a Watch parked for a minute (a
rate limit) is seen due again without the test sleeping that minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from loop.clock import WallClock
from tests.fakes.github import FakeGitHub
from tests.loop_rig import API_TOKEN, AUTH, FINAL, SLACK_CHANNEL, STEP, WEBHOOK_SECRET, sign

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(
    tmp: Path,
    service: str,
    repo: str,
    *,
    prometheus: str,
    github: str,
    slack: str,
    port: int = 0,
    mode: str = "propose",
) -> Path:
    """A `rearguard.toml` like the example config, for one service whose SLI is the sample app's
    5xx ratio, with windows short enough for a test (20 s baseline and watch, 2 s step)."""
    selector = f'service="{service}"'
    bad = f'sum(increase(http_requests_total{{{selector},code=~"5.."}}[$step]))'
    total = f"sum(increase(http_requests_total{{{selector}}}[$step]))"
    path = tmp / "rearguard.toml"
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port or free_port()}"
store = "{tmp / "store.duckdb"}"
public_url = "http://rearguard.test"
tick = "0.3s"

[github]
api_url = "{github}"

[prometheus]
url = "{prometheus}"
timeout = "3s"

[slack]
api_url = "{slack}"
channel = "{SLACK_CHANNEL}"

[policy]
mode = "{mode}"

[services.{service}]
repo = "{repo}"
step = "{STEP}s"
watch = "20s"
baseline = "20s"

[services.{service}.slis.http_errors]
kind = "ratio"
bad = '{bad}'
total = '{total}'
min_events = 100
""")
    return path


def serve_env(github_token: str, slack_token: str) -> dict[str, str]:
    """The environment a deployment gives Rearguard: this one's, less any real GitHub or Slack
    credentials, plus the stand-ins' tokens and the API and webhook secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK"))}
    return env | {
        "REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_TOKEN": github_token, "SLACK_BOT_TOKEN": slack_token,
    }  # fmt: skip


class JumpClock(WallClock):
    """The wall clock, moved forward by `jump` (never back)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        """Move the clock `seconds` forward at once."""
        self.offset += max(seconds, 0.0)


class Server:
    """`rearguard serve --config CONFIG` as a child process, its output in `log`."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        listen = next(ln for ln in config.read_text().splitlines() if ln.startswith("listen"))
        self.url = "http://" + listen.split('"')[1]
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
        """SIGKILL: no cleanup, no flush, as when a node dies."""
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

    async def wait_up(self, session: aiohttp.ClientSession) -> None:
        """Until `/readyz` answers 200 (30 s at most)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{self.url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.tail()}")

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(f"{self.url}{path}", headers=AUTH) as response:
            return await response.json()

    async def deliver_pr(
        self, session: aiohttp.ClientSession, github: FakeGitHub, number: int
    ) -> None:
        """The signed `pull_request` closed+merged webhook for PR `number`."""
        body = json.dumps(github.pull_request_closed_webhook(number)).encode()
        headers = {
            "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": f"delivery-{number}",
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json",
        }  # fmt: skip
        async with session.post(
            f"{self.url}/v1/webhooks/github", data=body, headers=headers
        ) as response:
            assert response.status == 202, await response.text()

    async def post_deploy(
        self, session: aiohttp.ClientSession, service: str, sha: str, previous: str
    ) -> str:
        """The CD hook for a production deploy of `sha` that finished now; its deploy id."""
        async with session.post(
            f"{self.url}/v1/deploys",
            json={"service": service, "environment": "production", "sha": sha,
                  "previous_sha": previous, "finished_at": time.time()},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response:  # fmt: skip
            assert response.status == 202, await response.text()
            deploy_id: str = (await response.json())["id"]
            return deploy_id

    async def wait_final(
        self, session: aiohttp.ClientSession, deploy_id: str, within: float = 60
    ) -> Any:
        """The deploy view once its Watch is final."""
        return await until(
            lambda: self.get(session, f"/v1/deploys/{deploy_id}"),
            lambda view: view["phase"] in FINAL,
            within=within,
            what=f"deploy {deploy_id} final\n{self.tail()}",
        )


async def until(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float = 60,
    what: str = "the condition",
) -> T:
    """Poll `read()` until `done` holds for what it returned; that value."""
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {within:.0f}s: {value}")
        await asyncio.sleep(0.1)
