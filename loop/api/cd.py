"""`POST /v1/deploys`: the generic CD hook (bearer token).

A CD step (a script, Argo CD's notification, a GitHub Actions step) says what it deployed; the
deploy and its Watch are recorded at once and the answer carries the deploy's id. The id is
derived from the deploy itself, so a hook that posts the same deploy twice makes one deploy
(`created` says which); `Idempotency-Key` names the delivery in the journal when the sender has one.
A body may name the deployed commit by an image or a revision instead of `sha` (GitOps: Argo CD's
notification); it is mapped to the application's commit first (`loop.api.revisions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from attribution.records import Deploy
from attribution.store_journal import Applied, Journaled
from loop.api.context import DEPS, SETTINGS, wake
from loop.api.fields import read_json
from loop.api.ingest import check_bearer, parse_deploy_request
from loop.api.revisions import with_sha
from loop.api.webhook import Parsed, Sender, receive
from loop.watch.phases import Phase

RESOLVED = web.RequestKey("resolved_body", object)
"""The request's body with `sha` mapped from the revision it names (`resolve_body`)."""


def _verify(request: web.Request, body: bytes) -> None:
    settings = request.app[SETTINGS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)


def _parse(request: web.Request, body: bytes) -> Parsed[Deploy]:
    data = request[RESOLVED] if RESOLVED in request else read_json(body)
    deploy = parse_deploy_request(data, request.app[SETTINGS], request.app[DEPS].clock.now())
    delivery = request.headers.get("Idempotency-Key") or deploy.id
    return Parsed("deploy", delivery, data, deploy)


def _rows(request: web.Request, deploy: Deploy) -> Applied:
    return Applied(deploys=(deploy,), phase=Phase.DEPLOYED)


def _applied(request: web.Request, deploy: Deploy, done: Journaled) -> dict[str, Any]:
    wake(request.app)
    return {"id": deploy.id, "created": done.created[0]}


CD: Sender[Deploy] = Sender(
    "cd", _verify, _parse, rows=_rows, applied=_applied, dedupe=False,
    answer=lambda parsed, applied: applied,
)  # fmt: skip


async def resolve_body(request: web.Request) -> None:
    """Check the token, then map the revision the body names (`image`, `images`, `revision`)
    to the service's commit (`loop.api.revisions`) for `_parse` to read: a revision that names
    none is refused here, before anything is journaled."""
    body = await request.read()
    _verify(request, body)
    data = read_json(body)
    named = data.get("service") if isinstance(data, Mapping) else None
    service = request.app[SETTINGS].service(named) if isinstance(named, str) else None
    request[RESOLVED] = await with_sha(data, service, request.app[DEPS].forge)


async def post_deploy(request: web.Request) -> web.Response:
    """Record a deploy and start its Watch; 202 with its id."""
    await resolve_body(request)
    return await receive(request, CD)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/deploys", post_deploy)]
