"""`POST /v1/webhooks/slack`: the Confirm / False alarm / Wrong PR buttons of an incident message.

Slack signs every interactivity request: `X-Slack-Signature` is `v0=` and the hex HMAC-SHA256,
keyed by the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw body}`. A missing or
wrong signature, or a timestamp more than five minutes from now (a replay), is answered 401 and
changes nothing: not the journal, not the feedback. A verified click is journaled, then recorded
with `Store.incidents.record_feedback` (one row per person, incident and verdict), which
attribution learns from. "False alarm" in propose mode also closes the incident's open revert
PR, as an action row with its own key so a repeated click closes it once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from attribution.records import ActionKind, ActionStatus
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError, read_json
from loop.api.webhook import Parsed, Sender, receive
from loop.watch.actions import completed
from loop.watch.deps import WatchDeps
from rollback.policy import Mode, effective
from rollback.slack import BUTTONS

MAX_SKEW = 300.0  # seconds: Slack's own advice for refusing replays
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class Click:
    """One verified button click."""

    action_id: str
    kind: str
    incident_id: str
    user: str
    action_ts: str


def check_slack_signature(
    body: bytes, timestamp: str | None, signature: str | None, secret: str | None, now: float
) -> None:
    """Refuse (IngestError 401) anything not signed with `secret` within five minutes of `now`."""
    if secret is None:
        raise IngestError(503, "not_configured", "SLACK_SIGNING_SECRET is not set on the server")
    if not timestamp or not signature or not signature.startswith("v0="):
        raise IngestError(401, "bad_signature", "missing X-Slack-Signature or timestamp")
    # Slack sends whole Unix seconds. `float()` would take `nan` (which no skew check refuses,
    # so a signed request would never go stale), `inf`, `1e9` and non-ASCII digits.
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise IngestError(
            401, "bad_signature", "X-Slack-Request-Timestamp is not whole Unix seconds"
        )
    if abs(now - int(timestamp)) > MAX_SKEW:
        raise IngestError(401, "stale_request", "X-Slack-Request-Timestamp is too old or too new")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise IngestError(401, "bad_signature", "X-Slack-Signature does not match the body")


def parse_click(body: bytes) -> Click | None:
    """The Rearguard button click in a `block_actions` payload; None for anything else."""
    try:
        form = parse_qs(body.decode())["payload"][0]
    except (KeyError, IndexError, UnicodeDecodeError) as exc:
        raise IngestError(
            400, "malformed_body", "expected a form field `payload` with JSON"
        ) from exc
    payload: Any = read_json(form, where="payload")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    action_id = str(action.get("action_id", ""))
    if action_id not in BUTTONS or not action.get("value"):
        return None
    user = payload.get("user") or {}
    who = str(user.get("username") or user.get("id") or "unknown") if isinstance(user, dict) else ""
    return Click(action_id, BUTTONS[action_id][1], str(action["value"]), who,
                 str(action.get("action_ts", "")))  # fmt: skip


async def handle_click(deps: WatchDeps, click: Click, now: float) -> dict[str, Any]:
    """Record the verdict; close the revert PR on a false alarm in propose mode."""
    store = deps.store
    incident = await store.incidents.incident(click.incident_id)
    if incident is None:
        raise IngestError(404, "not_found", f"no incident {click.incident_id!r}")
    top = incident.revert_unit[0] if incident.revert_unit else None
    key = f"slack:{incident.id}:{click.user}:{click.kind}"
    fresh = await store.incidents.record_feedback(
        key, incident.id, click.kind, actor=click.user, source="slack", now=now, pr_number=top
    )
    closed = None
    service = deps.settings.service(incident.service)
    if click.kind == "false_alarm" and service is not None:
        mode, _ = effective(deps.settings.mode, deps.settings.human_gates, service.mode, None)
        revert = next(
            (a for a in await store.incidents.actions(incident.id) if a.kind is ActionKind.REVERT),
            None,
        )
        number = (revert.detail or {}).get("number") if revert else None
        if mode is Mode.PROPOSE and revert is not None and completed(revert) and number:
            closed = await _close(deps, incident.id, service.repo, int(str(number)), click.user)
    return {"recorded": fresh, "kind": click.kind, "closed_revert": closed}


async def _close(deps: WatchDeps, incident_id: str, repo: str, number: int, user: str) -> bool:
    key, now = f"close-revert-{incident_id}", deps.clock.now()
    action = await deps.store.incidents.begin_action(key, incident_id, ActionKind.CLOSE, now)
    if completed(action):
        return True
    comment = f"Closed by Rearguard: {user} marked the incident a false alarm in Slack."
    try:
        await deps.forge.close_pull(repo, number, comment)
    except Exception as exc:  # noqa: BLE001 - recorded on the action; the click itself is kept
        await deps.store.incidents.finish_action(key, ActionStatus.FAILED, now=deps.clock.now(),
                                                 error=str(exc))  # fmt: skip
        return False
    await deps.store.incidents.finish_action(key, ActionStatus.COMPLETED, now=deps.clock.now(),
                                             detail={"number": number, "by": user})  # fmt: skip
    return True


def _verify(request: web.Request, body: bytes) -> None:
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else None
    check_slack_signature(body, request.headers.get("X-Slack-Request-Timestamp"),
                          request.headers.get("X-Slack-Signature"), secret,
                          deps.clock.now())  # fmt: skip


def _parse(request: web.Request, body: bytes) -> Parsed[Click]:
    click = parse_click(body)
    if click is None:
        return Parsed("block_actions", "", None, None)
    delivery = f"{click.incident_id}:{click.user}:{click.action_id}:{click.action_ts}"
    kept = {"action_id": click.action_id, "incident_id": click.incident_id, "user": click.user}
    return Parsed("block_actions", delivery, kept, click)


async def _apply(request: web.Request, click: Click) -> dict[str, Any]:
    deps = request.app[DEPS]
    return await handle_click(deps, click, deps.clock.now())


def _answer(parsed: Parsed[Click], applied: dict[str, Any]) -> dict[str, Any]:
    return {"status": "applied", **applied} if parsed.record else {"status": "ignored"}


SLACK: Sender[Click] = Sender(
    "slack", _verify, _parse, _apply, dedupe=False, journal_ignored=False, ok_status=200,
    answer=_answer,
)  # fmt: skip


async def post_slack(request: web.Request) -> web.Response:
    """Verify, journal, record; Slack wants an answer within three seconds."""
    return await receive(request, SLACK)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/webhooks/slack", post_slack)]
