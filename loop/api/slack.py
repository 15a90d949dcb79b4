"""`POST /v1/webhooks/slack`: the Confirm / False alarm / Wrong PR buttons of an incident message,
and the "which PR caused it?" select a Wrong PR brings up.

Slack signs every interactivity request: `X-Slack-Signature` is `v0=` and the hex HMAC-SHA256,
keyed by the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw body}`. A missing or
wrong signature, or a timestamp more than five minutes from now (a replay), is answered 401 and
changes nothing: not the journal, not the feedback. A verified click (a `block_actions` payload,
form-encoded as `payload=`) is journaled `accepted`, its verdict recorded through
`loop.api.feedback.record_verdict` (one row per person, incident and verdict; a picked PR is
`wrong_pr` naming it as the culprit), and answered at once: Slack wants its answer within three
seconds. What may be slow (closing the revert PR on a false alarm, redrawing the message in
place) runs after the answer, in `loop.api.slack_work.ClickWork`, which marks the click applied
when done and takes up unfinished clicks from the journal when the app starts again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from loop.api.context import CLICKS, DEPS, SETTINGS
from loop.api.feedback import record_verdict
from loop.api.fields import IngestError, read_json
from loop.api.slack_work import SOURCE, Click
from loop.api.webhook import Parsed, Sender, receive
from loop.watch.deps import WatchDeps
from rollback.slack import BUTTONS, FEEDBACK_BLOCK, PICK

MAX_SKEW = 300.0  # seconds: Slack's own advice for refusing replays
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_PR_NUMBER = re.compile(r"[0-9]{1,9}")


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
    """The Rearguard click in a `block_actions` payload; None for anything else."""
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
    action = actions[0] if isinstance(actions, list) and actions and isinstance(
        actions[0], dict) else {}  # fmt: skip
    user = payload.get("user") or {}
    who = str(user.get("username") or user.get("name") or user.get("id") or "unknown") if (
        isinstance(user, dict)) else "unknown"  # fmt: skip
    action_id, action_ts = str(action.get("action_id", "")), str(action.get("action_ts", ""))
    if action_id == PICK:
        return _pick(action, who, action_ts)
    if action_id not in BUTTONS or not action.get("value"):
        return None
    return Click(action_id, BUTTONS[action_id][1], str(action["value"]), who, action_ts)


def _pick(action: dict[str, Any], who: str, action_ts: str) -> Click | None:
    """A PR picked in the select: the incident from its block, the PR from the option."""
    block = str(action.get("block_id", ""))
    selected = action.get("selected_option")
    value = selected.get("value") if isinstance(selected, dict) else None
    if not block.startswith(f"{FEEDBACK_BLOCK}:") or not isinstance(value, str):
        return None
    if not _PR_NUMBER.fullmatch(value):
        raise IngestError(400, "bad_field", "the picked option's value is not a PR number")
    incident_id = block.removeprefix(f"{FEEDBACK_BLOCK}:")
    return Click(PICK, "wrong_pr", incident_id, who, action_ts, picked=int(value))


async def handle_click(deps: WatchDeps, click: Click) -> dict[str, Any]:
    """Record the click's verdict (fast: the store only); the rest is `ClickWork`'s."""
    incident = await deps.store.incidents.incident(click.incident_id)
    if incident is None:
        raise IngestError(404, "not_found", f"no incident {click.incident_id!r}")
    top = incident.revert_unit[0] if incident.revert_unit else None
    if click.picked is not None and click.picked == top:
        raise IngestError(422, "unknown_pr", f"#{top} is the suspect said to be the wrong PR")
    # A pick goes under the same key as its person's Wrong PR: one wrong_pr row, and the culprit.
    fresh = await record_verdict(
        deps, incident, click.kind, actor=click.user, pr=top, culprit=click.picked,
        note="picked in Slack" if click.picked is not None else None,
        key=f"slack:{incident.id}:{click.user}:{click.kind}", source="slack",
    )  # fmt: skip
    return {"recorded": fresh, "kind": click.kind, "picked": click.picked}


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
    return Parsed("block_actions", click.delivery, click.to_json(), click)


async def _apply(request: web.Request, click: Click) -> dict[str, Any]:
    deps = request.app[DEPS]
    try:
        applied = await handle_click(deps, click)
    except IngestError:  # refused (no such incident, a PR not of its deploy): nothing to resume
        await deps.store.journal.mark(SOURCE, click.delivery, "rejected")
        raise
    request.app[CLICKS].submit(click)  # after the answer: close the revert, redraw the message
    return applied


def _answer(parsed: Parsed[Click], applied: dict[str, Any]) -> dict[str, Any]:
    return {"status": "accepted", **applied} if parsed.record else {"status": "ignored"}


SLACK: Sender[Click] = Sender(
    "slack", _verify, _parse, _apply, journal_ignored=False, ok_status=200, answer=_answer,
    later=True,
)  # fmt: skip


async def post_slack(request: web.Request) -> web.Response:
    """Verify, journal, record, answer; the slow work follows the answer."""
    return await receive(request, SLACK)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/webhooks/slack", post_slack)]
