"""The composition root: config to implementations, the aiohttp app, and its background loop.

The store, the clients and the scheduler live in one `cleanup_ctx`, so they start with the app and
are closed in reverse order when it stops. Handlers answer errors as
`{"error": {"code", "message"}}` with a fitting status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from attribution.store import Store
from loop.api import evidence, openapi
from loop.api.evidence_ingest import parse_ci
from loop.api.ingest import (
    IngestError,
    check_bearer,
    check_github_signature,
    parse_deploy_request,
    parse_deployment_status,
    parse_json,
    parse_merged_pr,
)
from loop.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from loop.api.metrics import OwnMetrics
from loop.api.revert_events import apply_closed_revert, parse_closed_revert
from loop.api.slack import post_slack
from loop.api.views import deploy_view, incident_view
from loop.clock import Clock, WallClock
from loop.config import Settings
from loop.watch.deps import WatchDeps, build_fixer
from loop.watch.phases import Phase
from loop.watch.retry import INLINE_WAIT
from loop.watch.scheduler import Scheduler
from observer.detect import DEFAULT_SETTINGS, DetectorSettings
from observer.prometheus import PrometheusSource
from observer.sources import MetricsSource
from rollback.console import ConsoleNotifier
from rollback.forge import Forge
from rollback.github import GitHubForge
from rollback.notify import Notifier
from rollback.slack import SlackNotifier

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", WatchDeps)
CLOCK = web.AppKey("clock", Clock)
METRICS = web.AppKey("metrics", OwnMetrics)
SCHEDULER = web.AppKey("scheduler", Scheduler)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers as JSON; internal errors are logged, not shown."""
    try:
        return await handler(request)
    except IngestError as exc:
        return _error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects pass through
            raise
        return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the server log")


def _clients(settings: Settings) -> tuple[MetricsSource, Forge, Notifier]:
    source = PrometheusSource(settings.prometheus_url, timeout=settings.prometheus_timeout)
    if settings.github_token is None:
        raise SystemExit("GITHUB_TOKEN is not set: Rearguard needs it to read ranges and revert")
    forge = GitHubForge(
        settings.github_api_url, settings.github_token.reveal(), max_retry_after=INLINE_WAIT
    )
    notifier: Notifier
    if settings.slack_token is not None and settings.slack_channel:
        notifier = SlackNotifier(settings.slack_token.reveal(), settings.slack_channel,
                                 base_url=settings.slack_api_url)  # fmt: skip
    else:
        log.warning("SLACK_BOT_TOKEN or slack.channel not set: notices go to stderr")
        notifier = ConsoleNotifier(sys.stderr)
    return source, forge, notifier


async def _close(*things: object) -> None:
    for thing in things:
        for name in ("aclose", "close"):
            method = getattr(thing, name, None)
            if method is not None:
                result = method()
                if asyncio.iscoroutine(result):
                    await result
                break


def _runtime(
    clients: tuple[MetricsSource, Forge, Notifier] | None,
    scheduler: bool,
    detector: DetectorSettings,
) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        store = await Store.open(settings.store_path)
        source, forge, notifier = clients or _clients(settings)
        async with contextlib.AsyncExitStack() as stack:
            if clients is None:
                stack.push_async_callback(_close, source, forge, notifier)
                if isinstance(forge, GitHubForge):
                    # githubkit pools its connections in a ContextVar: enter before the
                    # scheduler task is created so that the task inherits the pool.
                    await stack.enter_async_context(forge)
            fixer = build_fixer(settings)
            stack.push_async_callback(_close, fixer)
            deps = WatchDeps(settings, store, source, forge, notifier, app[CLOCK],
                             detector=detector, fixer=fixer)  # fmt: skip
            app[DEPS] = deps
            task = None
            if scheduler:
                app[SCHEDULER] = Scheduler(deps, settings.tick_seconds)
                task = asyncio.create_task(app[SCHEDULER].run_forever())
            yield
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await store.close()

    return ctx


