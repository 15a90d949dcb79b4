"""Many Watches on `rearguard serve`: the services' config, their deploys, a query log in front of
Prometheus, and the store read back once the server has stopped (issue 14's tests).

`QueryLog` is a reverse proxy on loopback in front of the real Prometheus that notes every range
query (when, the PromQL, its start and end) and passes everything through untouched, so a test
can tell a baseline's query (its range ends where the deploy finished) from the watch window's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import duckdb
from aiohttp import web

from bench.ingest.server import UnknownCommits, write_bench_config
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET
from tests.prometheus_server import PrometheusServer
from tests.serve_rig_ingest import BEARER, Server, free_port, server_env
from tests.waiting import wait_for_async

ROUTE = "/api/v1/query_range"


@dataclass(frozen=True, slots=True)
class Logged:
    at: float
    query: str
    start: float
    end: float


class QueryLog:
    """A pass-through proxy to `upstream` (Prometheus) that logs its range queries."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self.entries: list[Logged] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None)
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _pass(self, request: web.Request) -> web.Response:
        assert self._session is not None
        if request.path == ROUTE:
            q = request.query
            self.entries.append(Logged(time.time(), q["query"], float(q["start"]), float(q["end"])))
        async with self._session.request(
            request.method, f"{self._upstream}{request.path_qs}", data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as answer:  # fmt: skip
            return web.Response(
                body=await answer.read(), status=answer.status,
                content_type=answer.content_type,
            )  # fmt: skip


SERVICE = re.compile(r'service="([^"]+)"')


def service_of(query: str) -> str:
    """The service a query is about (its `service` label)."""
    found = SERVICE.search(query)
    assert found is not None, query
    return found.group(1)


def rounds(entries: list[Logged], gap: float) -> dict[str, int]:
    """Per service, how many evaluations its queries in `entries` came from: queries more than
    `gap` seconds after the last one counted begin another."""
    seen: dict[str, list[float]] = {}
    for e in entries:
        at = seen.setdefault(service_of(e.query), [])
        if not at or e.at >= at[-1] + gap:
            at.append(e.at)
    return {name: len(at) for name, at in seen.items()}


def selector(name: str) -> str:
    return f'service="{name}"'


def services(names: list[str], *, step: str, watch: str, baseline: str) -> dict[str, Any]:
    """Config tables of the sample app's services, two ratio SLIs each (errors, slow requests),
    with `$step` ranges as users write them."""
    tables: dict[str, Any] = {}
    for name in names:
        sel = selector(name)
        count = f"sum(increase(http_request_duration_seconds_count{{{sel}}}[$step]))"
        tables[name] = {
            "repo": "acme/shop", "step": step, "watch": watch, "baseline": baseline,
            "slis": {
                "http_errors": {
                    "bad": f'sum(increase(http_requests_total{{{sel},code="500"}}[$step]))',
                    "total": f"sum(increase(http_requests_total{{{sel}}}[$step]))",
                    "min_events": 100,
                },
                "slow_requests": {
                    "bad": f"{count} - sum(increase(http_request_duration_seconds_bucket"
                           f'{{{sel},le="0.5"}}[$step]))',
                    "total": count, "min_events": 100,
                },
            },
        }  # fmt: skip
    return tables


async def post_deploys(
    session: aiohttp.ClientSession, url: str, names: list[str], finished_at: float
) -> dict[str, str]:
    """One deploy per service through `POST /v1/deploys`, all finished at `finished_at`: the
    deploy id by service."""

    async def one(i: int, name: str) -> tuple[str, str]:
        body = {"service": name, "environment": "production", "sha": f"{i + 1:040x}",
                "finished_at": finished_at}  # fmt: skip
        async with session.post(f"{url}/v1/deploys", json=body, headers=BEARER) as response:
            assert response.status in {200, 201, 202}, await response.text()
            return name, str((await response.json())["id"])

    gate = asyncio.Semaphore(20)

    async def bounded(i: int, name: str) -> tuple[str, str]:
        async with gate:
            return await one(i, name)

    return dict(await asyncio.gather(*(bounded(i, n) for i, n in enumerate(names))))


def evaluations(store: Path) -> list[tuple[str, int, float, float | None]]:
    """Every evaluation kept in the stopped server's store: (deploy id, seq, observed_at,
    due_at), in order."""
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT deploy_id, seq, epoch(min(observed_at)), epoch(min(due_at)) "
            "FROM observations GROUP BY deploy_id, seq ORDER BY deploy_id, seq"
        ).fetchall()
    return [(str(d), int(s), float(o), None if due is None else float(due))
            for d, s, o, due in rows]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fleet:
    """The sample app's services scraped by a real Prometheus, behind a `QueryLog`, and a
    GitHub that knows none of the deploys' commits."""

    names: list[str]
    prometheus: PrometheusServer
    log: QueryLog | None
    github: str

    @property
    def url(self) -> str:
        """Where Rearguard reads Prometheus: through the log when there is one."""
        return self.prometheus.url if self.log is None else self.log.url


@contextlib.asynccontextmanager
async def fleet(
    names: list[str],
    workdir: Path,
    *,
    scrape_interval: int,
    rate: float = 20.0,
    logged: bool = True,
) -> AsyncIterator[Fleet]:
    """`names` as services of one sample app (`rate` requests/s, 0.5% errors, 1% slow); with
    `logged`, Prometheus behind a `QueryLog`."""
    app = SampleApp(seed=3)
    for name in names:
        app.configure(name, rate=rate, error_ratio=0.005, slow_ratio=0.01)
    app.start_in_thread()
    (workdir / "prometheus").mkdir()
    prometheus = PrometheusServer([urlsplit(app.url).netloc], workdir=workdir / "prometheus",
                                  scrape_interval=scrape_interval)  # fmt: skip
    github = UnknownCommits()
    log = QueryLog(prometheus.url) if logged else None
    try:
        prometheus.start()
        if log is not None:
            await log.start()
        await github.start()
        yield Fleet(names, prometheus, log, github.url)
    finally:
        await github.close()
        if log is not None:
            await log.close()
        prometheus.stop()
        app.stop()


async def wait_history(fleet: Fleet, seconds: float) -> None:
    """Until Prometheus holds `seconds` of the last service's samples."""
    query = f'timestamp(http_requests_total{{{selector(fleet.names[-1])},code="200"}})'
    query += f" - min_over_time(timestamp(http_requests_total{{{selector(fleet.names[-1])}"
    query += ',code="200"})[1h:1s])'

    async def enough() -> bool:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{fleet.prometheus.url}/api/v1/query", params={"query": query}) as r,
        ):
            result = (await r.json())["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= seconds

    await wait_for_async(enough, within=seconds + 60, what=f"{seconds:.0f} s of samples",
                         interval=0.5)  # fmt: skip


def served(
    fleet: Fleet, workdir: Path, tables: dict[str, Any], prometheus: dict[str, Any]
) -> tuple[Server, Path]:
    """`rearguard serve` (not started) over `tables`, its queries through the fleet's log, and
    the path of its store."""
    port = free_port()
    store = workdir / "store.duckdb"
    config = write_bench_config(
        workdir / "rearguard.toml", port, store, tables,
        urls=(fleet.url, fleet.github, "http://127.0.0.1:9/api/"), prometheus=prometheus,
    )  # fmt: skip
    env = server_env() | {"REARGUARD_API_TOKEN": API_TOKEN, "GITHUB_TOKEN": "ghp-test",
                          "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}  # fmt: skip
    return Server(config, env, port, workdir / "server.log"), store
