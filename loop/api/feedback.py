"""`POST /v1/incidents/{id}/feedback` (bearer token): a person's verdict on an incident.

`confirmed`, `false_alarm` or `wrong_pr` (with the right PR as `culprit`), stored with
`Store.incidents.record_feedback` under the caller's `Idempotency-Key`; the priors and reports
learn from it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from attribution.feedback import PEOPLE_KINDS
from attribution.records import Incident
from loop.api.context import DEPS, SETTINGS
from loop.api.ingest import IngestError, check_bearer, parse_json


async def post_feedback(request: web.Request) -> web.Response:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)
    incident = await deps.store.incidents.incident(request.match_info["id"])
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
        created |= await deps.store.incidents.record_feedback(
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


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/incidents/{id}/feedback", post_feedback)]
