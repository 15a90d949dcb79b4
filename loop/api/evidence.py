"""HTTP handlers for attribution: Sentry and Alertmanager webhooks, feedback, and reports.

Webhooks follow the GitHub webhook's order: verify, parse (a 4xx and nothing stored but a
`rejected` journal row without the body), journal before the 2xx (a redelivery is recognised and
not applied twice), apply, mark applied. Feedback (`POST /v1/incidents/{id}/feedback`, bearer
token) stores people's verdicts with `Store.record_feedback`; reports (`GET /v1/reports/{agents|
models|specs|areas}`) show what the labels taught, corrections included.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from attribution.evidence_store import EvidenceStore
from attribution.feedback import PEOPLE_KINDS, report
from attribution.records import Incident, MergedPR
from attribution.store import Store
from loop.api.evidence_ingest import (
    CiRun,
    body_digest,
    check_sentry_signature,
    parse_alertmanager,
    parse_sentry,
)
from loop.api.ingest import IngestError, check_bearer, parse_json, parse_time

REPORTS = {"agents": "agent", "models": "model", "specs": "spec", "areas": "area"}


async def record_pr_facts(store: Store, pr: MergedPR, data: Any) -> None:
    """Keep when a merged PR was opened (its lead time), from the `pull_request` webhook."""
    opened = data.get("pull_request", {}).get("created_at") if isinstance(data, Mapping) else None
    if isinstance(opened, str):
        with contextlib.suppress(IngestError):  # a bad time loses the lead time, not the PR
            await EvidenceStore(store).record_opened_at(
                pr.repo, pr.number, parse_time(opened, "created_at")
            )


async def record_ci(store: Store, run: CiRun) -> None:
    """Keep a CI run per PR it names; a run naming none (a fork) is matched by its head sha."""
    numbers = list(run.numbers)
    if not numbers:
        rows = await store.fetch(
            "SELECT number FROM pull_requests WHERE repo = ? AND head_sha = ?",
            [run.repo, run.head_sha],
        )
        numbers = [int(r[0]) for r in rows]
    await EvidenceStore(store).record_ci_run(
        run.id,
        run.repo,
        numbers,
        run.kind,
        run.head_sha,
        run.attempt,
        run.conclusion,
        run.finished_at,
    )


def routes(settings_key: Any, deps_key: Any) -> list[web.RouteDef]:
    """The routes, given the app keys under which `loop.api.app` keeps settings and deps."""
    handlers = _Handlers(settings_key, deps_key)
    return [
        web.post("/v1/webhooks/sentry", handlers.sentry),
        web.post("/v1/webhooks/alertmanager", handlers.alertmanager),
        web.post("/v1/incidents/{id}/feedback", handlers.feedback),
        web.get("/v1/reports/{kind}", handlers.report),
    ]


async def _reject(store: Store, source: str, event: str, now: float, exc: IngestError) -> None:
    """Journal a refused request under a key of its own (never the sender's delivery id)."""
    await store.journal(
        source,
        event,
        f"rejected:{uuid.uuid4().hex}",
        status="rejected",
        received_at=now,
        error=exc.message,
    )


async def _fresh(
    store: Store, source: str, event: str, delivery: str, *, now: float, body: Any, applies: bool
) -> bool:
    """Journal the delivery; False when it is a redelivery that was already applied."""
    status = "accepted" if applies else "ignored"
    if await store.journal(source, event, delivery, status=status, received_at=now, body=body):
        return True
    return await store.journal_status(source, delivery) == "accepted"


class _Handlers:
    def __init__(self, settings_key: Any, deps_key: Any) -> None:
        self._settings_key = settings_key
        self._deps_key = deps_key

    async def sentry(self, request: web.Request) -> web.Response:
        settings, deps = request.app[self._settings_key], request.app[self._deps_key]
        body, now = await request.read(), deps.clock.now()
        resource = request.headers.get("Sentry-Hook-Resource", "")
        delivery = request.headers.get("Request-ID") or body_digest(body)
        secret = settings.sentry_secret.reveal() if settings.sentry_secret else None
        try:
            check_sentry_signature(body, request.headers.get("Sentry-Hook-Signature"), secret)
            data = parse_json(body)
            found = parse_sentry(resource, data, settings)
        except IngestError as exc:
            await _reject(deps.store, "sentry", resource or "unknown", now, exc)
            raise
        fresh = await _fresh(
            deps.store, "sentry", resource, delivery, now=now, body=data, applies=found is not None
        )
        if not fresh:
            return web.json_response({"status": "duplicate", "delivery": delivery})
        if found is not None:
            await EvidenceStore(deps.store).record_errors(found.service.name, [found.event])
            await deps.store.mark_journal("sentry", delivery, "applied")
        status = "accepted" if found else "ignored"
        return web.json_response({"status": status, "delivery": delivery}, status=202)

    async def alertmanager(self, request: web.Request) -> web.Response:
        settings, deps = request.app[self._settings_key], request.app[self._deps_key]
        body, now = await request.read(), deps.clock.now()
        delivery = body_digest(body)
        token = settings.alertmanager_token.reveal() if settings.alertmanager_token else None
        try:
            check_bearer(request.headers.get("Authorization"), token)
            data = parse_json(body)
            found = parse_alertmanager(data, settings)
        except IngestError as exc:
            await _reject(deps.store, "alertmanager", "alerts", now, exc)
            raise
        fresh = await _fresh(
            deps.store, "alertmanager", "alerts", delivery, now=now, body=data, applies=bool(found)
        )
        if not fresh:
            return web.json_response({"status": "duplicate", "delivery": delivery})
        evidence = EvidenceStore(deps.store)
        for service, alert in found:
            await evidence.record_alerts(service.name, [alert])
        if found:
            await deps.store.mark_journal("alertmanager", delivery, "applied")
        status = "accepted" if found else "ignored"
        body_out = {"status": status, "delivery": delivery, "alerts": len(found)}
        return web.json_response(body_out, status=202)

    async def feedback(self, request: web.Request) -> web.Response:
        settings, deps = request.app[self._settings_key], request.app[self._deps_key]
        token = settings.api_token.reveal() if settings.api_token else None
        check_bearer(request.headers.get("Authorization"), token)
        incident = await deps.store.incident(request.match_info["id"])
        if incident is None:
            raise IngestError(404, "not_found", f"no incident {request.match_info['id']!r}")
        verdict = _verdict(parse_json(await request.read()), incident)
        key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        now = deps.clock.now()
        rows = [(f"api:{key}", verdict["kind"], verdict["pr"])]
        if verdict["culprit"] is not None:  # "wrong PR, it was #N": confirm the right one too
            rows.append((f"api:{key}:culprit", "confirmed", verdict["culprit"]))
        created = False
        for row_key, kind, pr in rows:
            created |= await deps.store.record_feedback(
                row_key,
                incident.id,
                kind,
                actor=verdict["actor"],
                source="api",
                now=now,
                pr_number=pr,
                note=verdict["note"],
            )
        return web.json_response(
            {"incident": incident.id, "kind": verdict["kind"], "recorded": created},
            status=201 if created else 200,
        )

    async def report(self, request: web.Request) -> web.Response:
        settings, deps = request.app[self._settings_key], request.app[self._deps_key]
        kind = request.match_info["kind"]
        if kind not in REPORTS:
            raise IngestError(404, "not_found", f"no report {kind!r}; try {', '.join(REPORTS)}")
        repos = sorted({s.repo for s in settings.services.values()})
        wanted = request.query.get("repo")
        if wanted is not None and wanted not in repos:
            raise IngestError(404, "not_found", f"repository {wanted!r} is not in the config")
        rows: list[dict[str, object]] = []
        for repo in [wanted] if wanted else repos:
            deployed, blames, signals = await EvidenceStore(deps.store).learning(repo)
            rows += [{"repo": repo, **r} for r in report(REPORTS[kind], deployed, blames, signals)]
        return web.json_response({"report": kind, "rows": rows})


def _verdict(data: Any, incident: Incident) -> dict[str, Any]:
    """The feedback body: `kind`, `actor`, optional `pr`, `culprit` (for wrong_pr) and `note`."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    kind = data.get("kind")
    if kind not in PEOPLE_KINDS:
        raise IngestError(
            422, "bad_field", f"field `kind` must be one of {', '.join(PEOPLE_KINDS)}"
        )
    actor = data.get("actor")
    if not isinstance(actor, str) or not actor.strip():
        raise IngestError(422, "missing_field", "field `actor` (who says so) is required")
    suspects = {s.number for s in incident.suspects}
    numbers = {}
    for name in ("pr", "culprit"):
        value = data.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise IngestError(422, "bad_field", f"field `{name}` must be a PR number")
        if value is not None and value not in suspects:
            raise IngestError(422, "bad_field", f"#{value} is not a PR of this incident's deploy")
        numbers[name] = value
    if numbers["culprit"] is not None and kind != "wrong_pr":
        raise IngestError(422, "bad_field", "field `culprit` goes with kind `wrong_pr` only")
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise IngestError(422, "bad_field", "field `note` must be a string")
    return {
        "kind": kind,
        "actor": actor.strip(),
        "pr": numbers["pr"],
        "culprit": numbers["culprit"],
        "note": note,
    }
