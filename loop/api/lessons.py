"""`POST /v1/lessons` (bearer API token): propose a repository's lessons now, through the running
server (`rearguard lessons --url`), whatever the day's automatic run did.

DuckDB lets no other process open the store while `rearguard serve` holds it, so the CLI asks
the server, which runs the same proposal as its learning sweep (`loop.watch.learn.propose_for`,
one per repository at a time). The answer waits for GitHub: the PR opened, the open one updated,
or why nothing was proposed.
"""

from __future__ import annotations

from aiohttp import web

from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError, read_json, read_repo
from loop.api.ingest import check_bearer
from loop.watch.learn import propose_for
from rollback.forge import LearningForge


async def post_lessons(request: web.Request) -> web.Response:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)
    repo = read_repo(read_json(await request.read()), "repo")
    if settings.service_for_repo(repo) is None:
        known = ", ".join(sorted({s.repo for s in settings.services.values()}))
        message = f"no service of repository {repo!r} in the config (known: {known})"
        raise IngestError(404, "unknown_repository", message)
    if not settings.lessons.enabled:
        raise IngestError(503, "not_configured", "[lessons] enabled = false in the config")
    if not isinstance(deps.forge, LearningForge):
        raise IngestError(503, "not_configured", "the forge cannot open PRs (no GITHUB_TOKEN)")
    done = await propose_for(deps, deps.forge, repo)
    return web.json_response({"repo": repo, **done.to_json()})


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/lessons", post_lessons)]
