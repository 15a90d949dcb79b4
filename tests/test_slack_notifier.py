"""Behaviour of `SlackNotifier` and `ConsoleNotifier` against `FakeSlack` on loopback."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pytest_aiohttp.plugin import AiohttpServer
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from rollback.console import ConsoleNotifier
from rollback.notify import (
    Notice,
    NotifyError,
    NotifyRejected,
    NotifyRetryable,
    SuspectLine,
)
from rollback.slack import SlackNotifier, message_payload
from tests.fakes.slack import TOKEN, FakeSlack
from tests.shared_fixtures import load_json

CHANNEL = "C0ROLLBACK"
REVERT_URL = "https://github.com/acme/shop/pull/4242"


def make_notice(key: str = "incident-7:notify") -> Notice:
    return Notice(
        key=key,
        incident_id="incident-7",
        service="checkout",
        environment="production",
        deploy_sha="9f3c2a1b7e6d5c4b3a2918",
        sli="http_error_ratio",
        baseline_value=0.001,
        watch_value=0.052,
        unit="ratio",
        verdict_reason="error ratio above 5x baseline for 3 windows",
        suspects=(
            SuspectLine(
                pr_number=4217,
                title="Cache cart totals",
                url="https://github.com/acme/shop/pull/4217",
                agent="claude-code",
                agent_session="sess-01HZX7",
                probability=0.91,
                reason="touches checkout/cart.py on the failing path",
            ),
        ),
        ambiguous=False,
        action="opened revert PR #4242",
        action_url=REVERT_URL,
        mode="auto",
        opened_at=time.time(),
    )


@pytest.fixture
async def slack(aiohttp_server: AiohttpServer) -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(channels=[CHANNEL])
    fake.attach(await aiohttp_server(fake.app))
    yield fake
    await fake.close()


def notifier_for(
    url: str, *, token: str = TOKEN, channel: str = CHANNEL, **kwargs: Any
) -> SlackNotifier:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("retry_interval", FixedValueRetryIntervalCalculator(0.01))
    return SlackNotifier(token, channel, base_url=url, **kwargs)


@pytest.fixture
async def notifier(slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    notifier = notifier_for(slack.url)
    yield notifier
    await notifier.aclose()


def block_text(blocks: list[dict[str, Any]] | None) -> str:
    """All visible text in a list of blocks, for "does the message name X" assertions."""
    return json.dumps(blocks, ensure_ascii=False)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


async def test_notice_posts_one_message_naming_pr_session_slis_and_revert(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    """One send posts one message whose text and blocks carry what a responder needs."""
    delivery = await notifier.send(make_notice())

    assert len(slack.messages) == 1
    message = slack.messages[0]
    assert (delivery.channel, delivery.ts) == (CHANNEL, message.ts)
    blocks = block_text(message.blocks)
    for needle in ("#4217", "0.10%", "5.20%", REVERT_URL):
        assert needle in message.text
        assert needle in blocks
    assert "sess-01HZX7" in blocks
    assert message.metadata == {
        "event_type": "rearguard_notice",
        "event_payload": {"key": "incident-7:notify", "incident_id": "incident-7"},
    }


async def test_same_notice_twice_leaves_one_message(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    """A resend, even from a fresh notifier (a restarted process), finds the first post."""
    first = await notifier.send(make_notice())
    restarted = notifier_for(slack.url)
    try:
        second = await restarted.send(make_notice())
    finally:
        await restarted.aclose()

    assert second == first
    assert len(slack.messages) == 1
    assert slack.calls.count("chat.postMessage") == 1


async def test_different_notices_each_post(slack: FakeSlack, notifier: SlackNotifier) -> None:
    """The idempotency lookup matches the key, not any earlier Rearguard message."""
    first = await notifier.send(make_notice("incident-7:notify"))
    second = await notifier.send(make_notice("incident-7:reverted"))

    assert first.ts != second.ts
    assert [m.metadata["event_payload"]["key"] for m in slack.messages if m.metadata] == [
        "incident-7:notify",
        "incident-7:reverted",
    ]


async def test_rate_limited_then_ok_posts_one_message(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    """A 429 with Retry-After is waited out by slack_sdk's handler, then the post lands once."""
    slack.rate_limit_next(1, retry_after=1, method="chat.postMessage")

    delivery = await notifier.send(make_notice())

    assert slack.calls.count("chat.postMessage") == 2
    assert [m.ts for m in slack.messages] == [delivery.ts]


@pytest.mark.parametrize(
    ("status", "attempts"),
    [
        (500, 3),  # slack_sdk retries 500 and 503: first try + max_retries
        (503, 3),
        (502, 1),  # not retried by slack_sdk; still retryable for the caller
    ],
)
async def test_server_errors_for_whole_budget_are_retryable_without_token(
    slack: FakeSlack, notifier: SlackNotifier, status: int, attempts: int
) -> None:
    """5xx on every attempt surfaces as NotifyRetryable whose messages never show the token."""
    slack.fail_next(10, status=status, method="chat.postMessage")

    with pytest.raises(NotifyRetryable) as caught:
        await notifier.send(make_notice())

    assert slack.calls.count("chat.postMessage") == attempts
    assert slack.messages == []
    assert f"HTTP {status}" in str(caught.value)
    for exc in exception_chain(caught.value):
        assert TOKEN not in str(exc)


