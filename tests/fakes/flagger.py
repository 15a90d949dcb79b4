"""Flagger as a caller: its webhook requests exactly as `pkg/controller/webhook.go` sends them.

`CallWebhook` POSTs a `CanaryWebhookPayload` (name, namespace, phase, checksum, and the
webhook's metadata) with only `Content-Type: application/json` set, within the webhook's timeout
(10 s when unset), retrying as go-retryablehttp does (connection errors and 5xx but 501, up to
`retries` times); an answer over 202 is a failure whose message is the answer's body.
`CallEventWebhook` sets `eventMessage`, `eventType` and `timestamp` (Unix ms) in the metadata,
the webhook's own keys added where they do not collide. Read from
`../shared/fixtures/progressive-delivery/flagger/webhook.go`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import aiohttp

MAX_OK = 202
"""`if r.StatusCode > 202 { return errors.New(string(b)) }`."""


class WebhookFailed(Exception):
    """Flagger's error for a failed webhook: the answer's body, or the transport's error."""


@dataclass(frozen=True, slots=True)
class Canary:
    """What of a Canary goes into the payload (`canaryChecksum` is given, not computed)."""

    name: str
    namespace: str
    phase: str = "Progressing"
    checksum: str = "85d557f47b"


@dataclass(frozen=True, slots=True)
class Webhook:
    """One `spec.analysis.webhooks` entry (`CanaryWebhook`)."""

    type: str
    url: str
    metadata: dict[str, str] = field(default_factory=dict)
    timeout: str = ""
    retries: int = 0


def _seconds(timeout: str) -> float:
    """Go's `time.ParseDuration` for the CRD's `^[0-9]+(m|s)` timeouts."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", timeout)
    if match is None:
        raise ValueError(f"time: invalid duration {timeout!r}")
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


async def _post(hook: Webhook, payload: dict[str, object], duration: str) -> None:
    body = json.dumps(payload).encode()
    seconds = _seconds(duration or "10s")
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
        for attempt in range(hook.retries + 1):
            try:
                async with session.post(hook.url, data=body, headers=headers) as r:
                    text = await r.text()
                    retryable = r.status >= 500 and r.status != 501
                    if retryable and attempt < hook.retries:
                        continue
                    if r.status > MAX_OK:
                        raise WebhookFailed(text)
                    return
            except aiohttp.ClientError as exc:
                if attempt == hook.retries:
                    raise WebhookFailed(str(exc)) from exc


async def call_webhook(canary: Canary, phase: str, hook: Webhook) -> None:
    """`CallWebhook`: None when Flagger takes the answer as a pass, else `WebhookFailed`."""
    payload: dict[str, object] = {
        "name": canary.name, "namespace": canary.namespace, "phase": phase,
        "checksum": canary.checksum,
    }  # fmt: skip
    if hook.metadata:
        payload["metadata"] = dict(hook.metadata)
    await _post(hook, payload, hook.timeout if len(hook.timeout) >= 2 else "10s")


async def call_event_webhook(canary: Canary, hook: Webhook, message: str, eventtype: str) -> None:
    """`CallEventWebhook`: the event in the metadata, the webhook's keys where they are free."""
    metadata = {
        "eventMessage": message, "eventType": eventtype,
        "timestamp": str(time.time_ns() // 1_000_000),
    }  # fmt: skip
    for key, value in hook.metadata.items():
        metadata.setdefault(key, value)
    payload: dict[str, object] = {
        "name": canary.name, "namespace": canary.namespace, "phase": canary.phase,
        "checksum": canary.checksum, "metadata": metadata,
    }  # fmt: skip
    await _post(hook, payload, hook.timeout)
