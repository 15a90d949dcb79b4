"""`rearguard serve` as a child process, and the deliveries that tests and benchmarks offer it.

`Server` runs the real command with a TOML config (as a user would), so a test can SIGKILL it and
start it again on the same store. `example_config` is `deploy/rearguard.example.toml` with only
its addresses pointed at the test's (listen, store, GitHub, Prometheus, Slack). The builders make
what the senders really send: GitHub's sample `pull_request` closed event turned into a merge,
signed with `X-Hub-Signature-256`, and the CD hook's JSON with its bearer token.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.loop_rig import API_TOKEN, sign
from tests.shared_fixtures import REPO_ROOT, load_json

EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "rearguard.example.toml"
EXAMPLE_SERVICE = "checkout"  # the example config's one service
EXAMPLE_REPO = "acme/checkout"


def server_env() -> dict[str, str]:
    """A server's environment: this one's, less any real GitHub or Slack credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def example_config(path: Path, port: int, store: Path, *, github: str, prometheus: str,
                   slack: str = "http://127.0.0.1:9/api/") -> Path:  # fmt: skip
    """Write the example config to `path`, its addresses (and nothing else) replaced."""
    text = EXAMPLE_CONFIG.read_text()
    for key, value in (("listen", f"127.0.0.1:{port}"), ("store", str(store))):
        text, n = re.subn(rf'^{key} = "[^"]*"', f'{key} = "{value}"', text, count=1, flags=re.M)
        assert n == 1, f"the example config has no server.{key}"
    for table, url in (("github", github), ("prometheus", prometheus), ("slack", slack)):
        pattern = rf'(\[{table}\]\n(?:[^\[].*\n)*?(?:api_)?url = )"[^"]*"'
        text, n = re.subn(pattern, rf'\g<1>"{url}"', text, count=1)
        assert n == 1, f"the example config has no {table} url"
    path.write_text(text)
    return path


class Server:
    """`rearguard serve` as a child process."""

    def __init__(
        self, config: Path, env: dict[str, str], port: int, log: Path, *, code: Path | None = None
    ) -> None:
        """`code`: run the Rearguard of that source tree (a benchmark's baseline), not this one."""
        self.config, self.env, self.url, self.log = config, env, f"http://127.0.0.1:{port}", log
        self.code = code
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = self.env if self.code is None else self.env | {"PYTHONPATH": str(self.code)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loop.cli.main", "serve", "--config", str(self.config)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.code,
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


async def wait_up(session: aiohttp.ClientSession, server: Server, within: float = 30) -> None:
    """Until `/readyz` answers 200; fails with the server's log if it never does (at once if
    the process has exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise AssertionError(f"server exited ({server.process.returncode}):\n{server.tail()}")
        try:
            async with session.get(f"{server.url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"server did not start:\n{server.tail()}")


class PullRequests:
    """Signed `pull_request` closed+merged deliveries of `repo`, one per PR number, built from
    GitHub's sample by replacing marked values in its text (cheap enough for a load generator)."""

    _NUMBER, _SHA = 918273645, "5eed" * 10

    def __init__(self, repo: str = EXAMPLE_REPO) -> None:
        payload: dict[str, Any] = copy.deepcopy(
            load_json("github-webhooks/pull_request/closed.payload.json")
        )
        pr = payload["pull_request"]
        pr.update(number=self._NUMBER, merged=True, merged_at="2026-11-02T09:30:00Z",
                  merge_commit_sha=self._SHA, title=f"Change {self._NUMBER}",
                  body=f"Tune {self._NUMBER}.\n\nAgent-Session: s-{self._NUMBER}\n"
                  "Agent-Name: claude-code\nAgent-Model: claude-sonnet-4-6\n")  # fmt: skip
        payload["number"] = self._NUMBER
        payload["repository"]["full_name"] = repo
        self._text = json.dumps(payload)

    def body(self, number: int) -> bytes:
        return (
            self._text.replace(str(self._NUMBER), str(number))
            .replace(self._SHA, f"{number:040x}")
            .encode()
        )

    def headers(self, delivery: str, body: bytes) -> dict[str, str]:
        return {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}  # fmt: skip


def deploy_request(number: int, service: str = EXAMPLE_SERVICE) -> dict[str, Any]:
    """The CD hook's body for deploy `number` of `service` (its own sha and finish time)."""
    return {"service": service, "environment": "production", "sha": f"{number:040x}",
            "previous_sha": f"{number + 1:040x}",
            "finished_at": 1_790_000_000 + number}  # fmt: skip


BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
