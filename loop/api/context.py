"""What every handler of the HTTP surface shares: the app's typed keys, the JSON error answer,
and the scheduler's wake-up.

The composition root (`loop.api.app`) fills the keys; each sender's module reads them. Errors
answer as `{"error": {"code", "message"}}` with a fitting status.
"""

from __future__ import annotations

from aiohttp import web

from loop.api.metrics import OwnMetrics
from loop.api.slack_work import ClickWork
from loop.clock import Clock
from loop.config import Settings
from loop.watch.deps import WatchDeps
from loop.watch.scheduler import Scheduler

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", WatchDeps)
CLOCK = web.AppKey("clock", Clock)
METRICS = web.AppKey("metrics", OwnMetrics)
SCHEDULER = web.AppKey("scheduler", Scheduler)
CLICKS = web.AppKey("clicks", ClickWork)


def error_response(status: int, code: str, message: str) -> web.Response:
    """The JSON error shape every route answers with."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def wake(app: web.Application) -> None:
    """Something a Watch waits for arrived: let the scheduler look now, not at its next tick."""
    scheduler = app.get(SCHEDULER)
    if scheduler is not None:
        scheduler.wake()
