"""Every text Rearguard sends to Slack is shown as written: a PR title, an agent name, a reason or
a reply cannot mention anyone or break a link, and Rearguard's own links stay links. What was
sent is read back the way Slack reads mrkdwn (`tests.fakes.slack_messages.render`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from rollback.notify import Notice, Reply, SuspectLine
from rollback.slack import escape, link, render_blocks
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts, render
from tests.test_slack_notifier import CHANNEL, REVERT_URL, make_notice, notifier_for

HOSTILE = "Stop paging <!channel> & <@U0BOSS> on <Money> retries <https://evil.test|here>"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels=[CHANNEL]) as fake:
        yield fake


def _with_everywhere(notice: Notice, text: str) -> Notice:
    """`notice` with `text` in every free-text field a person or an agent can write."""
    suspect = replace(notice.suspects[0], title=text, agent=text, agent_session=text, reason=text)
    return replace(notice, suspects=(suspect,), verdict_reason=text, action=text,
                   sli=text, service=text, environment=text)  # fmt: skip


async def test_hostile_text_in_every_field_notifies_nobody_and_shows_as_written(
    slack: FakeSlack,
) -> None:
    """Mentions, `<>&` and a forged link in every field: no mention, no foreign link, the text
    shown verbatim, and the suspect's and the revert's links intact."""
    notice = _with_everywhere(make_notice(), HOSTILE)
    notifier = notifier_for(slack.url)
    try:
        await notifier.send(notice)
    finally:
        await notifier.aclose()

    (message,) = slack.messages
    rendered = [render(text) for text in mrkdwn_texts(message)]
    assert all(r.mentions == set() for r in rendered)
    links = [link for r in rendered for link in r.links]
    assert links == [
        (notice.suspects[0].url, f"#{notice.suspects[0].pr_number} {HOSTILE}"),
        (REVERT_URL, REVERT_URL),
    ]
    assert HOSTILE in rendered[0].text  # the fallback text, as a notification shows it
    assert all(HOSTILE in r.text for r in rendered[2:4])  # the suspects and the action


async def test_a_reply_is_shown_as_written(slack: FakeSlack) -> None:
    """A reply quoting an error with `<!here>` and `&` notifies nobody and reads as sent."""
    notifier = notifier_for(slack.url)
    text = "Fix step FAILED: GitHub said <!here> & 422 for <branch>"
    try:
        thread = await notifier.send(make_notice())
        await notifier.reply(thread, Reply("reply-fix-incident-7", "incident-7", text))
    finally:
        await notifier.aclose()

    reply = render(slack.messages[1].text)
    assert (reply.text, reply.mentions, reply.links) == (text, set(), [])


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a & b", "a &amp; b"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("&lt;", "&amp;lt;"),  # an entity typed by a person stays as typed
        ("plain", "plain"),
    ],
)
def test_escape_turns_slacks_three_control_characters_into_entities(raw: str, escaped: str) -> None:
    """`&` first, then `<` and `>`: the only characters mrkdwn reserves."""
    assert escape(raw) == escaped
    assert render(escape(raw)).text == raw


def test_a_link_keeps_its_url_and_label_whatever_they_hold() -> None:
    """A URL with `&` and a label with `>` and `|` still make one link to that URL."""
    url = "https://github.com/acme/shop/pulls?q=is:open&sort=updated"
    rendered = render(link(url, "#7 a > b"))
    assert rendered.links == [(url, "#7 a > b")]


def test_no_suspect_url_is_no_link() -> None:
    """A suspect without a URL (the PR is not on record) is shown as text, not as a link."""
    notice = make_notice()
    bare = replace(notice, suspects=(SuspectLine(9, "<!here> Tidy", "", "unknown", None, 0.5,
                                                 "r"),))  # fmt: skip
    (suspects,) = [b for b in render_blocks(bare) if "Suspects" in str(b)]
    shown = render(suspects["text"]["text"])
    assert (shown.links, shown.mentions) == ([], set())
    assert "#9 <!here> Tidy" in shown.text
