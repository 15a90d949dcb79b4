"""`POST /v1/webhooks/slack`: signed button clicks feed the feedback table; forged, replayed or
stale ones are refused with 401 and change nothing; every click is answered at once, and what
is slow (closing the revert PR on a false alarm in propose mode) runs after the answer, then the
incident's message is redrawn in place: who did what, the buttons that still make sense, and
after a Wrong PR a select of the deploy's other PRs. Unfinished work resumes after a restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from loop.api.app import build_app
from loop.api.context import CLICKS, DEPS
from loop.clock import ManualClock
from loop.config import Secret
from tests.acting_rig import make_acting_rig
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.fakes.slack_messages import render
from tests.slack_rig import SIGNING_SECRET as SECRET
from tests.slack_rig import click, mentions, pick, signed


@pytest.fixture
async def app(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[TestClient[Any, Any], str, ManualClock]]:
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", other_prs=2)
    try:
        try:
            assert await rig.run() == "reverted"
            incident = await rig.store.incidents.incident_for_deploy(rig.deploy.id)
            assert incident is not None
        finally:
            await rig.store.close()  # the app below opens it again
        settings = replace(rig.deps.settings, slack_signing_secret=Secret(SECRET))
        clients = (rig.deps.source, rig.deps.forge, rig.deps.notifier)
        app = build_app(settings, clock=rig.clock, clients=clients, scheduler=False)
        client = await aiohttp_client(app)
        yield client, incident.id, rig.clock
        await client.close()  # the app's store first, then the clients it was given
    finally:
        await rig.close_clients()


async def _post(client: TestClient[Any, Any], body: bytes, clock: ManualClock) -> Any:
    response = await client.post("/v1/webhooks/slack", data=body, headers=signed(body, clock.now()))
    assert response.status == 200, await response.text()
    return await response.json()


def _notice(slack: FakeSlack) -> FakeMessage:
    (message,) = [m for m in slack.messages if m.thread_ts is None and m.blocks]
    return message


def _elements(message: FakeMessage) -> list[dict[str, Any]]:
    (actions,) = [b for b in message.blocks or [] if b["type"] == "actions"] or [{"elements": []}]
    return list(actions["elements"])


def _revert_state(github: FakeGitHub) -> str:
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    return str(revert.state)


def _status(message: FakeMessage) -> str:
    found = [b for b in message.blocks or [] if b.get("block_id") == "rearguard_status"]
    return render(found[0]["text"]["text"]).text if found else ""


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
    assert (await _post(client, click(incident_id, "rearguard_false_alarm"), clock))["recorded"]
    await client.app[CLICKS].idle()
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    assert revert.state == "closed"
    assert not revert.merged
    assert "ana" in revert.comments[0]
    assert await _feedback(client) == [("false_alarm", "ana", "slack")]


async def test_click_is_answered_before_a_slow_close_and_the_message_then_says_who(
    app: tuple[TestClient[Any, Any], str, ManualClock], github: FakeGitHub, slack: FakeSlack
) -> None:
    """GitHub answering in 4 s: the False alarm click is answered well within Slack's 3 s; the
    revert PR is closed afterwards and the message then names who said so, without its button."""
    client, incident_id, clock = app
    github.delay(4.0)
    started = time.monotonic()
    answer = await _post(client, click(incident_id, "rearguard_false_alarm", user="ana"), clock)
    took = time.monotonic() - started
    assert took < 3.0, f"answered in {took:.1f}s"
    assert answer["status"] == "accepted"
    assert _revert_state(github) == "open"  # not yet: the close is after the answer
    await client.app[CLICKS].idle()
    assert _revert_state(github) == "closed"
    (revert,) = [p for p in github.created_pulls() if "Revert" in p.title]
    message = _notice(slack)
    assert message.edited
    assert "False alarm, says ana" in _status(message)
    assert f"Revert PR #{revert.number} closed" in _status(message)
    assert [e["action_id"] for e in _elements(message)] == ["rearguard_confirm",
                                                             "rearguard_wrong_pr"]  # fmt: skip


async def test_confirm_shows_who_confirmed_and_no_second_confirm(
    app: tuple[TestClient[Any, Any], str, ManualClock], slack: FakeSlack
) -> None:
    """Confirm: the message says who confirmed (escaped: a name cannot mention anyone) and
    offers no second Confirm; the message's other blocks are kept."""
    client, incident_id, clock = app
    before = _notice(slack)
    await _post(client, click(incident_id, "rearguard_confirm", user="<!channel> ana"), clock)
    await client.app[CLICKS].idle()
    message = _notice(slack)
    assert "Confirmed by <!channel> ana" in _status(message)
    assert mentions(message) == set()
    ids = [e["action_id"] for e in _elements(message)]
    assert ids == ["rearguard_false_alarm", "rearguard_wrong_pr"]
    kept = [b["type"] for b in message.blocks or [] if b.get("block_id") != "rearguard_status"]
    assert kept == [b["type"] for b in before.blocks or []]
    assert message.text == before.text


