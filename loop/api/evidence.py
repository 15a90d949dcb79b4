"""`POST /v1/webhooks/sentry` and `/v1/webhooks/alertmanager`: evidence for attribution.

Sentry's issue and event alerts (Sentry-Hook-Signature) give the stack frames of new errors;
Alertmanager's notifications (bearer token) the alerts that started firing. Both go through the
shared verify, parse, journal, apply shape (`loop.api.webhook`). The GitHub webhook keeps a merged
PR's opening time and its CI runs through `record_pr_facts` and `record_ci` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from attribution.evidence import ErrorEvent, FiringAlert
from attribution.records import MergedPR
from attribution.store import Store
from loop.api.context import DEPS, SETTINGS
from loop.api.evidence_ingest import (
    CiRun,
    body_digest,
    check_sentry_signature,
    parse_alertmanager,
    parse_sentry,
)
from loop.api.fields import Ignored, IngestError, parse_time, read_json
from loop.api.ingest import check_bearer
from loop.api.webhook import Parsed, Sender, receive
from loop.config import ENV_ALERTMANAGER_TOKEN, ServiceSettings


def pr_opened(pr: MergedPR, data: Any) -> tuple[str, int, float] | None:
    """When a merged PR was opened (its lead time), from the `pull_request` webhook, as
    (repo, number, time); None when the payload gives no time it can be read from."""
    opened = data.get("pull_request", {}).get("created_at") if isinstance(data, Mapping) else None
    if isinstance(opened, str):
        with contextlib.suppress(IngestError):  # a bad time loses the lead time, not the PR
            return pr.repo, pr.number, parse_time(opened, "created_at")
    return None


async def record_pr_facts(store: Store, pr: MergedPR, data: Any) -> None:
    """Keep when a merged PR was opened (its lead time), from the `pull_request` webhook."""
    opened = pr_opened(pr, data)
    if opened is not None:
        await store.evidence.record_opened_at(*opened)


async def record_ci(store: Store, run: CiRun) -> None:
    """Keep a CI run per PR it names; a run naming none (a fork) is matched by its head sha."""
    numbers = list(run.numbers)
    if not numbers:
        numbers = await store.prs.numbers_with_head(run.repo, run.head_sha)
    await store.evidence.record_ci_run(
        run.id,
        run.repo,
        numbers,
        run.kind,
        run.head_sha,
        run.attempt,
        run.conclusion,
        run.finished_at,
    )


def _verify_sentry(request: web.Request, body: bytes) -> None:
    settings = request.app[SETTINGS]
    secret = settings.sentry_secret.reveal() if settings.sentry_secret else None
    check_sentry_signature(body, request.headers.get("Sentry-Hook-Signature"), secret)


def _parse_sentry(request: web.Request, body: bytes) -> Parsed[tuple[str, ErrorEvent]]:
    resource = request.headers.get("Sentry-Hook-Resource", "")
    delivery = request.headers.get("Request-ID") or body_digest(body)
    data = read_json(body)
    found = parse_sentry(resource, data, request.app[SETTINGS])
    if isinstance(found, Ignored):
        return Parsed(resource, delivery, data, None, found.reason)
    return Parsed(resource, delivery, data, (found.service.name, found.event))


async def _apply_sentry(request: web.Request, found: tuple[str, ErrorEvent]) -> dict[str, Any]:
    service, event = found
    await request.app[DEPS].store.evidence.record_errors(service, [event])
    return {}


SENTRY: Sender[tuple[str, ErrorEvent]] = Sender(
    "sentry", _verify_sentry, _parse_sentry, _apply_sentry
)


Alerts = list[tuple[ServiceSettings, FiringAlert]]


def _verify_alertmanager(request: web.Request, body: bytes) -> None:
    settings = request.app[SETTINGS]
    token = settings.alertmanager_token.reveal() if settings.alertmanager_token else None
    check_bearer(request.headers.get("Authorization"), token, ENV_ALERTMANAGER_TOKEN)


def _parse_alertmanager(request: web.Request, body: bytes) -> Parsed[Alerts]:
    data = read_json(body)
    found = parse_alertmanager(data, request.app[SETTINGS])
    why = None if found else "no firing alert names a configured service (`service`, `app`, `job`)"
    return Parsed("alerts", body_digest(body), data, found or None, why)


async def _apply_alertmanager(request: web.Request, found: Alerts) -> dict[str, Any]:
    evidence = request.app[DEPS].store.evidence
    for service, alert in found:
        await evidence.record_alerts(service.name, [alert])
    return {}


def _alerts_answer(parsed: Parsed[Alerts], applied: dict[str, Any]) -> dict[str, Any]:
    status = "accepted" if parsed.record else "ignored"
    answer = {"status": status, "delivery": parsed.delivery, "alerts": len(parsed.record or [])}
    return answer | ({"reason": parsed.reason} if parsed.reason else {})


ALERTMANAGER: Sender[Alerts] = Sender(
    "alertmanager", _verify_alertmanager, _parse_alertmanager, _apply_alertmanager,
    answer=_alerts_answer,
)  # fmt: skip


async def post_sentry(request: web.Request) -> web.Response:
    return await receive(request, SENTRY)


async def post_alertmanager(request: web.Request) -> web.Response:
    return await receive(request, ALERTMANAGER)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/webhooks/sentry", post_sentry),
        web.post("/v1/webhooks/alertmanager", post_alertmanager),
    ]
