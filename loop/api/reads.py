"""The read routes: deploys and incidents, health and readiness, Rearguard's own metrics and the
OpenAPI document.

Deploys, incidents (and the reports, `loop.api.reports`) tell which PR broke what and hold PR
bodies and Slack threads: they are served behind the read token (`reader`) unless the config
opens them. The probes, `/metrics` (counts, with labels from fixed sets) and the OpenAPI
document are open: Kubernetes and Prometheus call them without credentials.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from loop.api import openapi
from loop.api.context import DEPS, METRICS, SETTINGS, error_response
from loop.api.fields import IngestError
from loop.api.ingest import check_read
from loop.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from loop.api.views import deploy_view, incident_view

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reader(handler: Handler) -> Handler:
    """`handler` behind the read token (or the API token), unless `[server] open_reads`."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        check_read(request.headers.get("Authorization"), request.app[SETTINGS])
        return await handler(request)

    return guarded


async def metrics(request: web.Request) -> web.Response:
    """Rearguard's own state for Prometheus, read from the store at scrape time."""
    deps = request.app[DEPS]
    body = await request.app[METRICS].render(deps.store, deps.query_health)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(open_reads=request.app[SETTINGS].open_reads))


async def list_deploys(request: web.Request) -> web.Response:
    store = request.app[DEPS].store
    return web.json_response(
        {"deploys": [await deploy_view(store, d) for d in await store.watches.deploys(limit=100)]}
    )


async def get_deploy(request: web.Request) -> web.Response:
    store = request.app[DEPS].store
    deploy = await store.watches.deploy(request.match_info["id"])
    if deploy is None:
        raise IngestError(404, "not_found", f"no deploy {request.match_info['id']!r}")
    return web.json_response(await deploy_view(store, deploy))


async def list_incidents(request: web.Request) -> web.Response:
    store = request.app[DEPS].store
    return web.json_response(
        {
            "incidents": [
                await incident_view(store, i) for i in await store.incidents.recent(limit=100)
            ]
        }
    )


async def get_incident(request: web.Request) -> web.Response:
    store = request.app[DEPS].store
    incident = await store.incidents.incident(request.match_info["id"])
    if incident is None:
        raise IngestError(404, "not_found", f"no incident {request.match_info['id']!r}")
    return web.json_response(await incident_view(store, incident))


async def healthz(request: web.Request) -> web.Response:
    """Alive, unless DuckDB invalidated the store: then only a restart helps."""
    deps = request.app.get(DEPS)
    if deps is not None and deps.store.writer.invalidated:
        reason = deps.store.writer.lasting or "the store was invalidated"
        return error_response(503, "store_invalidated", f"restart Rearguard: {reason}")
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store can write now: a committed write, not a read. SLIs whose queries
    fail make the answer `degraded`, still 200: webhooks and deploys are still taken in, and a
    load balancer must not drop every replica over one PromQL typo."""
    deps = request.app.get(DEPS)
    if deps is None:
        return error_response(503, "starting", "the store is not open yet")
    reason = await deps.store.health.ready()
    if reason is not None:
        return error_response(503, "store_unwritable", f"the store cannot write: {reason}")
    failing = deps.query_health.current()
    if failing:
        return web.json_response({
            "status": "degraded",
            "failures": [{"service": f.service, "sli": f.sli, "cause": f.cause,
                          "reason": f.reason} for f in failing],
        })  # fmt: skip
    return web.json_response({"status": "ready"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/deploys", reader(list_deploys)),
        web.get("/v1/deploys/{id}", reader(get_deploy)),
        web.get("/v1/incidents", reader(list_incidents)),
        web.get("/v1/incidents/{id}", reader(get_incident)),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
        web.get("/openapi.json", openapi_json),
    ]