async def test_bad_token_is_rejected_without_retry(slack: FakeSlack) -> None:
    """invalid_auth is a configuration problem: rejected at once, token redacted."""
    bad_token = "xoxb-1111-not-the-right-one"
    notifier = notifier_for(slack.url, token=bad_token)
    try:
        with pytest.raises(NotifyRejected, match="invalid_auth") as caught:
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()

    assert len(slack.calls) == 1
    assert slack.messages == []
    for exc in exception_chain(caught.value):
        assert bad_token not in str(exc)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, "channel_not_found", NotifyRejected),
        (200, "not_in_channel", NotifyRejected),
        (200, "missing_scope", NotifyRejected),
        (200, "invalid_blocks", NotifyRejected),
        (200, "not_authed", NotifyRejected),
        (200, "internal_error", NotifyRetryable),
        (200, "request_timeout", NotifyRetryable),
        (429, "ratelimited", NotifyRetryable),
        (500, "fatal_error", NotifyRetryable),
        (503, "service_unavailable", NotifyRetryable),
        (504, None, NotifyRetryable),
    ],
)
async def test_slack_answer_maps_to_retryable_or_rejected(
    slack: FakeSlack, status: int, error: str | None, expected: type[NotifyError]
) -> None:
    """Each Slack answer, once retries are spent, becomes the one error the loop acts on."""
    slack.fail_next(1, status=status, error=error, method="chat.postMessage")
    notifier = notifier_for(slack.url, max_retries=0)
    try:
        with pytest.raises(NotifyError) as caught:
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()

    assert type(caught.value) is expected
    assert (error or f"HTTP {status}") in str(caught.value)


async def test_unknown_channel_is_rejected(slack: FakeSlack) -> None:
    """A channel the workspace does not have is rejected with a hint, not retried."""
    notifier = notifier_for(slack.url, channel="C0NOWHERE")
    try:
        with pytest.raises(NotifyRejected, match="channel_not_found"):
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()
    assert slack.calls == ["conversations.history"]


async def test_slow_slack_times_out_as_retryable(slack: FakeSlack) -> None:
    """An answer slower than `timeout` is NotifyRetryable, and nothing is posted twice."""
    slack.delay(1.0)
    notifier = notifier_for(slack.url, timeout=0.2)
    try:
        with pytest.raises(NotifyRetryable, match="unreachable"):
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()
    assert slack.messages == []


async def test_connection_refused_is_retryable_after_retries() -> None:
    """Nothing listening: slack_sdk retries the connection, then NotifyRetryable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = notifier_for(f"http://127.0.0.1:{port}/api/")
    try:
        with pytest.raises(NotifyRetryable, match="unreachable") as caught:
            await notifier.send(make_notice())
    finally:
        await notifier.aclose()
    assert TOKEN not in str(caught.value)


def test_channel_name_is_refused() -> None:
    """A `#name` would post but fail the history lookup, so it is refused up front."""
    with pytest.raises(ValueError, match="conversation ID"):
        SlackNotifier(TOKEN, "#rollbacks")


async def test_console_prints_the_payload_slack_received(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    """The console shows one readable line, then exactly what chat.postMessage carried."""
    notice = make_notice()
    out = io.StringIO()

    console_delivery = await ConsoleNotifier(out, channel=CHANNEL).send(notice)
    await notifier.send(notice)

    headline, _, body = out.getvalue().partition("\n")
    assert "#4217" in headline
    printed = json.loads(body)
    posted = slack.messages[0]
    assert printed == {
        "channel": posted.channel,
        "text": posted.text,
        "blocks": posted.blocks,
        "metadata": posted.metadata,
    }
    assert printed == message_payload(notice, CHANNEL)
    assert console_delivery == await ConsoleNotifier(io.StringIO(), channel=CHANNEL).send(notice)


async def test_fake_answers_like_slack_for_a_real_block_kit_message(slack: FakeSlack) -> None:
    """FakeSlack stores a real Slack sample as sent and serves history newest first, with
    metadata only when asked and block_ids filled in as Slack does."""
    sample = load_json("slack/java-slack-sdk/action_response.message1.json")
    client = AsyncWebClient(token=TOKEN, base_url=slack.url)
    await client.chat_postMessage(channel=CHANNEL, text="first")
    posted = await client.chat_postMessage(
        channel=CHANNEL,
        text=sample["text"],
        blocks=sample["blocks"],
        metadata={"event_type": "rearguard_notice", "event_payload": {"key": "k"}},
    )
    await client.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=posted["ts"])
    updated = await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="edited")

    plain = await client.conversations_history(channel=CHANNEL)
    rich = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)

    assert posted["message"]["blocks"][0]["block_id"]
    assert slack.messages[1].blocks == sample["blocks"]
    assert updated["message"]["text"] == "edited"
    assert [m["text"] for m in plain["messages"]] == ["edited", "first"]
    assert "metadata" not in plain["messages"][0]
    assert rich["messages"][0]["metadata"]["event_payload"] == {"key": "k"}
    assert (await client.auth_test())["bot_id"]
