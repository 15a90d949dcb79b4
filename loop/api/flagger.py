"""`POST /v1/webhooks/flagger/{hook}`: Flagger's canary webhooks, answered from the canary's Watch.

Flagger POSTs the same payload to every webhook (`CanaryWebhookPayload`: name, namespace, phase,
checksum, metadata; no header but `Content-Type`, 10 s timeout by default) and reads only the
status: 200-202 passes, anything else fails. The payload does not say which kind of webhook it
is, so the path does (`/v1/webhooks/flagger/rollout`, …). The first webhook of a canary
revision records its deploy through the journal, as the CD hook does, and starts its Watch;
the SLIs of a gated service are in canary mode (`version_label`), so the canary's series (the
label naming the commit) are judged against the stable version's over the same steps. The
commit is the webhook's `metadata.<revision_key>` (`[flagger] revision_key`, "revision" by
default): Flagger's checksum is a hash of the canary's spec and names no commit.

What each answer means to Flagger (its `webhooks.md`), and what Rearguard answers:

- `rollout`, `pre-rollout`, `confirm-rollout`, `confirm-traffic-increase`: 200 unless the
  Watch found a regression (409 `canary_regressed`: the check fails, and Flagger rolls the
  canary back once the failures reach the analysis threshold);
- `confirm-promotion`: 200 once the Watch is over without a regression (healthy or
  inconclusive); 409 while it is still judging (`verdict_pending`: Flagger waits and keeps
  running its checks) or when it regressed;
- `rollback`: Flagger asks whether to roll back: 200 when the Watch regressed, else 409
  (`no_rollback`);
- `post-rollout`: 200 (recorded; Flagger only logs a failure); `event`: 202 (recorded; its
  `eventType` and `eventMessage` appear in the deploy's view under `flagger`).

Authentication: Flagger sends no credentials of its own, so the token is the webhook's
`metadata.token` (or an `Authorization: Bearer` header from a proxy in front): the
REARGUARD_FLAGGER_TOKEN, or the API token when that is not set; 503 when neither is. The token
is never journaled: only the payload's own fields and the metadata Rearguard reads are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from attribution.records import Deploy
from attribution.store_journal import Applied, Journaled
from loop.api.context import DEPS, SETTINGS, error_response, wake
from loop.api.fields import IngestError, bad_field, read_field, read_json, read_sha
from loop.api.ingest import check_bearer
from loop.api.webhook import Parsed, Sender, take
from loop.config import ENV_API_TOKEN, Settings
from loop.config_flagger import ENV_FLAGGER_TOKEN
from loop.watch.phases import Phase

SOURCE = "flagger"
HOOKS = (
    "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
)  # fmt: skip
"""Flagger's webhook types (`HookType` in its canary.go), one path each."""
EVENT_KEYS = ("eventType", "eventMessage", "timestamp")
"""The metadata Flagger sets on an `event` webhook (`CallEventWebhook`)."""


class Verdict(StrEnum):
    """What the Watch says of the canary so far."""

    PENDING = "pending"
    PASSED = "passed"
    REGRESSED = "regressed"


_PENDING = {Phase.DEPLOYED, Phase.OBSERVING}
_PASSED = {Phase.HEALTHY, Phase.INCONCLUSIVE}


def verdict_of(phase: str | None) -> Verdict:
    """A Watch phase as a gate reads it: regressed from the verdict on (reverted, escalated and
    recovered included: the canary's commit regressed), passed when the Watch ended without."""
    if phase is None or phase in _PENDING:
        return Verdict.PENDING
    return Verdict.PASSED if phase in _PASSED else Verdict.REGRESSED


@dataclass(frozen=True, slots=True)
class Gate:
    """An answer to Flagger: the status and, for a failing one, the error code."""

    status: int
    code: str = ""


PASS, RECORDED = Gate(200), Gate(202)


def gate(hook: str, verdict: Verdict) -> Gate:
    """The answer to webhook type `hook` for a canary whose Watch says `verdict`."""
    if hook == "event":
        return RECORDED
    if hook == "post-rollout":
        return PASS
    if hook == "rollback":
        return PASS if verdict is Verdict.REGRESSED else Gate(409, "no_rollback")
    if verdict is Verdict.REGRESSED:
        return Gate(409, "canary_regressed")
    if hook == "confirm-promotion" and verdict is Verdict.PENDING:
        return Gate(409, "verdict_pending")
    return PASS


_MESSAGES = {
    "canary_regressed": "Rearguard's Watch found the canary regressed: {reason}",
    "verdict_pending": "Rearguard is still judging the canary: {reason}",
    "no_rollback": "Rearguard has found no regression: {reason}",
}


@dataclass(frozen=True, slots=True)
class CanaryHook:
    """One Flagger webhook call: its type, the deploy of the canary revision, Flagger's phase."""

    hook: str
    deploy: Deploy
    phase: str


def _hook(request: web.Request) -> str:
    hook = request.match_info["hook"]
    if hook not in HOOKS:
        raise IngestError(404, "not_found", f"no Flagger webhook type {hook!r}; one of {HOOKS}")
    return hook


