"""`rearguard serve` as a child process, for tests on the path a real deployment takes: a TOML
config on disk, the environment for secrets, HTTP over loopback, and a log to show on failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_environment() -> dict[str, str]:
    """This process's environment, less any real GitHub or Slack credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK"))}


class Server:
    """`rearguard serve` as a child process."""

    def __init__(
        self, config: Path, env: dict[str, str], port: int, log: Path, *, uid: int | None = None
    ) -> None:
        self.config, self.env, self.url, self.log = config, env, f"http://127.0.0.1:{port}", log
        # Run as this user and group (with `setpriv`, from root), without root's right to
        # write anywhere.
        self.wrap = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                            "--clear-groups"]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.wrap, sys.executable, "-m", "loop.cli.main", "serve",
                 "--config", str(self.config)],
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


async def get_json(session: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as response:
        return await response.json()


async def wait_up(
    session: aiohttp.ClientSession, server: Server, within: float = 30, *, ready: bool = True
) -> None:
    """Poll `/readyz` until the server answers 200 (or answers at all, with `ready=False`)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}:\n{server.tail()}"
            )
        try:
            async with session.get(f"{server.url}/readyz") as response:
                if response.status == 200 or not ready:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"server did not start:\n{server.tail()}")


SERVICE_CONFIG = """
[services.checkout]
repo = "acme/checkout"
sentry_projects = ["1"]
[services.checkout.slis.errors]
bad = "sum(bad)"
total = "sum(total)"
"""


def is_ready(port: int) -> bool:
    """Whether the server on `port` answers `/readyz` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str], extra: str = "") -> Iterator[int]:
    """`rearguard serve` for service `checkout` (GitHub and Prometheus unreachable, which the
    HTTP surface never needs) and the TOML `extra`, with `env` over this environment less real
    credentials; its port once it is ready."""
    port = free_port()
    config = workdir / "rearguard.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
store = "{workdir / "store.duckdb"}"
tick = "1h"
[github]
api_url = "http://127.0.0.1:9/"
[prometheus]
url = "http://127.0.0.1:9"
{SERVICE_CONFIG}
{extra}""")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK", "REAR"))}
    server = Server(config, base | {"GITHUB_TOKEN": "ghp-test", **env}, port, workdir / "log")
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not is_ready(port):
            assert time.monotonic() < deadline, server.tail()
            time.sleep(0.2)
        yield port
    finally:
        server.stop()
