"""The scheduler's own health in `/metrics`, read the way Prometheus reads it: the app over
loopback with its scheduler on the wall clock, a few Watches evaluated against a real Prometheus,
whose own count of the range queries it answered is set beside Rearguard's."""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loop.api.app import build_app
from loop.api.context import DEPS
from observer.prometheus import PrometheusSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import (
    API_TOKEN,
    WEBHOOK_SECRET,
    deliver_pr,
    loop_settings,
    post_deploy,
    service_config,
    wait_final,
)
from tests.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.prometheus, pytest.mark.shared_samples]

SERVICE = "e2e-healthy"
"""A loop service with steady traffic (only read here: its Watches cannot disturb another's)."""
ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
WATCHES = 3


def _samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page by name and labels (`name{a="b"}`), summed."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            found[key] = found.get(key, 0.0) + sample.value
    return found


async def _range_queries_answered(prometheus: PrometheusServer) -> float:
    """Range queries this Prometheus has answered so far, by its own `/metrics`."""
    async with aiohttp.ClientSession() as session, session.get(f"{prometheus.url}/metrics") as r:
        text = await r.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "prometheus_http_requests_total"
        and sample.labels.get("handler") == "/api/v1/query_range"
    )


async def test_metrics_show_each_evaluations_lag_queries_and_the_store_queue(
    tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp, aiohttp_client: Any
) -> None:
    """Three Watches deployed together run to healthy: `/metrics` counts every evaluation once,
    each on time (lag under 3 s, no step skipped), with exactly the range queries Prometheus
    answered, and the store calls' time in the writer's queue."""
    async with AsyncExitStack() as closing:
        github = await closing.enter_async_context(
            FakeGitHub(tmp_path / "github", repo="acme/shop")
        )
        services = {SERVICE: service_config(SERVICE, "acme/shop")}
        settings = loop_settings(str(tmp_path / "store.duckdb"), prometheus.url, services, ENV)
        forge = await closing.enter_async_context(GitHubForge(github.url, github.token, timeout=5))
        source = await closing.enter_async_context(PrometheusSource(prometheus.url, timeout=3))
        app = build_app(settings, clients=(source, forge, ConsoleNotifier(io.StringIO())))
        client = await aiohttp_client(app)
        closing.push_async_callback(client.close)  # first: stops the scheduler, then the clients
        before = await _range_queries_answered(prometheus)
        initial = github.head_sha()
        pr = github.merge_pr("Rename a variable", "Nothing an SLI would see.")
        await deliver_pr(client, github, pr.number)
        now = time.time()
        deploys = [
            await post_deploy(client, SERVICE, github.head_sha(), initial, now - 0.01 * i)
            for i in range(WATCHES)
        ]
        views = await asyncio.gather(*(wait_final(client, d) for d in deploys))
        phases = [(v["phase"], v["reason"]) for v in views]
        assert [p for p, _ in phases] == ["healthy"] * WATCHES, phases
        answered = await _range_queries_answered(prometheus) - before
        store = client.app[DEPS].store
        evaluations = sum([await store.watches.observation_count(d) for d in deploys])
        response = await client.get("/metrics")
        assert response.status == 200
        metrics = _samples(await response.text())

    assert evaluations >= WATCHES * 10  # a 20 s watch at a 2 s step: ten evaluations each
    assert metrics["rearguard_evaluations_total"] == evaluations
    assert metrics["rearguard_evaluation_lag_seconds_count"] == evaluations
    assert metrics['rearguard_evaluation_lag_seconds_bucket{le="3"}'] == evaluations  # on time
    assert metrics["rearguard_evaluations_skipped_total"] == 0
    assert metrics["rearguard_queries_per_evaluation_count"] == evaluations
    assert answered > 0
    assert metrics["rearguard_queries_per_evaluation_sum"] == answered
    assert metrics["rearguard_store_queue_seconds_count"] > 0
    assert metrics["rearguard_store_queue_seconds_sum"] >= 0
