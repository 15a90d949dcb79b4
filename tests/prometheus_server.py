"""The real `prometheus` binary, run for tests: config, process, readiness, restarts.

`PrometheusServer` writes a config that scrapes the given targets every `scrape_interval`
seconds (one by default, so live tests see data fast; 15 s and more is what teams run), and
logs every query it answers to `query_log` when given (Prometheus' own query log), runs the
binary (`REARGUARD_PROMETHEUS_BIN`, else `prometheus` on PATH; the Debian package
`prometheus`) on a free loopback port with its TSDB in a given folder, and waits for
`/-/ready`. `stop()` and `start()` keep the same port and data folder, so a test can take
Prometheus away in the middle of a watch and bring it back with its history.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

from tests.waiting import wait_for, wait_for_async

BINARY_SETTING = "REARGUARD_PROMETHEUS_BIN"
_LOG_TAIL_LINES = 30


class PrometheusNotFound(RuntimeError):
    """Neither `REARGUARD_PROMETHEUS_BIN` nor PATH names a `prometheus` binary."""


class PrometheusServer:
    """One Prometheus process scraping `targets` ("host:port") every `scrape_interval` seconds."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        workdir: Path,
        binary: str | None = None,
        ready_timeout: float = 30.0,
        scrape_interval: int = 1,
        query_log: Path | None = None,
    ) -> None:
        self._binary = binary or find_binary()
        self._workdir = workdir
        self._ready_timeout = ready_timeout
        self._port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._config = workdir / "prometheus.yml"
        self._config.write_text(_config(targets, scrape_interval, query_log))
        self.data_dir = workdir / "data"
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        """Base URL, the same across restarts."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """The process id while running (a benchmark reads its CPU time from /proc)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process we started is still alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process (again) on the same port and data folder; wait until ready."""
        if self.running:
            return
        self._close_log()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                self._binary,
                f"--config.file={self._config}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self._port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call when not running."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the process log, for error messages."""
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def instant(self, query: str) -> list[Any]:
        """The samples of an instant `query` now (`data.result`); raises if Prometheus refuses."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus refused {query!r}: {body}")
        result: list[Any] = body["data"]["result"]
        return result

    async def wait_for_data(self, query: str, *, within: float = 60.0) -> None:
        """Poll an instant `query` until it returns at least one sample, or fail with why."""
        last = "no answer yet"
        async with aiohttp.ClientSession() as session:

            async def samples() -> list[Any]:
                nonlocal last
                try:
                    url = f"{self.url}/api/v1/query"
                    async with session.get(url, params={"query": query}) as response:
                        body = await response.json()
                except aiohttp.ClientError as exc:
                    last = repr(exc)
                    return []
                last = f"HTTP {response.status}: {body}"
                return body["data"]["result"] if body.get("status") == "success" else []

            await wait_for_async(
                samples, within=within, what=f"{query!r} to return data", detail=lambda: last
            )

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._process.returncode} before it was ready; "
                    f"log tail:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer,
            ):
                return bool(answer.status == 200)
            return False

        wait_for(
            ready,
            within=self._ready_timeout,
            what=f"prometheus at {self.url} to be ready",
            interval=0.1,
            detail=lambda: f"log tail:\n{self.log_tail()}",
        )

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def find_binary() -> str:
    """`REARGUARD_PROMETHEUS_BIN`, else `prometheus` on PATH, else say what to install."""
    configured = os.environ.get(BINARY_SETTING)
    if configured:
        if not os.access(configured, os.X_OK):
            raise PrometheusNotFound(f"{BINARY_SETTING}={configured} is not an executable file")
        return configured
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusNotFound(
            "no `prometheus` binary on PATH: install the Debian package `prometheus` "
            f"(apt-get install -y prometheus) or set {BINARY_SETTING} to a Prometheus 2.x binary"
        )
    return found


def _config(targets: Sequence[str], scrape_interval: int = 1, query_log: Path | None = None) -> str:
    listed = ", ".join(f'"{target}"' for target in targets)
    log = f"  query_log_file: {json.dumps(str(query_log))}\n" if query_log else ""
    return (
        "global:\n"
        f"  scrape_interval: {scrape_interval}s\n"
        "  scrape_timeout: 1s\n"
        f"  evaluation_interval: {scrape_interval}s\n"
        f"{log}"
        "scrape_configs:\n"
        "  - job_name: sample_app\n"
        "    static_configs:\n"
        f"      - targets: [{listed}]\n"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
