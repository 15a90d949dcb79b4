"""The composition root: config to implementations, the aiohttp app, and its background loop.

The store, the clients and the scheduler live in one `cleanup_ctx`, so they start with the app and
are closed in reverse order when it stops. Handlers answer errors as
`{"error": {"code", "message"}}` with a fitting status (`loop.api.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from attribution.store import Store
from loop.api import (
    cd,
    evidence,
    feedback,
    flagger,
    github,
    lessons,
    query,
    reads,
    reports,
    rollouts,
    slack,
)
from loop.api.context import CLICKS, CLOCK, DEPS, METRICS, SCHEDULER, SETTINGS
from loop.api.errors import errors
from loop.api.metrics import OwnMetrics
from loop.api.slack_work import ClickWork
from loop.clock import Clock, WallClock
from loop.config import Settings, github_auth_kind, github_credentials
from loop.prometheus import prometheus_source
from loop.watch.deps import WatchDeps, build_fixer
from loop.watch.retry import INLINE_WAIT
from loop.watch.scheduler import Scheduler
from observer.detect import DEFAULT_SETTINGS, DetectorSettings
from observer.sources import MetricsSource
from rollback.checks import NoChecks
from rollback.console import ConsoleNotifier
from rollback.forge import Forge
from rollback.github import GitHubForge
from rollback.github_checks import GitHubChecks
from rollback.notify import Notifier
from rollback.slack import SlackNotifier

log = logging.getLogger(__name__)


def _clients(settings: Settings) -> tuple[MetricsSource, Forge, Notifier]:
    source = prometheus_source(settings)
    credentials = github_credentials(settings)
    if credentials is None:
        raise SystemExit("GITHUB_TOKEN is not set (nor [github] app_id): Rearguard needs one "
                         "to read ranges and revert")  # fmt: skip
    log.info("GitHub auth: %s", github_auth_kind(settings))
    forge = GitHubForge(settings.github_api_url, credentials, max_retry_after=INLINE_WAIT)
    notifier: Notifier
    if settings.slack_token is not None and settings.slack_channel:
        channels = {name: s.slack_channel for name, s in settings.services.items()}
        notifier = SlackNotifier(settings.slack_token.reveal(), settings.slack_channel,
                                 channels=channels, base_url=settings.slack_api_url,
                                 max_retry_after=INLINE_WAIT)  # fmt: skip
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
        store.writer.on_queued = app[METRICS].store_queued  # the writer's queue, in /metrics
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
            checks = forge if isinstance(forge, GitHubChecks) else NoChecks()
            deps = WatchDeps(settings, store, source, forge, notifier, app[CLOCK],
                             detector=detector, fixer=fixer, checks=checks,
                             pace=app[METRICS])  # fmt: skip
            app[DEPS] = deps
            app[CLICKS] = ClickWork(deps)  # Slack clicks' slow halves, unfinished ones first
            stack.push_async_callback(app[CLICKS].aclose)
            await app[CLICKS].resume()
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
    app.cleanup_ctx.append(query.runtime)
    app.add_routes([
        *cd.routes(), *github.routes(), *evidence.routes(), *slack.routes(),
        *feedback.routes(), *lessons.routes(), *reports.routes(), *reads.routes(), *query.routes(),
        *flagger.routes(), *rollouts.routes(),
    ])  # fmt: skip
    app[METRICS] = OwnMetrics()
    app.on_cleanup.append(_shutdown_metrics)
    return app


async def _shutdown_metrics(app: web.Application) -> None:
    app[METRICS].shutdown()
