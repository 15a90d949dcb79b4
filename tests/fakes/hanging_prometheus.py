"""A Prometheus in front of a real one whose queries for some selectors hang until they time out.

`HangingPrometheus` serves Prometheus' HTTP API on loopback and passes every request through to a
real Prometheus server, answer for answer, except range and instant queries whose PromQL holds
one of the `hung` strings (a selector such as `service="hung-3"`). Those it holds as a real
Prometheus holds a query it cannot finish: until the query's `timeout` parameter (Prometheus'
default is two minutes) has passed, then it answers Prometheus' own 503
`{"status": "error", "errorType": "timeout", "error": "query timed out in expression
evaluation"}`; a client that gives up first simply closes the connection.

One URL serves both kinds of query, as one Prometheus (or Thanos, Mimir) serves every service
of a Rearguard config: the hung services' expensive or unreachable series do not make the
healthy ones' queries any slower on the server side, so whatever delay the healthy service sees
is Rearguard's own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import aiohttp
from aiohttp import web

DEFAULT_TIMEOUT = 120.0
"""Prometheus' `--query.timeout` default, used when a query names no `timeout`."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "content-encoding"}


def _timeout(value: str | None) -> float:
    """A Prometheus duration (`3s`, `500ms`) or float seconds (`3.0`); the default when absent."""
    if not value:
        return DEFAULT_TIMEOUT
    match = _DURATION.match(value)
    if match is None:
        return DEFAULT_TIMEOUT
    return float(match[1]) * _UNITS[match[2]]


class HangingPrometheus:
    """Prometheus' API at `url`, passed through to `upstream`; queries naming a `hung` string
    are held until their timeout. `hanging` counts the queries held right now, `peak` the most
    held at once per hung string."""

    def __init__(self, upstream: str, hung: Sequence[str]) -> None:
        self._upstream = upstream.rstrip("/")
        self._hung = tuple(hung)
        self.hanging = 0
        self.peak: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self.passed = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Serve on a free loopback port; returns (and sets) `url`."""
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A held query ends when its client hangs up (as it counts for `hanging` and `peak`).
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else {}
        query = str(request.query.get("query") or form.get("query") or "")
        hung = [h for h in self._hung if h in query]
        if request.path in ("/api/v1/query_range", "/api/v1/query") and hung:
            return await self._hang(hung[0], request.query.get("timeout") or form.get("timeout"))
        return await self._pass(request)

    async def _hang(self, hung: str, limit: object) -> web.Response:
        self.hanging += 1
        self._held[hung] = self._held.get(hung, 0) + 1
        self.peak[hung] = max(self.peak.get(hung, 0), self._held[hung])
        try:
            await asyncio.sleep(_timeout(str(limit) if limit else None))
        finally:
            self.hanging -= 1
            self._held[hung] -= 1
        return web.json_response(
            {
                "status": "error",
                "errorType": "timeout",
                "error": "query timed out in expression evaluation",
            },
            status=503,
        )

    async def _pass(self, request: web.Request) -> web.Response:
        assert self._session is not None
        self.passed += 1
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host"}}
        async with self._session.request(
            request.method, f"{self._upstream}{request.path_qs}", data=body or None,
            headers=headers, allow_redirects=False,
        ) as upstream:  # fmt: skip
            payload = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=upstream.status, body=payload, headers=kept)
