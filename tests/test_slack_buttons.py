"""`POST /v1/webhooks/slack`: signed button clicks feed the feedback table; forged, replayed or
stale ones are refused with 401 and change nothing; "False alarm" in propose mode closes the
revert PR."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from loop.api.app import build_app
from loop.api.context import DEPS
from loop.clock import ManualClock
from loop.config import Secret
from tests.acting_rig import make_acting_rig
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

SECRET = "slack-signing-secret-for-tests"


def click(incident_id: str, action_id: str, user: str = "ana") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U1", "username": user},
        "actions": [{"action_id": action_id, "value": incident_id, "action_ts": "1.2"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: float, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{int(timestamp)}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(int(timestamp)), "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


@pytest.fixture
async def app(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[TestClient[Any, Any], str, ManualClock]]:
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose")
    try:
        try:
            assert await rig.run() == "reverted"
            incident = await rig.store.incidents.incident_for_deploy(rig.deploy.id)
            assert incident is not None
        finally:
            await rig.store.close()  # the app below opens it again
        settings = replace(rig.deps.settings, slack_signing_secret=Secret(SECRET))
        clients = (rig.deps.source, rig.deps.forge, rig.deps.notifier)
        client = await aiohttp_client(build_app(settings, clock=rig.clock, clients=clients,
                                                scheduler=False))  # fmt: skip
        yield client, incident.id, rig.clock
        await client.close()  # the app's store first, then the clients it was given
    finally:
        await rig.close_clients()


async def _feedback(client: TestClient[Any, Any]) -> list[Any]:
    rows: list[Any] = await client.app[DEPS].store.fetch("SELECT kind, actor, source FROM feedback")
    return rows


@pytest.mark.parametrize(
    ("why", "headers_for"),
    [
        ("bad signature", lambda body, now: signed(body, now, "another-secret")),
        ("old timestamp", lambda body, now: signed(body, now - 301)),
        ("future timestamp", lambda body, now: signed(body, now + 301)),
        ("no signature", lambda body, now: {"X-Slack-Request-Timestamp": str(int(now))}),
    ],
)
async def test_forged_or_stale_click_is_401_and_changes_nothing(
    app: tuple[TestClient[Any, Any], str, ManualClock], github: FakeGitHub, why: str,
    headers_for: Any,
) -> None:  # fmt: skip
    """A bad signature or a timestamp over five minutes off: 401, no feedback, PR still open."""
    client, incident_id, clock = app
    body = click(incident_id, "rearguard_false_alarm")
    response = await client.post("/v1/webhooks/slack", data=body,
                                 headers=headers_for(body, clock.now()))  # fmt: skip
    assert response.status == 401, why
    assert await _feedback(client) == []
    assert all(p.state == "open" for p in github.created_pulls())


async def test_confirm_click_is_recorded_once(
    app: tuple[TestClient[Any, Any], str, ManualClock],
) -> None:
    """A signed Confirm click becomes one feedback row, however often it is clicked."""
    client, incident_id, clock = app
    for _ in range(2):
        body = click(incident_id, "rearguard_confirm")
        response = await client.post("/v1/webhooks/slack", data=body,
                                     headers=signed(body, clock.now()))  # fmt: skip
        assert response.status == 200, await response.text()
    assert await _feedback(client) == [("confirmed", "ana", "slack")]


async def test_false_alarm_in_propose_mode_closes_the_revert_pr(
    app: tuple[TestClient[Any, Any], str, ManualClock], github: FakeGitHub
) -> None:
    """False alarm: recorded, and the revert PR is closed unmerged with a comment saying who."""
    client, incident_id, clock = app
    body = click(incident_id, "rearguard_false_alarm")
    response = await client.post("/v1/webhooks/slack", data=body, headers=signed(body, clock.now()))
    assert (await response.json())["closed_revert"] is True
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    assert revert.state == "closed"
    assert not revert.merged
    assert "ana" in revert.comments[0]
    assert await _feedback(client) == [("false_alarm", "ana", "slack")]
