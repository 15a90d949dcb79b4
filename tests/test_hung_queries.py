"""A hung Prometheus query costs only its own Watch, on the path a real deployment takes.

Two `rearguard serve` processes run the same TOML config against one Prometheus URL: a stand-in
that passes every query through to the real Prometheus, except the queries of ten services
(`hung-0` .. `hung-9`), which it holds until their timeout as a Prometheus that cannot finish a
query does. The control server watches only the healthy service; the other first gets a deploy
of each hung service, and once all ten Watches are hanging, both get the same deploy of the
healthy service, at the same moment, into the same 5% error ratio: they read the same series at
the same step times, so they detect it at the same step, and any difference in when their revert
PRs open is what the hung Watches cost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from loop.watch.scheduler import QUERIES_PER_WATCH
from observer.prometheus import PrometheusSource
from tests.fakes.github import FakeGitHub
from tests.fakes.hanging_prometheus import HangingPrometheus
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET, sign
from tests.prometheus_server import PrometheusServer
from tests.serve_rig import Server, free_port, server_environment, wait_up

pytestmark = pytest.mark.prometheus

HEALTHY = "e2e-beside-hung"
HUNG = [f"hung-{i}" for i in range(10)]
STEP = 2.0
TIMEOUT = 3.0  # [prometheus] timeout: each hung query costs this much before it gives up
REPO = "acme/shop"


def _service(name: str, watch: str, slis: int) -> str:
    """A service whose SLIs (`slis` of them, alike) are its 5xx ratio."""
    selector = f'service="{name}"'
    text = f"""
[services.{name}]
repo = "{REPO}"
step = "{STEP:.0f}s"
watch = "{watch}"
baseline = "20s"
"""
    for i in range(slis):
        text += f"""[services.{name}.slis.http_errors_{i}]
bad = 'sum(increase(http_requests_total{{{selector},code=~"5.."}}[$step]))'
total = 'sum(increase(http_requests_total{{{selector}}}[$step]))'
"""
    return text


def _config(tmp: Path, name: str, port: int, prometheus: str, github: str) -> Path:
    path = tmp / f"{name}.toml"
    # Two SLIs per hung service: 16 queries per evaluation, twice what one Watch may run at once.
    services = _service(HEALTHY, "20s", 1) + "".join(_service(h, "300s", 2) for h in HUNG)
    path.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
store = "{tmp / f"{name}.duckdb"}"
tick = "0.5s"
[github]
api_url = "{github}"
[prometheus]
url = "{prometheus}"
timeout = "{TIMEOUT:.0f}s"
{services}""")
    return path


