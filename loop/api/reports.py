"""`GET /v1/reports/{kind}`: what the labels taught, per agent, model, spec or code area.

Each report is computed from the store's history (`attribution.feedback.report`), corrections
included, for every configured repository or the one named by `?repo=`, behind the read token
(`loop.api.reads.reader`). A new report is a new entry in `REPORTS` and its function in
`attribution`.
"""

from __future__ import annotations

from aiohttp import web

from attribution.feedback import report
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError
from loop.api.reads import reader

REPORTS = {"agents": "agent", "models": "model", "specs": "spec", "areas": "area"}


async def get_report(request: web.Request) -> web.Response:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    kind = request.match_info["kind"]
    if kind not in REPORTS:
        raise IngestError(404, "not_found", f"no report {kind!r}; try {', '.join(REPORTS)}")
    repos = sorted({s.repo for s in settings.services.values()})
    wanted = request.query.get("repo")
    if wanted is not None and wanted not in repos:
        raise IngestError(404, "not_found", f"repository {wanted!r} is not in the config")
    rows: list[dict[str, object]] = []
    for repo in [wanted] if wanted else repos:
        deployed, blames, signals = await deps.store.evidence.learning(repo)
        rows += [{"repo": repo, **r} for r in report(REPORTS[kind], deployed, blames, signals)]
    return web.json_response({"report": kind, "rows": rows})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/reports/{kind}", reader(get_report))]