def _verify(request: web.Request, body: bytes) -> None:
    _hook(request)
    settings = request.app[SETTINGS]
    secret = settings.flagger_token or settings.api_token
    token = secret.reveal() if secret else None
    header = request.headers.get("Authorization")
    if header is None:
        # Flagger sends no headers of its own: the token is in the webhook's metadata.
        data = read_json(body)
        metadata = data.get("metadata") if isinstance(data, Mapping) else None
        given = metadata.get("token") if isinstance(metadata, Mapping) else None
        header = f"Bearer {given}" if isinstance(given, str) else None
    check_bearer(header, token, f"{ENV_FLAGGER_TOKEN} (or {ENV_API_TOKEN})")


def deploy_id_for(canary: str, checksum: str, sha: str) -> str:
    """One deploy per canary revision: Flagger's checksum changes with the canary's spec."""
    return "flg_" + hashlib.sha256(f"{canary}|{checksum}|{sha}".encode()).hexdigest()[:16]


def parse_canary_hook(hook: str, data: Any, settings: Settings, now: float) -> CanaryHook:
    """Flagger's payload as its webhook.go sends it; 400 naming a field, 422 for a canary the
    config does not map to a service."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    name = read_field(data, "name", str)
    namespace = read_field(data, "namespace", str)
    phase = read_field(data, "phase", str, required=False) or ""
    checksum = read_field(data, "checksum", str, required=False) or ""
    metadata = read_field(data, "metadata", Mapping, required=False) or {}
    for key, value in metadata.items():
        if not isinstance(value, str):  # Flagger's metadata is map[string]string
            raise bad_field(f"metadata.{key}", "must be a string")
    canary = settings.flagger.canary(namespace, name)
    if canary is None:
        raise IngestError(
            422, "unknown_canary",
            f"canary {namespace}/{name} is not in the config ([flagger.canaries])",
        )  # fmt: skip
    keys = settings.flagger
    sha = read_sha(data, f"metadata.{keys.revision_key}")
    previous = read_sha(data, f"metadata.{keys.previous_revision_key}", required=False)
    service = settings.services[canary.service]
    deploy = Deploy(
        id=deploy_id_for(canary.key, checksum, sha), service=canary.service,
        environment=canary.environment, sha=sha, finished_at=now, source=SOURCE,
        repo=service.repo, previous_sha=previous,
    )  # fmt: skip
    return CanaryHook(hook, deploy, phase)


def _kept(data: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """What the journal keeps of a payload: its own fields and the metadata Rearguard reads,
    never the token (nor any other metadata, which may hold a tester's credentials)."""
    keys = (settings.flagger.revision_key, settings.flagger.previous_revision_key, *EVENT_KEYS)
    metadata = data.get("metadata") or {}
    return {
        **{k: data[k] for k in ("name", "namespace", "phase", "checksum") if k in data},
        "metadata": {k: metadata[k] for k in keys if k in metadata},
    }


def _parse(request: web.Request, body: bytes) -> Parsed[CanaryHook]:
    hook = _hook(request)
    data = read_json(body)
    settings = request.app[SETTINGS]
    record = parse_canary_hook(hook, data, settings, request.app[DEPS].clock.now())
    delivery = f"{record.deploy.id}:{hook}"
    if hook == "event":  # every event is kept; a gate's first call of a revision is enough
        metadata = data.get("metadata") or {}
        said = "|".join(str(metadata.get(k, "")) for k in EVENT_KEYS)
        delivery += ":" + hashlib.sha256(said.encode()).hexdigest()[:16]
    return Parsed(hook, delivery, _kept(data, settings), record)


def _rows(request: web.Request, record: CanaryHook) -> Applied:
    return Applied(deploys=(record.deploy,), phase=Phase.DEPLOYED)


def _applied(request: web.Request, record: CanaryHook, done: Journaled) -> dict[str, Any]:
    if done.created and done.created[0]:
        wake(request.app)
    return {"deploy": record.deploy.id}


FLAGGER: Sender[CanaryHook] = Sender(
    SOURCE, _verify, _parse, rows=_rows, applied=_applied, dedupe=False, keep_text=False,
)  # fmt: skip


async def post_hook(request: web.Request) -> web.Response:
    """Record the canary's deploy (its Watch starts with the first call) and answer as the
    Watch's verdict says for this webhook type."""
    parsed, answer, _ = await take(request, FLAGGER)
    record = parsed.record
    if record is None:  # every parsed delivery has a record; a refusal raised already
        raise TypeError("a Flagger delivery without a record")
    watch = await request.app[DEPS].store.watches.watch(record.deploy.id)
    phase = watch.phase if watch else None
    reason = (watch.reason if watch else None) or "no reason recorded"
    verdict = verdict_of(phase)
    answer = {**answer, "verdict": str(verdict), "phase": phase}
    decided = gate(record.hook, verdict)
    if decided.code:
        message = _MESSAGES[decided.code].format(reason=reason) + f" (deploy {answer['deploy']})"
        return error_response(decided.status, decided.code, message)
    return web.json_response({**answer, "reason": reason}, status=decided.status)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/webhooks/flagger/{hook}", post_hook)]
