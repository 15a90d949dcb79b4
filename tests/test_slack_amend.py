"""Redrawing an incident's message in place, and the Slack stand-in's strictness about it: which
buttons stay after which verdicts (a table), the redrawn blocks within Slack's limits however many
PRs a deploy has, `chat.update` refused as Slack refuses it, and each service's notices in its own
channel."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from loop.config import ConfigError, load_settings
from rollback.notify import Amendment, Delivery, NotifyRejected, WarningNotice
from rollback.slack import PICK, SlackNotifier, amended_blocks, message_payload, offered
from tests.fakes.slack import TOKEN, FakeSlack
from tests.fakes.slack_messages import block_errors
from tests.test_slack_notifier import make_notice

DEFAULT, SHOP = "C0DEFAULT", "C0SHOPOPS"
ALL = ("rearguard_confirm", "rearguard_false_alarm", "rearguard_wrong_pr")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels=[DEFAULT, SHOP]) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack.url, session=session, retry_handlers=[])


@pytest.mark.parametrize(
    ("given", "picked", "buttons", "picker"),
    [
        (set(), False, ALL, False),
        ({"confirmed"}, False, ("rearguard_false_alarm", "rearguard_wrong_pr"), False),
        ({"false_alarm"}, False, ("rearguard_confirm", "rearguard_wrong_pr"), False),
        ({"wrong_pr"}, False, ("rearguard_confirm", "rearguard_false_alarm"), True),
        ({"wrong_pr"}, True, ("rearguard_confirm", "rearguard_false_alarm"), False),
        ({"confirmed", "false_alarm", "wrong_pr"}, False, (), True),
    ],
)
def test_buttons_left_after_verdicts(
    given: set[str], picked: bool, buttons: tuple[str, ...], picker: bool
) -> None:
    """Each verdict's own button goes; the select follows a Wrong PR until a PR is picked."""
    assert offered(given, picked) == (buttons, picker)


def test_redrawn_blocks_stay_within_slacks_limits_and_redraw_the_same() -> None:
    """150 PRs and a 5000-character status: 100 options of at most 75 characters, status cut
    to 3000, and amending twice gives the same blocks; the other blocks are kept."""
    original = message_payload(make_notice(), DEFAULT)["blocks"]
    amendment = Amendment("incident-7", ("Confirmed by " + "x" * 5000,), ALL[1:],
                          tuple((n, "A very long PR title " * 10) for n in range(150)))  # fmt: skip
    once = amended_blocks(original, amendment)
    assert block_errors(once) == []
    assert amended_blocks(once, amendment) == once
    (select,) = [e for b in once if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == PICK]  # fmt: skip
    assert len(select["options"]) == 100
    assert [b["type"] for b in once if b.get("block_id") != "rearguard_status"] == [
        b["type"] for b in original]  # fmt: skip
    nothing_left = amended_blocks(original, Amendment("incident-7", ("done",), ()))
    assert not [b for b in nothing_left if b["type"] == "actions"]


