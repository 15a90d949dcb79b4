"""Every error answer of the HTTP surface: the JSON shape, and the count of refused requests.

Handlers refuse with an `IngestError` (a status and a code from `ingest.Code`); routing and body
limits with aiohttp's `HTTPException`s; anything else is an internal error, logged and answered
without detail. Each answer is `{"error": {"code", "message"}}` and is counted in `/metrics` by
route template and code (`OwnMetrics.refused`): both labels come from fixed sets (the router's
templates, or `unmatched`; the codes of `ingest.Code` and of HTTP status phrases), never from
the request. A refused request writes nothing to the store.

Requests that aiohttp's HTTP parser refuses before any handler runs (a header line over 8190
bytes, more than 128 headers, a malformed request line) would get aiohttp's own text/plain
answer, which no middleware can change (aiohttp#3287): `JsonErrorRunner`, which `rearguard
serve` runs the app with, answers those in the same JSON shape and counts them too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from loop.api.context import METRICS, error_response
from loop.api.fields import IngestError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED = "unmatched"
"""The route label of a request that matched no route (its path is the sender's text)."""


def status_code(status: int) -> str:
    """The error code of an HTTP status: its phrase as a snake_case word (a fixed set)."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def route_of(request: web.Request) -> str:
    """The template of the route `request` was for (`/v1/incidents/{id}`), even when its method
    was not allowed there; `unmatched` when no route has its path."""
    resource = request.match_info.route.resource
    if resource is not None:
        return resource.canonical
    if request.match_info.http_exception is not None:
        for candidate in request.app.router.resources():
            _, allowed = await candidate.resolve(request)
            if allowed:
                return candidate.canonical
    return UNMATCHED


async def _answer(request: web.Request, status: int, code: str, message: str) -> web.Response:
    request.app[METRICS].refused(await route_of(request), code)
    return error_response(status, code, message)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers as JSON and is counted; internal errors are logged, not shown."""
    try:
        return await handler(request)
    except IngestError as exc:
        response = await _answer(request, exc.status, exc.code, exc.message)
        if exc.code == "unauthorized":  # every token Rearguard takes is a bearer token
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects pass through
            raise
        response = await _answer(request, exc.status, status_code(exc.status), exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the route takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # The route's template, not the path: the path is the sender's text.
        log.exception("unhandled error on %s %s", request.method, await route_of(request))
        return await _answer(request, 500, "internal", "internal error; see the server log")
