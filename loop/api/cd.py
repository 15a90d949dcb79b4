"""`POST /v1/deploys`: the generic CD hook (bearer token).

A CD step (a script, Argo CD's notification, a GitHub Actions step) says what it deployed; the
deploy and its Watch are recorded at once and the answer carries the deploy's id. The id is
derived from the deploy itself, so a hook that posts the same deploy twice makes one deploy
(`created` says which); `Idempotency-Key` names the delivery in the journal when the sender has one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from attribution.records import Deploy
from attribution.store_journal import Applied, Journaled
from loop.api.context import DEPS, SETTINGS, wake
from loop.api.fields import read_json
from loop.api.ingest import check_bearer, parse_deploy_request
from loop.api.webhook import Parsed, Sender, receive
from loop.watch.phases import Phase


def _verify(request: web.Request, body: bytes) -> None:
    settings = request.app[SETTINGS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)


def _parse(request: web.Request, body: bytes) -> Parsed[Deploy]:
    data = read_json(body)
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


async def post_deploy(request: web.Request) -> web.Response:
    """Record a deploy and start its Watch; 202 with its id."""
    return await receive(request, CD)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/deploys", post_deploy)]
