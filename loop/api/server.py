"""Serving the app: what `rearguard serve` runs, so that every answer is in the JSON error shape.

aiohttp's HTTP parser refuses some requests before any handler or middleware sees them (a
request line or header over 8190 bytes, more than 128 headers, bytes that are not HTTP) and
answers those itself, in text/plain (aiohttp#3287 asks for a hook; there is none). Its
`RequestHandler.handle_error` is where that answer is made, so `JsonErrorRunner` serves the app
with a handler whose `handle_error` answers `{"error": {"code", "message"}}` instead, with a
message of Rearguard's own (the parser's quotes the offending bytes), counts it in `/metrics`
under the route `unmatched`, and logs one line rather than a traceback per bad request.
`serve` runs it until SIGINT or SIGTERM, as `web.run_app` would.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from loop.api.context import METRICS, error_response
from loop.api.errors import UNMATCHED, status_code
from loop.api.metrics import OwnMetrics

log = logging.getLogger(__name__)


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering what it cannot hand to the app as JSON."""

    __slots__ = ("_metrics",)

    def __init__(self, manager: web.Server, *, metrics: OwnMetrics, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._metrics = metrics

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp's own: too late to answer anything
            raise ConnectionError("the response is already being sent")
        if isinstance(exc, LineTooLong):
            status, text = 431, "a request line or header is longer than 8190 bytes"
        elif status < 500:  # noqa: PLR2004
            text = "the request is not valid HTTP/1.1 (or has more than 128 headers)"
        else:
            text = "internal error; see the server log"
            log.error("unhandled error outside the app", exc_info=exc)
        code = status_code(status)
        log.info("refused a request aiohttp could not parse: %s", code)
        self._metrics.refused(UNMATCHED, code)
        response = error_response(status, code, text)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    """The low-level server of an app, making `_JsonErrorHandler`s for its connections."""

    def __init__(self, inner: web.Server, metrics: OwnMetrics) -> None:
        # `_loop` and `_kwargs` are what aiohttp's own `Server.__call__` builds a handler from.
        super().__init__(
            inner.request_handler,
            request_factory=inner.request_factory,
            handler_cancellation=inner.handler_cancellation,
            loop=inner._loop,
            **inner._kwargs,
        )
        self._metrics = metrics

    def __call__(self) -> RequestHandler:
        kwargs = self._kwargs
        return _JsonErrorHandler(self, loop=self._loop, metrics=self._metrics, **kwargs)


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose server answers unparseable requests in the JSON error shape."""

    async def _make_server(self) -> web.Server:
        return _JsonErrorServer(await super()._make_server(), self.app[METRICS])


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = JsonErrorRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"======== Running on http://{host}:{port} ========", file=sys.stderr)  # noqa: T201
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(app: web.Application, host: str, port: int) -> None:
    """Serve `app` on `host:port` until SIGINT or SIGTERM, then stop it cleanly."""
    asyncio.run(_serve(app, host, port))
