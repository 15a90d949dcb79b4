"""`POST /v1/incidents/{id}/feedback` (bearer token): a person's verdict on an incident.

`confirmed`, `false_alarm` or `wrong_pr` (with the right PR as `culprit`), stored with
`Store.incidents.record_feedback` under the caller's `Idempotency-Key`; the priors and reports
learn from it, and a `confirmed` incident's spec comment and lessons PR follow from the learning
sweep (`loop.watch.learn`), not from here. `record_verdict` is the one way a verdict is kept: the
Slack buttons (`loop.api.slack`) go through it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from attribution.feedback import PEOPLE_KINDS
from attribution.records import Incident
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError, bad_field, read_field, read_json, read_number
from loop.api.ingest import check_bearer
from loop.watch.deps import WatchDeps


async def post_feedback(request: web.Request) -> web.Response:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    token = settings.api_token.reveal() if settings.api_token else None
    check_bearer(request.headers.get("Authorization"), token)
    verdict = _verdict(read_json(await request.read()))
    incident = await deps.store.incidents.incident(request.match_info["id"])
    if incident is None:
        raise IngestError(404, "not_found", f"no incident {request.match_info['id']!r}")
    key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
    created = await record_verdict(
        deps, incident, verdict["kind"], actor=verdict["actor"], pr=verdict["pr"],
        culprit=verdict["culprit"], note=verdict["note"], key=f"api:{key}", source="api",
    )  # fmt: skip
    return web.json_response(
        {"incident": incident.id, "kind": verdict["kind"], "recorded": created},
        status=201 if created else 200,
    )


async def record_verdict(
    deps: WatchDeps, incident: Incident, kind: str, *, actor: str, pr: int | None,
    culprit: int | None, note: str | None, key: str, source: str,
) -> bool:  # fmt: skip
    """Keep a person's verdict under `key`, and with `culprit` ("wrong PR, it was #N") a
    `confirmed` row for that PR under `key:culprit`; 422 when a PR named is not one of the
    incident's deploy. False when every row was already kept (a repeated request)."""
    suspects = {s.number for s in incident.suspects}
    for number in (pr, culprit):
        if number is not None and number not in suspects:
            raise IngestError(422, "unknown_pr", f"#{number} is not a PR of this incident's deploy")
    rows = [(key, kind, pr)]
    if culprit is not None:
        rows.append((f"{key}:culprit", "confirmed", culprit))
    created, now = False, deps.clock.now()
    for row_key, row_kind, number in rows:
        created |= await deps.store.incidents.record_feedback(
            row_key, incident.id, row_kind, actor=actor, source=source, now=now,
            pr_number=number, note=note,
        )  # fmt: skip
    return created


def _verdict(data: Any) -> dict[str, Any]:
    """The feedback body: `kind`, `actor`, optional `pr`, `culprit` (for wrong_pr) and `note`;
    400 naming the field when one cannot be what it says."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    kind = data.get("kind")
    if kind not in PEOPLE_KINDS:
        raise bad_field("kind", f"must be one of {', '.join(PEOPLE_KINDS)}")
    actor = data.get("actor")
    if not isinstance(actor, str) or not actor.strip():
        raise IngestError(400, "missing_field", "field `actor` (who says so) is required")
    numbers = {name: read_number(data, name, required=False) for name in ("pr", "culprit")}
    if numbers["culprit"] is not None and kind != "wrong_pr":
        raise bad_field("culprit", "goes with kind `wrong_pr` only")
    note = read_field(data, "note", str, required=False)
    return {
        "kind": kind,
        "actor": actor.strip(),
        "pr": numbers["pr"],
        "culprit": numbers["culprit"],
        "note": note,
    }


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/incidents/{id}/feedback", post_feedback)]