def build_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    clients: tuple[MetricsSource, Forge, Notifier] | None = None,
    scheduler: bool = True,
    detector: DetectorSettings = DEFAULT_SETTINGS,
) -> web.Application:
    """The HTTP app; `clients` replaces the configured ones (tests pass their own wiring), and
    `detector` the detector's settings (the loop benchmark scales the blip to its 1 s step)."""
    app = web.Application(middlewares=[errors], client_max_size=5 * 1024 * 1024)
    app[SETTINGS] = settings
    app[CLOCK] = clock or WallClock()
    app.cleanup_ctx.append(_runtime(clients, scheduler, detector))
    app.add_routes([
        web.post("/v1/deploys", post_deploy),
        web.post("/v1/webhooks/github", post_github),
        web.post("/v1/webhooks/slack", post_slack_webhook),
        web.get("/v1/deploys", list_deploys),
        web.get("/v1/deploys/{id}", get_deploy),
        web.get("/v1/incidents", list_incidents),
        web.get("/v1/incidents/{id}", get_incident),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
        web.get("/openapi.json", openapi_json),
    ])  # fmt: skip
    app.add_routes(evidence.routes(SETTINGS, DEPS))
    app[METRICS] = OwnMetrics()
    app.on_cleanup.append(_shutdown_metrics)
    return app


async def _shutdown_metrics(app: web.Application) -> None:
    app[METRICS].shutdown()


async def metrics(request: web.Request) -> web.Response:
    """Rearguard's own state for Prometheus, read from the store at scrape time."""
    body = await request.app[METRICS].render(request.app[DEPS].store)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


async def post_deploy(request: web.Request) -> web.Response:
    """Generic CD hook: journal, then record the deploy and start its Watch; 202 with its id."""
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)
    body = await request.read()
    now = deps.clock.now()
    deploy = parse_deploy_request(parse_json(body), settings, now)
    delivery = request.headers.get("Idempotency-Key") or deploy.id
    await deps.store.journal.record("cd", "deploy", delivery, status="accepted", received_at=now,
                                    body=parse_json(body))  # fmt: skip
    created = await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, now)
    _wake(request.app)
    return web.json_response({"id": deploy.id, "created": created}, status=202)


def _wake(app: web.Application) -> None:
    """A new Watch starts at once rather than at the scheduler's next look."""
    scheduler = app.get(SCHEDULER)
    if scheduler is not None:
        scheduler.wake()


async def post_github(request: web.Request) -> web.Response:
    """GitHub webhooks: signature, journal (deduped on X-GitHub-Delivery), then apply."""
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    body = await request.read()
    now = deps.clock.now()
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    secret = settings.github_webhook_secret.reveal() if settings.github_webhook_secret else None
    try:
        check_github_signature(
            body, event, delivery, request.headers.get("X-Hub-Signature-256"), secret
        )
        data = parse_json(body)
        deploy = parse_deployment_status(data, settings) if event == "deployment_status" else None
        pr = parse_merged_pr(data) if event == "pull_request" else None
        ci = parse_ci(event, data)
        closed = parse_closed_revert(data) if event == "pull_request" else None
    except IngestError as exc:
        # A refused request gets a key of its own: it must not claim the delivery id, or the
        # genuine (re)delivery of that id would later be taken for a duplicate and dropped.
        await deps.store.journal.record("github", event or "unknown",
                                        f"rejected:{delivery or '-'}:{uuid.uuid4().hex}",
                                        status="rejected", received_at=now,
                                        error=exc.message)  # fmt: skip
        raise
    status = "accepted" if (deploy or pr or ci or closed) else "ignored"
    fresh = await deps.store.journal.record("github", event, delivery, status=status,
                                            received_at=now, body=data)  # fmt: skip
    # A delivery journaled but never applied (the process died in between) is applied now.
    if not fresh and await deps.store.journal.status("github", delivery) != "accepted":
        return web.json_response({"status": "duplicate", "delivery": delivery})
    if pr is not None:
        await deps.store.prs.record_pr(pr, now)
        await evidence.record_pr_facts(deps.store, pr, data)
    if ci is not None:
        await evidence.record_ci(deps.store, ci)
    if deploy is not None:
        await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, now)
        _wake(request.app)
    if closed is not None:
        await apply_closed_revert(deps.store, closed, now)
        _wake(request.app)
    if deploy or pr or ci or closed:
        await deps.store.journal.mark("github", delivery, "applied")
    return web.json_response({"status": status, "delivery": delivery}, status=202)


async def post_slack_webhook(request: web.Request) -> web.Response:
    """Slack's interactivity requests (the incident buttons); see `loop.api.slack`."""
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else None
    return await post_slack(request, deps, secret)


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
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app.get(DEPS)
    if deps is None:
        return _error(503, "starting", "the store is not open yet")
    await deps.store.fetch("SELECT 1")
    return web.json_response({"status": "ready"})
