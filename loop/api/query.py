"""`POST /v1/query` and `GET /v1/export/{view}.parquet`: the public views, read while the writer
runs (bearer read token, as every read route).

Queries run in the sandbox of `attribution.sandbox` (a locked snapshot of the views, rebuilt when
older than `attribution.sandbox.MAX_AGE` seconds; its module docstring says why and what it
costs); a refusal answers in the error shape with the sandbox's status and code, and changes
nothing. An export is Rearguard's own `COPY` of one view, on a connection of its own off the
writer's thread, into a temporary file that is streamed and then deleted.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from attribution.public_views import UnknownView, check_view, export_view
from attribution.sandbox import QueryRefused, SandboxedQueries
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError, bad_field, read_field, read_json
from loop.api.reads import reader

QUERIES = web.AppKey("queries", SandboxedQueries)
CHUNK = 256 * 1024


async def runtime(app: web.Application) -> AsyncIterator[None]:
    """The query runner over the store `loop.api.app`'s runtime opened (so it comes after it)."""
    writer = app[DEPS].store.writer
    app[QUERIES] = SandboxedQueries(writer.read, timeout=app[SETTINGS].query_timeout)
    yield


def _params(data: Any) -> list[Any]:
    params = read_field(data, "params", list, required=False) or []
    for i, value in enumerate(params):
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise bad_field(f"params[{i}]", "must be a string, number, boolean or null")
    return list(params)


async def post_query(request: web.Request) -> web.Response:
    """Run one read-only SELECT over the public views; its columns and rows."""
    data = read_json(await request.read())
    sql = read_field(data, "sql", str)
    try:
        result = await request.app[QUERIES].query(sql, _params(data))
    except QueryRefused as exc:
        raise IngestError(exc.status, exc.code, exc.message) from exc
    return web.json_response(result.to_json())


async def get_export(request: web.Request) -> web.StreamResponse:
    """One public view as a Parquet file."""
    try:
        view = check_view(request.match_info["view"])
    except UnknownView as exc:
        raise IngestError(404, "unknown_view", str(exc)) from exc
    writer = request.app[DEPS].store.writer
    work = Path(tempfile.mkdtemp(prefix="rearguard-export-"))
    try:
        path = await writer.read(lambda cur: export_view(cur, view, work))
        response = web.StreamResponse(headers={
            "Content-Type": "application/vnd.apache.parquet",
            "Content-Disposition": f'attachment; filename="{view}.parquet"',
            "Content-Length": str(path.stat().st_size),
        })  # fmt: skip
        await response.prepare(request)
        with path.open("rb") as file:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        shutil.rmtree(work, ignore_errors=True)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/query", reader(post_query)),
        web.get("/v1/export/{view}.parquet", reader(get_export)),
    ]
