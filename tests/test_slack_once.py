"""`SlackNotifier` posts each notice, reply and file once: every retry looks before it posts,
the lookup pages however busy the channel or thread is, and a long Retry-After is handed back
instead of slept. Against `FakeSlack` on loopback with the real slack_sdk client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from rollback.notify import Delivery, NotifyRetryable, Reply, Upload
from rollback.slack import CLOCK_SKEW
from tests.acting_rig import Sleeps
from tests.fakes.slack import FakeSlack
from tests.test_slack_notifier import CHANNEL, make_notice, notifier_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class Clock:
    """Slack's clock for the fake, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(channels=[CHANNEL], clock=Clock(1_800_000_000.0)) as fake:
        yield fake


def _clock(slack: FakeSlack) -> Clock:
    assert isinstance(slack.clock, Clock)
    return slack.clock


async def _send_then_restart(slack: FakeSlack, between: int) -> tuple[Delivery, Delivery]:
    """Send a notice, let `between` people post, then send it again from a fresh notifier."""
    notice = replace(make_notice("notify-incident-7"), opened_at=_clock(slack).now)
    first_notifier, restarted = notifier_for(slack.url), notifier_for(slack.url)
    try:
        first = await first_notifier.send(notice)
        for i in range(between):
            _clock(slack).now += 1
            slack.post_as(CHANNEL, f"chatter {i}")
        second = await restarted.send(notice)
    finally:
        await first_notifier.aclose()
        await restarted.aclose()
    return first, second


@pytest.mark.parametrize("method", ["chat.postMessage", "files.completeUploadExternal"])
async def test_a_dropped_answer_after_the_work_is_found_by_the_retry(
    slack: FakeSlack, method: str
) -> None:
    """Slack posts (or shares the file), then the connection drops: the retry looks first, finds
    it, and nothing is posted twice."""
    notifier = notifier_for(slack.url)
    slack.drop_after_next(1, method=method)
    try:
        delivery = await notifier.send(make_notice())
        file_id = await notifier.upload(delivery, Upload("plot-7", "incident-7", "p.png", "p", PNG))
    finally:
        await notifier.aclose()

    assert [m.ts for m in slack.messages] == [delivery.ts]
    (file,) = [f for f in slack.files if f.share_ts]
    assert (file.id, file.thread_ts) == (file_id, delivery.ts)
    assert slack.calls.count(method) == 1


async def test_a_thousand_later_messages_do_not_hide_the_first(slack: FakeSlack) -> None:
    """A restarted notifier pages back through 1,000 newer messages and finds its post."""
    first, second = await _send_then_restart(slack, 1000)

    assert second == first
    assert [m.ts for m in slack.messages if m.user != "U0PERSON1"] == [first.ts]
    assert slack.calls.count("conversations.history") == 2 + 1000 // 100  # two lookups, paged


async def test_the_lookup_reads_no_further_back_than_the_incident(slack: FakeSlack) -> None:
    """A month of older chatter is not read: history is asked from CLOCK_SKEW before the
    incident opened."""
    for i in range(500):
        slack.post_as(CHANNEL, f"last month {i}")
        _clock(slack).now += 5000
    _clock(slack).now += CLOCK_SKEW + 1
    notifier = notifier_for(slack.url)
    try:
        await notifier.send(replace(make_notice(), opened_at=_clock(slack).now))
    finally:
        await notifier.aclose()

    assert slack.calls.count("conversations.history") == 1


async def test_a_busy_thread_keeps_one_reply_and_one_file(slack: FakeSlack) -> None:
    """After 250 people's replies in the thread, a restarted notifier finds its reply and its
    file instead of posting them again."""
    notifier, restarted = notifier_for(slack.url), notifier_for(slack.url)
    reply = Reply("reply-revert-incident-7", "incident-7", "Revert PR opened")
    upload = Upload("plot-incident-7", "incident-7", "incident-7-errors.png", "errors", PNG)
    try:
        thread = await notifier.send(make_notice())
        landed = await notifier.reply(thread, reply)
        file_id = await notifier.upload(thread, upload)
        for i in range(250):
            slack.post_as(CHANNEL, f"looking {i}", thread_ts=thread.ts)
        again = await restarted.reply(thread, reply)
        file_again = await restarted.upload(thread, upload)
    finally:
        await notifier.aclose()
        await restarted.aclose()

    assert (again, file_again) == (landed, file_id)
    assert [m.text for m in slack.messages if m.metadata] == [slack.messages[0].text, reply.text]
    assert len([f for f in slack.files if f.share_ts]) == 1


async def test_a_long_retry_after_is_handed_back_not_slept(slack: FakeSlack) -> None:
    """Retry-After: 120 over a cap of 5 s: NotifyRetryable(retry_after=120) at once, no sleep."""
    sleeps = Sleeps()
    notifier = notifier_for(slack.url, max_retry_after=5.0, sleep=sleeps)
    slack.rate_limit_next(10, retry_after=120, method="chat.postMessage")
    try:
        with pytest.raises(NotifyRetryable, match="rate limited for 120s") as caught:
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()

    assert caught.value.retry_after == 120
    assert sleeps.waits == []
    assert slack.calls.count("chat.postMessage") == 1


async def test_a_short_retry_after_is_waited_inline(slack: FakeSlack) -> None:
    """Retry-After: 2 under the cap: waited (with under a second of jitter), then posted once."""
    sleeps = Sleeps()
    notifier = notifier_for(slack.url, max_retry_after=5.0, sleep=sleeps)
    slack.rate_limit_next(1, retry_after=2, method="chat.postMessage")
    try:
        await notifier.send(make_notice())
    finally:
        await notifier.aclose()

    (wait,) = sleeps.waits
    assert 2 <= wait < 3
    assert len(slack.messages) == 1


async def test_rate_limited_for_the_whole_budget_keeps_slacks_retry_after(
    slack: FakeSlack,
) -> None:
    """429 on every attempt under the cap: NotifyRetryable still says how long Slack asked."""
    notifier = notifier_for(slack.url, max_retry_after=5.0, sleep=Sleeps())
    slack.rate_limit_next(10, retry_after=3, method="chat.postMessage")
    try:
        with pytest.raises(NotifyRetryable) as caught:
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()
    assert caught.value.retry_after == 3
