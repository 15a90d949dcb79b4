"""`/metrics` and `/openapi.json` tell the truth about the running app."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from loop.api import openapi
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.config import settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge


def _app(tmp_path: Path) -> Any:
    settings = settings_from(
        {
            "server": {"store": str(tmp_path / "s.duckdb")},
            "services": {
                "checkout": {"repo": "acme/checkout", "slis": {"e": {"bad": "b", "total": "t"}}}
            },
        },
        {"REARGUARD_API_TOKEN": "t0ken"},
        "test",
    )
    clients = (SimulatedSource(), LocalGitForge(tmp_path), ConsoleNotifier(io.StringIO()))
    return build_app(settings, clients=clients, scheduler=False)


def test_openapi_lists_exactly_the_routes_the_app_serves(tmp_path: Path) -> None:
    """Every route the router knows is documented, and nothing else is."""
    app = _app(tmp_path)
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(route.method, route.path) for route in openapi.ROUTES}
    assert served == documented


async def test_metrics_count_what_the_store_holds(tmp_path: Path, aiohttp_client: Any) -> None:
    """A deploy posted and a refused webhook show up in /metrics; /openapi.json is served."""
    client = await aiohttp_client(_app(tmp_path))
    answer = await client.post(
        "/v1/deploys",
        json={"service": "checkout", "environment": "production", "sha": "a" * 40,
              "finished_at": 1.7e9},
        headers={"Authorization": "Bearer t0ken"},
    )  # fmt: skip
    assert answer.status == 202
    rejected = await client.post("/v1/webhooks/github", data=b"{}")
    assert rejected.status == 400
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'rearguard_watches{phase="deployed"} 1.0' in text
    assert 'rearguard_deliveries{source="cd",status="applied"} 1.0' in text
    assert (
        'rearguard_refused_requests_total{reason="missing_header",route="/v1/webhooks/github"} 1.0'
        in text
    )
    assert 'status="rejected"' not in text  # a refused request writes no journal row
    deploy_id = (await answer.json())["id"]
    store = client.app[DEPS].store
    assert await store.watches.transition(
        deploy_id, "deployed", "observing", now=1.7e9, next_due=1.7e9, reason="test"
    )
    again = await (await client.get("/metrics")).text()
    assert 'rearguard_watches{phase="deployed"} 0.0' in again
    assert 'rearguard_watches{phase="observing"} 1.0' in again
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/v1/incidents/{id}" in spec["paths"]
