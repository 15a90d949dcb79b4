"""Refused requests write nothing: unauthenticated or badly signed deliveries leave every table
of the store as it was and are counted in `/metrics` by route and reason code instead, with
label values from a fixed set whatever the request says. Slack timestamps must be integers; a
405 keeps its `Allow` header."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from urllib.parse import urlencode

from pytest_aiohttp.plugin import AiohttpClient

from loop.config import ENV_ALERTMANAGER_TOKEN
from tests.api_rig import (
    ALERTMANAGER_TOKEN,
    ENV,
    SHA,
    SLACK_SECRET,
    START,
    bearer,
    metric_lines,
    start_app,
    table_counts,
)

REFUSED = "rearguard_refused_requests_total"
DEPLOY = {"service": "hello", "environment": "production", "sha": SHA}
# Text an attacker chooses, in every header a refused request carries.
HOSTILE = "<!channel> '; DROP TABLE journal; -- \u202e"


def _unauthenticated(i: int) -> tuple[str, bytes, dict[str, str]]:
    """The `i`-th of six kinds of unauthenticated POST, each with attacker-chosen headers."""
    body = json.dumps({"n": i, "text": HOSTILE}).encode()
    kinds = [
        ("/v1/deploys", json.dumps(DEPLOY).encode(), bearer("not-the-token")),
        ("/v1/webhooks/github", body, {"X-GitHub-Event": "pull_request",
                                       "X-GitHub-Delivery": f"{HOSTILE}{i}",
                                       "X-Hub-Signature-256": "sha256=" + "0" * 64}),
        ("/v1/webhooks/sentry", body, {"Sentry-Hook-Resource": HOSTILE,
                                       "Sentry-Hook-Signature": "0" * 64}),
        ("/v1/webhooks/alertmanager", body, bearer(ALERTMANAGER_TOKEN + "x")),
        ("/v1/webhooks/slack", urlencode({"payload": body.decode()}).encode(),
         {"X-Slack-Request-Timestamp": str(int(START)), "X-Slack-Signature": "v0=" + "0" * 64}),
        (f"/v1/incidents/{HOSTILE[:8]}/feedback", body, {}),
    ]  # fmt: skip
    return kinds[i % len(kinds)]


async def test_600_unauthenticated_posts_leave_the_store_unchanged(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """600 forged or unauthenticated POSTs: 401 each, every table's row count unchanged, and
    each counted by route and reason."""
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    for i in range(600):
        path, body, headers = _unauthenticated(i)
        response = await client.post(path, data=body, headers=headers)
        assert response.status == 401, (path, await response.text())
    assert await table_counts(client) == before
    lines = await metric_lines(client, REFUSED)
    for route, reason in [
        ("/v1/deploys", "unauthorized"),
        ("/v1/webhooks/github", "bad_signature"),
        ("/v1/webhooks/sentry", "bad_signature"),
        ("/v1/webhooks/alertmanager", "unauthorized"),
        ("/v1/webhooks/slack", "bad_signature"),
        ("/v1/incidents/{id}/feedback", "unauthorized"),
    ]:
        assert f'{REFUSED}{{reason="{reason}",route="{route}"}} 100.0' in lines, lines


async def test_refusal_labels_come_from_a_fixed_set(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Unknown paths and odd methods are counted under fixed labels, never the request's text."""
    client = await start_app(aiohttp_client, tmp_path)
    for i in range(20):
        await client.get(f"/v1/{HOSTILE}-{i}")
        await client.request("PATCH", "/v1/deploys")
    lines = await metric_lines(client, REFUSED)
    assert f'{REFUSED}{{reason="not_found",route="unmatched"}} 20.0' in lines
    assert f'{REFUSED}{{reason="method_not_allowed",route="/v1/deploys"}} 20.0' in lines
    labels = {m for line in lines for m in re.findall(r'="([^"]*)"', line)}
    assert not any(HOSTILE[:5] in label for label in labels)


def _slack(timestamp: str) -> tuple[bytes, dict[str, str]]:
    """A click signed correctly over `timestamp`, as Slack signs, whatever the timestamp says."""
    body = urlencode({"payload": json.dumps({"type": "block_actions", "actions": []})}).encode()
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


async def test_slack_timestamp_must_be_an_integer(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """`nan`, `inf`, fractions, exponents and non-ASCII digits are refused, however signed."""
    client = await start_app(aiohttp_client, tmp_path)
    for timestamp in (
        "nan",
        "NaN",
        "inf",
        "-inf",
        f"{START}",
        "1.79e9",
        "\u0661\u0667",
        f"+{int(START)}",
    ):
        body, headers = _slack(timestamp)
        response = await client.post("/v1/webhooks/slack", data=body, headers=headers)
        assert response.status == 401, timestamp
        assert (await response.json())["error"]["code"] == "bad_signature"
    body, headers = _slack(str(int(START)))
    response = await client.post("/v1/webhooks/slack", data=body, headers=headers)
    assert response.status == 200


async def test_method_not_allowed_keeps_its_allow_header(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A 405 answers in the JSON error shape and still says which methods the route takes."""
    client = await start_app(aiohttp_client, tmp_path)
    response = await client.request("DELETE", "/v1/webhooks/github")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_a_route_without_its_token_names_the_setting(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Alertmanager's route with no REARGUARD_ALERTMANAGER_TOKEN set says that variable (it
    named the API token's), and counts as `not_configured`."""
    env = {k: v for k, v in ENV.items() if k != ENV_ALERTMANAGER_TOKEN}
    client = await start_app(aiohttp_client, tmp_path, env=env)
    response = await client.post("/v1/webhooks/alertmanager", json={}, headers=bearer("x"))
    assert response.status == 503
    assert ENV_ALERTMANAGER_TOKEN in (await response.json())["error"]["message"]
    lines = await metric_lines(client, REFUSED)
    assert f'{REFUSED}{{reason="not_configured",route="/v1/webhooks/alertmanager"}} 1.0' in lines
