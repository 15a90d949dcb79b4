"""The server side of `make bench-ingest`: `rearguard serve` as its own process, its config, and
the code it runs (this tree, or the unbatched baseline extracted from git).

The config holds the 50 watched services (`bench-w00`..`bench-w49`, the sample app's traffic at
a 1 s step, as `make bench-loop` has them, watched for 30 minutes) and `bench-cd`, the service
the CD-hook stages deploy (its watch is 2 s: each of those deploys is judged once and its Watch
ends). Prometheus is real. GitHub is `UnknownCommits`, which answers what GitHub answers for
commits it does not have (the deploys' shas are made up): Watches never regress here, so no
other GitHub call is made, and none to Slack (the policy is `observe`; notices go to stderr).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from bench.loop.run import service
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET
from tests.serve_rig_ingest import BEARER, Server, free_port, server_env, wait_up

WATCHES = 50
CD_SERVICE = "bench-cd"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def toml_tables(tables: dict[str, Any], prefix: str = "") -> str:
    """Nested dicts as TOML tables (values: strings, numbers, booleans, lists of them)."""
    out: list[str] = []
    plain = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    if prefix and plain:
        out.append(f"[{prefix}]")
    out.extend(f"{key} = {_toml_value(value)}" for key, value in plain.items())
    for key, value in tables.items():
        if isinstance(value, dict):
            out.append(toml_tables(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out)


def watched_names() -> list[str]:
    return [f"bench-w{i:02d}" for i in range(WATCHES)]


def write_config(path: Path, port: int, store: Path, *, urls: tuple[str, str, str]) -> Path:
    """The bench's config at `path`; `urls` are Prometheus', GitHub's and Slack's."""
    services = {name: service(name, watch="1800s", baseline="20s") for name in watched_names()}
    return write_bench_config(path, port, store, services, urls=urls)


def write_bench_config(
    path: Path,
    port: int,
    store: Path,
    services: dict[str, Any],
    *,
    urls: tuple[str, str, str],
    tick: str = "0.5s",
    prometheus: dict[str, Any] | None = None,
) -> Path:
    """A benchmark's config at `path` for the `services` tables, and the CD hook's own service;
    `urls` are Prometheus', GitHub's and Slack's, `prometheus` more of its settings (a timeout
    of 3 s unless given). Shared by bench-ingest, bench-store, bench-scale and the scale tests;
    bench-scale runs the production defaults of `tick` and the timeout."""
    prometheus_url, github, slack = urls
    services = {**services, CD_SERVICE: service(CD_SERVICE, watch="2s", baseline="20s")}
    for table in services.values():
        table["seasonal"] = []  # no day- or week-old baselines: the sample app has no such past
    config = {
        "server": {"listen": f"127.0.0.1:{port}", "store": str(store), "tick": tick},
        "github": {"api_url": github},
        "prometheus": {"url": prometheus_url, "timeout": "3s", **(prometheus or {})},
        "slack": {"api_url": slack, "channel": "C0BENCH"},
        "policy": {"mode": "observe"},
        "services": services,
    }
    path.write_text(toml_tables(config) + "\n")
    return path


def baseline_tree(ref: str, into: Path) -> Path | None:
    """The source tree at `ref` (the code before group commit), extracted with `git archive`;
    None when this checkout does not have it."""
    try:
        archive = subprocess.run(  # noqa: S603 - git with fixed arguments and a ref we name
            ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref],  # noqa: S607 - git on PATH
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


class UnknownCommits:
    """A GitHub API on loopback that knows no commit: compare answers 404 as GitHub does."""

    NOT_FOUND: ClassVar[dict[str, str]] = {
        "message": "Not Found",
        "status": "404",
        "documentation_url": "https://docs.github.com/rest/commits/commits#compare-two-commits",
    }

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/repos/{owner}/{repo}/compare/{basehead}", self._compare)
        self._runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def _compare(self, request: web.Request) -> web.Response:
        return web.json_response(self.NOT_FOUND, status=404)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        await self._runner.cleanup()


class Variant:
    """One server under test: its process, store and log, and the 50 Watches it runs."""

    def __init__(self, name: str, workdir: Path, *, urls: tuple[str, str, str],
                 tokens: dict[str, str], code: Path | None) -> None:  # fmt: skip
        self.name = name
        port = free_port()
        workdir.mkdir(parents=True)
        self.store = workdir / "store.duckdb"
        config = write_config(workdir / "rearguard.toml", port, self.store, urls=urls)
        env = server_env() | tokens | {
            "REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }  # fmt: skip
        self.server = Server(config, env, port, workdir / "server.log", code=code)
        self.watches: list[str] = []

    @property
    def url(self) -> str:
        return self.server.url

    def rss_mb(self) -> float:
        """The server process's resident memory now (VmRSS), in MB."""
        assert self.server.process is not None
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kb) / 1024

    async def start(self) -> None:
        """Start the server and one deploy per watched service; until all 50 are observing."""
        self.server.start()
        async with aiohttp.ClientSession() as session:
            await wait_up(session, self.server)
            for i, name in enumerate(watched_names()):
                body = {"service": name, "environment": "production",
                        "sha": f"{i + 1:040x}", "finished_at": time.time()}  # fmt: skip
                async with session.post(f"{self.url}/v1/deploys", json=body,
                                        headers=BEARER) as response:  # fmt: skip
                    self.watches.append((await response.json())["id"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                phases = [await self._phase(session, d) for d in self.watches]
                if all(p == "observing" for p in phases):
                    return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name}: the 50 Watches did not all start:\n{self.server.tail()}")

    async def _phase(self, session: aiohttp.ClientSession, deploy: str) -> str:
        async with session.get(f"{self.url}/v1/deploys/{deploy}") as response:
            return str((await response.json())["phase"])

    def stop(self) -> None:
        self.server.stop()
