"""`FakeSlack` answers like Slack where the notifier depends on it: cursor paging of history and
replies, `oldest`/`latest`, answers lost after the work was done, and how mrkdwn is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import TOKEN, FakeSlack
from tests.fakes.slack_messages import render

CHANNEL = "C0PAGING"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels=[CHANNEL]) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack.url, session=session, retry_handlers=[])


async def test_history_pages_by_cursor_newest_first(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """250 messages: 100 by default, a next_cursor while has_more, every message exactly once."""
    posted = [slack.post_as(CHANNEL, f"m{i}") for i in range(250)]

    first = await client.conversations_history(channel=CHANNEL)
    # slack_sdk's iteration reuses one response object: read each page as it comes.
    pages = [dict(page.data) async for page in await client.conversations_history(channel=CHANNEL)]

    assert len(first["messages"]) == 100
    assert first["has_more"] is True
    assert first["response_metadata"]["next_cursor"]
    assert [len(p["messages"]) for p in pages] == [100, 100, 50]
    assert pages[-1]["has_more"] is False
    assert "response_metadata" not in pages[-1]
    seen = [m["text"] for p in pages for m in p["messages"]]
    assert seen == [m.text for m in reversed(posted)]


async def test_history_honours_oldest_latest_inclusive_and_limit(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """`oldest`/`latest` bound the range (exclusive unless inclusive); `limit` caps at 999."""
    posted = [slack.post_as(CHANNEL, f"m{i}") for i in range(10)]

    after = await client.conversations_history(channel=CHANNEL, oldest=posted[6].ts)
    within = await client.conversations_history(
        channel=CHANNEL, oldest=posted[2].ts, latest=posted[4].ts, inclusive=True
    )
    huge = await client.conversations_history(channel=CHANNEL, limit=5000)

    assert [m["text"] for m in after["messages"]] == ["m9", "m8", "m7"]
    assert [m["text"] for m in within["messages"]] == ["m4", "m3", "m2"]
    assert len(huge["messages"]) == 10
    with pytest.raises(SlackApiError, match="invalid_cursor"):
        await client.conversations_history(channel=CHANNEL, cursor="not-a-cursor")


async def test_replies_page_oldest_first_and_show_shared_files(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """A thread pages oldest first from its parent; a file shared into it shows as a message."""
    parent = await client.chat_postMessage(channel=CHANNEL, text="incident")
    for i in range(5):
        slack.post_as(CHANNEL, f"r{i}", thread_ts=parent["ts"])
    await client.files_upload_v2(channel=CHANNEL, thread_ts=parent["ts"], file=b"\x89PNG",
                                 filename="plot.png", title="plot")  # fmt: skip

    replies = await client.conversations_replies(channel=CHANNEL, ts=parent["ts"], limit=3)
    pages = [dict(p.data) async for p in replies]

    messages = [m for p in pages for m in p["messages"]]
    assert [len(p["messages"]) for p in pages] == [3, 3, 1]
    assert [m["text"] for m in messages[:6]] == ["incident", "r0", "r1", "r2", "r3", "r4"]
    assert [f["name"] for f in messages[-1]["files"]] == ["plot.png"]
    history = await client.conversations_history(channel=CHANNEL)
    assert [m["text"] for m in history["messages"]] == ["incident"]


async def test_answers_lost_after_the_work_was_done(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    """`fail_after_next` posts then answers 503; `drop_after_next` posts then hangs up."""
    slack.fail_after_next(1, 503, method="chat.postMessage")
    slack.drop_after_next(1, method="chat.postMessage")

    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel=CHANNEL, text="one")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_postMessage(channel=CHANNEL, text="two")

    assert failed.value.response.status_code == 503
    assert [m.text for m in slack.messages] == ["one", "two"]


@pytest.mark.parametrize(
    ("mrkdwn", "shown", "links", "mentions"),
    [
        ("Stop paging <!channel> now", "Stop paging !channel now", [], {"!channel"}),
        ("Stop paging &lt;!channel&gt; now", "Stop paging <!channel> now", [], set()),
        ("<https://x/1|#1 Fix <Money> totals>", "<https://x/1|#1 Fix Money totals>",
         [("Money", "Money")], set()),  # the title's `<Money>` broke the link
        ("<https://x/1|#1 Stop <!channel> pages>", "<https://x/1|#1 Stop !channel pages>", [],
         {"!channel"}),
        ("<https://x/1|#1 Fix &lt;Money&gt; &amp; tax>", "#1 Fix <Money> & tax",
         [("https://x/1", "#1 Fix <Money> & tax")], set()),
        ("cc <@U123> <!subteam^S1|@oncall>", "cc @U123 @oncall", [], {"@U123", "!subteam"}),
    ],
)  # fmt: skip
def test_mrkdwn_is_read_as_slack_reads_it(
    mrkdwn: str, shown: str, links: list[tuple[str, str]], mentions: set[str]
) -> None:
    """Control sequences become links and mentions; entities are the only literal `<>&`."""
    rendered = render(mrkdwn)
    assert (rendered.text, rendered.links, rendered.mentions) == (shown, links, mentions)