async def test_chat_update_is_refused_as_slack_refuses_it(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """Someone else's message: cant_update_message; an unknown ts: message_not_found; 51
    blocks, a 76-character option or 40,001 characters of text: refused, nothing changed."""
    mine = await client.chat_postMessage(channel=DEFAULT, text="mine")
    theirs = slack.post_as(DEFAULT, "a person's message")
    option = {"text": {"type": "plain_text", "text": "x" * 76}, "value": "1"}
    select = {"type": "static_select", "action_id": "a", "options": [option]}
    refusals = [
        ({"ts": theirs.ts, "text": "edit"}, "cant_update_message"),
        ({"ts": "1.000001", "text": "edit"}, "message_not_found"),
        ({"ts": mine["ts"], "text": "edit", "blocks": [{"type": "divider"}] * 51},
         "invalid_blocks"),
        ({"ts": mine["ts"], "text": "edit",
          "blocks": [{"type": "actions", "elements": [select]}]}, "invalid_blocks"),
        ({"ts": mine["ts"], "text": "x" * 40_001}, "msg_too_long"),
    ]  # fmt: skip
    for args, error in refusals:
        with pytest.raises(SlackApiError) as caught:
            await client.chat_update(channel=DEFAULT, **args)
        assert caught.value.response["error"] == error, args
    assert [m.text for m in slack.messages] == ["mine", "a person's message"]
    assert not any(m.edited for m in slack.messages)


async def test_amend_redraws_the_notice_and_a_lost_message_is_rejected(slack: FakeSlack) -> None:
    """`amend` keeps the notice's text and blocks and adds the status; a ts Slack does not
    hold is a rejection, not something to retry."""
    notifier = SlackNotifier(TOKEN, DEFAULT, base_url=slack.url, max_retries=0)
    try:
        thread = await notifier.send(make_notice())
        await notifier.amend(thread, Amendment("incident-7", ("Confirmed by ana",), ALL[1:]))
        (message,) = slack.messages
        assert message.edited
        assert message.text == message_payload(make_notice(), DEFAULT)["text"]
        assert message.blocks is not None
        assert any(b.get("block_id") == "rearguard_status" for b in message.blocks)
        with pytest.raises(NotifyRejected):
            await notifier.amend(Delivery(DEFAULT, "1.000001"), Amendment("incident-7", (), ALL))
    finally:
        await notifier.aclose()


async def test_each_service_notices_go_to_its_own_channel(slack: FakeSlack) -> None:
    """A service with a channel of its own gets its incident and warnings there, replies in
    that thread; any other service uses the default channel."""
    notifier = SlackNotifier(TOKEN, DEFAULT, channels={"checkout": SHOP}, base_url=slack.url)
    try:
        shop = await notifier.send(make_notice())
        other = await notifier.send(dataclasses.replace(make_notice("k2"), service="search"))
        warning = WarningNotice("w1", "checkout", "production", "abc", "sli", "vanished",
                                "no samples", 0.0)  # fmt: skip
        warned = await notifier.warn(warning)
        assert (shop.channel, other.channel, warned.channel) == (SHOP, DEFAULT, SHOP)
        assert sorted(m.channel for m in slack.messages) == [DEFAULT, SHOP, SHOP]
    finally:
        await notifier.aclose()


def _config(tmp_path: Path, service_channel: str) -> Path:
    path = tmp_path / "rearguard.toml"
    path.write_text(f"""
[slack]
channel = "{DEFAULT}"
[services.checkout]
repo = "acme/shop"
{service_channel}
[services.checkout.slis.errors]
bad = "b"
total = "t"
[services.search]
repo = "acme/search"
[services.search.slis.errors]
bad = "b"
total = "t"
""")
    return path


def test_service_slack_channel_is_read_and_checked(tmp_path: Path) -> None:
    """`[services.X] slack_channel` is the service's; unset it is empty (the default channel);
    a `#name` is refused naming the key."""
    settings = load_settings(_config(tmp_path, f'slack_channel = "{SHOP}"'), {})
    assert settings.services["checkout"].slack_channel == SHOP
    assert settings.services["search"].slack_channel == ""
    with pytest.raises(ConfigError, match=r"services\.checkout\.slack_channel"):
        load_settings(_config(tmp_path, 'slack_channel = "#shop-ops"'), {})


async def test_a_rate_limited_update_waits_and_lands(slack: FakeSlack) -> None:
    """`chat.update` answered 429 with Retry-After 1: the notifier waits it and the edit lands."""
    notifier = SlackNotifier(TOKEN, DEFAULT, base_url=slack.url, max_retries=2)
    try:
        thread = await notifier.send(make_notice())
        slack.rate_limit_next(1, retry_after=1, method="chat.update")
        await notifier.amend(thread, Amendment("incident-7", ("Confirmed by ana",), ALL[1:]))
        assert slack.calls.count("chat.update") == 2
        assert slack.messages[0].edited
    finally:
        await notifier.aclose()
