"""`rearguard serve` as a child process with a config of the test's, for tests of what a real
deployment answers over a real socket (`tests.test_crash_resume.Server` runs the process)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.test_crash_resume import Server

SERVICE_CONFIG = """
[services.checkout]
repo = "acme/checkout"
sentry_projects = ["1"]
[services.checkout.slis.errors]
bad = "sum(bad)"
total = "sum(total)"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def is_ready(port: int) -> bool:
    """Whether the server on `port` answers `/readyz` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str]) -> Iterator[int]:
    """`rearguard serve` for service `checkout` (GitHub and Prometheus unreachable, which the
    HTTP surface never needs), with `env` over this environment less real credentials; its
    port once it is ready."""
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
{SERVICE_CONFIG}""")
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
