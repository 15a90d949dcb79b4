"""`GET /v1/reports/{kind}`: delivery metrics (`dora`, `loop`) and what the labels taught per
agent, model, spec or code area (`agents`, `models`, `specs`, `areas`).

Each report is computed from the store's history (`attribution.reports.build_report`), behind the
read token (`loop.api.reads.reader`), over `?since=` (an ISO 8601 time, Unix seconds, or a
duration back from now such as `90d`), `?service=` and `?repo=` (both must be in the config).
An unknown kind is a 404 listing the kinds; a bad `since` a 400.
"""

from __future__ import annotations

from aiohttp import web

from attribution.reports import KINDS, build_report
from attribution.store_reports import Window
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError, bad_field, parse_time
from loop.api.reads import reader
from loop.config import ConfigError, parse_duration


def parse_since(value: str | None, now: float) -> float | None:
    """`since` as Unix seconds: an ISO 8601 time with a zone, Unix seconds, or a duration back
    from `now` (`30d`, `12h`); None when absent; `IngestError` 400 otherwise."""
    if value is None:
        return None
    text = value.strip()
    if text and text[-1] in "smhd" and text[:-1].replace(".", "", 1).isdigit():
        try:
            return now - parse_duration(text, "since")
        except ConfigError as exc:
            raise bad_field("since", "must be a positive duration such as `90d`") from exc
    try:
        number: float | str = float(text)
    except ValueError:
        number = text
    try:
        return parse_time(number, "since")
    except IngestError as exc:
        raise bad_field(
            "since", "must be an ISO 8601 time with a zone, Unix seconds, or a duration like `90d`"
        ) from exc


async def get_report(request: web.Request) -> web.Response:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise IngestError(404, "not_found", f"no report {kind!r}; the kinds are {', '.join(KINDS)}")
    now = deps.clock.now()
    since = parse_since(request.query.get("since"), now)
    repos = sorted({s.repo for s in settings.services.values()})
    service = request.query.get("service")
    if service is not None:
        known = settings.service(service)
        if known is None:
            raise IngestError(404, "not_found", f"service {service!r} is not in the config")
        repos = [known.repo]
    wanted = request.query.get("repo")
    if wanted is not None and wanted not in repos:
        raise IngestError(404, "not_found", f"repository {wanted!r} is not in the config")
    window = Window(until=now, since=since, service=service, repo=wanted)
    return web.json_response(await build_report(deps.store, kind, window, repos))


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/reports/{kind}", reader(get_report))]