async def test_wrong_pr_offers_the_deploys_prs_and_a_pick_records_the_culprit(
    app: tuple[TestClient[Any, Any], str, ManualClock], slack: FakeSlack
) -> None:
    """Wrong PR: a select of the deploy's other PRs appears in the message; picking one keeps
    `wrong_pr` naming it as the culprit (through the feedback API's own path), and the select
    goes once a PR is picked."""
    client, incident_id, clock = app
    await _post(client, click(incident_id, "rearguard_wrong_pr"), clock)
    await client.app[CLICKS].idle()
    incident = await client.app[DEPS].store.incidents.incident(incident_id)
    assert incident is not None
    top = incident.revert_unit[0]
    (select,) = [e for e in _elements(_notice(slack)) if e["type"] == "static_select"]
    values = [int(o["value"]) for o in select["options"]]
    assert sorted(values) == sorted(s.number for s in incident.suspects if s.number != top)
    assert len(values) == 2
    assert all(len(o["text"]["text"]) <= 75 for o in select["options"])
    answer = await _post(client, pick(incident_id, values[0]), clock)
    assert answer["picked"] == values[0]
    await client.app[CLICKS].idle()
    rows = await client.app[DEPS].store.fetch(
        "SELECT kind, pr_number, actor FROM feedback ORDER BY created_at, id"
    )
    assert sorted(rows) == sorted([("wrong_pr", top, "ana"), ("confirmed", values[0], "ana")])
    message = _notice(slack)
    assert not [e for e in _elements(message) if e["type"] == "static_select"]
    assert f"ana picked #{values[0]} as the PR that caused it" in _status(message)


async def test_picking_the_suspect_said_to_be_wrong_is_refused(
    app: tuple[TestClient[Any, Any], str, ManualClock],
) -> None:
    """A pick of the very PR called wrong, or of a PR outside the deploy: 422, no feedback, and
    the journaled click marked rejected (no work resumes from it)."""
    client, incident_id, clock = app
    incident = await client.app[DEPS].store.incidents.incident(incident_id)
    assert incident is not None
    for number in (incident.revert_unit[0], 9999):
        body = pick(incident_id, number, action_ts=f"3.{number}")
        response = await client.post("/v1/webhooks/slack", data=body,
                                     headers=signed(body, clock.now()))  # fmt: skip
        assert response.status == 422, await response.text()
    assert await _feedback(client) == []
    journal = "SELECT status FROM journal WHERE source = 'slack'"
    assert await client.app[DEPS].store.fetch(journal) == [("rejected",), ("rejected",)]


async def test_work_cut_off_by_a_shutdown_resumes_when_the_app_starts_again(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack, aiohttp_client: AiohttpClient
) -> None:
    """The app stops while the false alarm's close is still waiting on GitHub: the click stays
    journaled `accepted`, and the next start closes the PR and redraws the message."""
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose")
    try:
        assert await rig.run() == "reverted"
        incident = await rig.store.incidents.incident_for_deploy(rig.deploy.id)
        assert incident is not None
        await rig.store.close()
        settings = replace(rig.deps.settings, slack_signing_secret=Secret(SECRET))
        clients = (rig.deps.source, rig.deps.forge, rig.deps.notifier)
        github.delay(2.0)
        first = await aiohttp_client(build_app(settings, clock=rig.clock, clients=clients,
                                               scheduler=False))  # fmt: skip
        await _post(first, click(incident.id, "rearguard_false_alarm"), rig.clock)
        await first.close()  # cancels the work in flight
        github.delay(0)
        assert _revert_state(github) == "open"
        again = await aiohttp_client(build_app(settings, clock=rig.clock, clients=clients,
                                               scheduler=False))  # fmt: skip
        await again.app[CLICKS].idle()
        assert _revert_state(github) == "closed"
        assert "False alarm, says ana" in _status(_notice(slack))
        journal = "SELECT status FROM journal WHERE source = 'slack'"
        assert await again.app[DEPS].store.fetch(journal) == [("applied",)]
        await again.close()
    finally:
        await rig.close_clients()