class Rig:
    """One `serve` process and its GitHub stand-in."""

    def __init__(self, server: Server, github: FakeGitHub) -> None:
        self.server, self.github = server, github
        self.initial = github.head_sha()

    async def deploy(self, session: aiohttp.ClientSession, service: str, at: float) -> str:
        async with session.post(
            f"{self.server.url}/v1/deploys",
            json={"service": service, "environment": "production", "sha": self.github.head_sha(),
                  "previous_sha": self.initial, "finished_at": at},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response:  # fmt: skip
            assert response.status == 202, await response.text()
            deploy_id: str = (await response.json())["id"]
            return deploy_id

    async def merge_culprit(self, session: aiohttp.ClientSession) -> None:
        pr = self.github.merge_pr("Drop the retry", "Agent-Session: sess-h\nAgent-Name: codex")
        body = json.dumps(self.github.pull_request_closed_webhook(pr.number)).encode()
        async with session.post(f"{self.server.url}/v1/webhooks/github", data=body, headers={
            "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": f"hung-{pr.number}",
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json",
        }) as response:  # fmt: skip
            assert response.status == 202, await response.text()

    def revert_opened(self) -> bool:
        return any(p.title.startswith("Revert") for p in self.github.created_pulls())


@pytest.fixture
async def proxy(prometheus: PrometheusServer) -> AsyncIterator[HangingPrometheus]:
    hanging = HangingPrometheus(prometheus.url, [f'service="{h}"' for h in HUNG])
    await hanging.start()
    yield hanging
    await hanging.close()


@pytest.fixture
async def rigs(tmp_path: Path, proxy: HangingPrometheus) -> AsyncIterator[tuple[Rig, Rig]]:
    """The control and the server beside the hung Watches, both up."""
    made: list[Rig] = []
    try:
        for name in ("control", "beside"):
            github = FakeGitHub(tmp_path / f"github-{name}", repo=REPO)
            await github.start()
            github.checks_pending = False
            port = free_port()
            config = _config(tmp_path, name, port, proxy.url, github.url)
            env = server_environment() | {
                "REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GITHUB_TOKEN": github.token,
            }  # fmt: skip
            server = Server(config, env, port, tmp_path / f"{name}.log")
            made.append(Rig(server, github))
            server.start()
        async with aiohttp.ClientSession() as session:
            for rig in made:
                await wait_up(session, rig.server)
        yield made[0], made[1]
    finally:
        for rig in made:
            rig.server.stop()
            await rig.github.close()


async def _until(condition: object, within: float, says: str) -> float:
    """Poll `condition()` every 50 ms; the monotonic time it first held."""
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, says
        await asyncio.sleep(0.05)
    return time.monotonic()


async def _baseline(sample_app: SampleApp, prometheus: PrometheusServer) -> None:
    """The healthy service's traffic, with the 20 s of history its baseline reads."""
    sample_app.configure(HEALTHY, rate=200, error_ratio=0.005)
    await prometheus.wait_for_data(
        f'count_over_time(http_requests_total{{service="{HEALTHY}",code="200"}}[30s]) >= 22',
        within=60,
    )


async def test_ten_hung_watches_do_not_delay_a_healthy_services_revert(
    prometheus: PrometheusServer,
    sample_app: SampleApp,
    proxy: HangingPrometheus,
    rigs: tuple[Rig, Rig],
) -> None:
    """Ten Watches whose queries hang until their timeout, and a healthy service regressing
    beside them: its revert PR opens within 2 steps of the control's, which has no hung Watch;
    no hung Watch has more than its own bound of queries in flight."""
    control, beside = rigs
    await _baseline(sample_app, prometheus)
    async with aiohttp.ClientSession() as session:
        now = time.time()
        for service in HUNG:
            await beside.deploy(session, service, now)
        # Six at least: as many as ever hung at once while queries ran in the default executor.
        await _until(lambda: proxy.hanging >= 6, 60, f"not hanging: {proxy.peak}")
        for rig in rigs:
            await rig.merge_culprit(session)
        sample_app.configure(HEALTHY, error_ratio=0.05)
        try:
            onset = time.time()
            for rig in rigs:
                await rig.deploy(session, HEALTHY, onset)
            started = time.monotonic()
            alone = await _until(control.revert_opened, 90, control.server.tail())
            late = await _until(
                beside.revert_opened, 240,
                f"no revert beside the hung Watches in 240 s; alone after {alone - started:.1f}s",
            )  # fmt: skip
        finally:
            sample_app.configure(HEALTHY, error_ratio=0.005)
    assert proxy.hanging > 0, "the hung Watches stopped hanging before the revert opened"
    assert len(proxy.peak) == len(HUNG), proxy.peak
    assert max(proxy.peak.values()) <= QUERIES_PER_WATCH, proxy.peak
    delay = late - alone
    assert delay <= 2 * STEP, (
        f"revert PR {alone - started:.1f}s after the deploy alone, "
        f"{late - started:.1f}s beside ten hung Watches: {delay:.1f}s "
        f"({delay / STEP:.1f} steps) later"
    )


async def test_hung_queries_do_not_hold_up_other_queries_on_the_same_source(
    prometheus: PrometheusServer, sample_app: SampleApp, proxy: HangingPrometheus
) -> None:
    """200 queries hanging on one PrometheusSource: another query on it answers at once."""
    sample_app.configure("beside-hung-source", rate=10)
    healthy = 'http_requests_total{service="beside-hung-source",code="200"}'
    await prometheus.wait_for_data(healthy)
    end = time.time()
    async with PrometheusSource(proxy.url, timeout=2) as source:
        queries = [f'up{{service="{HUNG[i % len(HUNG)]}"}}' for i in range(200)]
        hung = [asyncio.create_task(source.query_range(q, end - 5, end, 1)) for q in queries]
        try:
            await _until(lambda: proxy.hanging >= 6, 10, f"only {proxy.hanging} hanging")
            started = time.monotonic()
            try:
                async with asyncio.timeout(1.5):
                    series = await source.query_range(healthy, end - 5, end, 1)
            except TimeoutError:
                pytest.fail(f"no answer within 1.5 s beside {proxy.hanging} hung queries")
            took = time.monotonic() - started
        finally:
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
    assert series
    assert took < 1.0, f"a healthy query took {took:.1f}s beside {proxy.hanging} hung ones"
