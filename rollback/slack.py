"""`SlackNotifier`: posts each rollback notice, reply and plot to one Slack channel exactly once;
and the one rendering of a notice into Block Kit.

The notifier owns what makes a post idempotent; `rollback.slack_web.SlackWeb` owns the calls,
their retries and their errors. Every post carries `metadata.event_payload.key`, and every
attempt to post, the retries of a lost answer included, first looks for that key: a first message
in the channel's history back to CLOCK_SKEW before its incident opened (`Notice.opened_at`),
page after page, however many messages came since; a reply among its thread's replies; a file
by its name among the files shared into the thread. A hit is returned instead of a second post.
That lookup needs a channel *ID* (`conversations.history` refuses names) and the
`channels:history` scope (`groups:history` for a private channel) beside `chat:write`;
uploads need `files:write`.

Rendering lives here too, once: `message_payload` and `reply_payload` are the exact
`chat.postMessage` arguments (Block Kit from `render_blocks`, the fallback text from `render_text`,
the Confirm / False alarm / Wrong PR `BUTTONS`); `ConsoleNotifier` prints the same payloads.
Every text that reaches Slack as mrkdwn goes through `escape` (`&`, `<`, `>` as Slack's
entities): PR titles, agents, reasons, replies. Only Rearguard's own links (`link`) and
formatting stay markup, so a title such as `Stop paging <!channel>` notifies nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from observer.retry import Sleep
from rollback.notify import Delivery, Notice, Reply, Upload
from rollback.slack_web import SlackWeb

EVENT_TYPE = "rearguard_notice"
CLOCK_SKEW = 900.0
"""Seconds of history read before the incident opened: Rearguard's clock may run ahead of
Slack's (which stamps each `ts`) by up to this much, and the message is still found."""


class SlackNotifier:
    """Posts each notice once to `channel` (a channel ID such as `C0123ABCD`)."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = "https://slack.com/api/",
        timeout: float = 10.0,
        max_retries: int = 3,
        retry_interval: RetryIntervalCalculator | None = None,
        max_retry_after: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`retry_interval` paces 5xx and connection retries (slack_sdk's backoff by default);
        429 retries wait what Slack's `Retry-After` says, up to `max_retry_after`; a longer one
        is handed back as `NotifyRetryable.retry_after`."""
        if not channel or channel.startswith("#"):
            raise ValueError(
                f"Slack channel must be a conversation ID such as C0123ABCD, not {channel!r}: "
                "conversations.history (the idempotency lookup) accepts only IDs"
            )
        self._channel = channel
        self._web = SlackWeb(
            token, channel, base_url=base_url, timeout=timeout, max_retries=max_retries,
            retry_interval=retry_interval, max_retry_after=max_retry_after, sleep=sleep,
        )  # fmt: skip
        # One post at a time: look-then-post must not interleave for the same key, and Slack
        # allows about one message per second per channel anyway.
        self._lock = asyncio.Lock()

    async def send(self, notice: Notice) -> Delivery:
        """Post `notice` unless the channel already shows a message with its key."""
        oldest = max(notice.opened_at - CLOCK_SKEW, 0.0)
        client = self._web.client
        return await self._post(message_payload(notice, self._channel), notice.key,
                                client.conversations_history, channel=self._channel,
                                oldest=f"{oldest:.6f}")  # fmt: skip

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        """Post `reply` in `thread` unless the thread already holds a reply with its key."""
        client = self._web.client
        return await self._post(reply_payload(reply, thread.channel, thread.ts), reply.key,
                                client.conversations_replies, channel=thread.channel,
                                ts=thread.ts)  # fmt: skip

    async def _post(
        self,
        payload: dict[str, Any],
        key: str,
        read: Callable[..., Awaitable[AsyncSlackResponse]],
        **where: str,
    ) -> Delivery:
        """`chat.postMessage(**payload)` unless `read(**where)` (history or a thread's replies)
        already holds a message carrying `key`."""
        client = self._web.client

        def match(message: dict[str, Any]) -> Delivery | None:
            hit = _notice_key(message) == key
            return Delivery(channel=str(payload["channel"]), ts=str(message["ts"])) if hit else None

        async def post() -> Delivery:
            response = await client.chat_postMessage(**payload)
            return Delivery(channel=str(response["channel"]), ts=str(response["ts"]))

        async with self._lock:
            return await self._web.once(
                "chat.postMessage", partial(self._web.find, read, match, **where), post
            )

    async def upload(self, thread: Delivery, upload: Upload) -> str:
        """Share `upload` in `thread` unless a file of its name is shared there; the file ID.

        `files_upload_v2` is three requests (an upload URL, the bytes, the completion that
        shares the file); they are retried as one, each time after looking in the thread.
        """
        client = self._web.client

        def match(message: dict[str, Any]) -> str | None:
            for file in message.get("files") or []:
                if isinstance(file, dict) and file.get("name") == upload.filename:
                    return str(file.get("id"))
            return None

        find = partial(self._web.find, client.conversations_replies, match,
                       channel=thread.channel, ts=thread.ts)  # fmt: skip

        async def post() -> str:
            response = await client.files_upload_v2(
                channel=thread.channel, thread_ts=thread.ts, file=upload.data,
                filename=upload.filename, title=upload.title,
            )  # fmt: skip
            files = response.get("files") or [{}]
            return str(files[0].get("id"))

        async with self._lock:
            return await self._web.once("files_upload_v2", find, post)

    async def aclose(self) -> None:
        """Close the HTTP session (safe to call twice, or before any send)."""
        await self._web.aclose()


def _notice_key(message: dict[str, Any]) -> object:
    """The Rearguard idempotency key a history message carries, if any."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    return payload.get("key") if isinstance(payload, dict) else None


# -- Block Kit: the one rendering of a notice (the console prints the same payloads) ---------

# Button action ids -> the feedback kind they record (attribution learns from these).
BUTTONS = {
    "rearguard_confirm": ("Confirm", "confirmed"),
    "rearguard_false_alarm": ("False alarm", "false_alarm"),
    "rearguard_wrong_pr": ("Wrong PR", "wrong_pr"),
}


def escape(text: object) -> str:
    """`text` shown literally in mrkdwn: Slack's three control characters as its entities
    (`&` first, so the others' entities stay intact)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A mrkdwn link to `url` showing `label`, both escaped (Slack decodes them back)."""
    return f"<{escape(url)}|{escape(label)}>"


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    return f"{value:.4g}{unit and ' ' + unit}"


def render_text(notice: Notice) -> str:
    """The fallback text Slack requires beside blocks (and shows in notifications), as mrkdwn."""
    culprit = notice.suspects[0] if notice.suspects and not notice.ambiguous else None
    who = f"PR #{culprit.pr_number} ({culprit.agent})" if culprit else "the whole deploy range"
    return escape(
        f"Rearguard: {notice.service}/{notice.environment} regressed on {notice.sli} "
        f"({_fmt(notice.baseline_value, notice.unit)} -> {_fmt(notice.watch_value, notice.unit)}) "
        f"after deploy {notice.deploy_sha[:10]}; suspect: {who}; {notice.action}"
        + (f": {notice.action_url}" if notice.action_url else "")
    )


def render_blocks(notice: Notice) -> list[dict[str, Any]]:
    """Block Kit for one incident notice (header, SLI values, suspects, action)."""
    header = f"Regression in {notice.service} ({notice.environment})"  # plain_text: no markup
    sli = (
        f"*SLI* `{escape(notice.sli)}`: {_fmt(notice.baseline_value, notice.unit)} before → "
        f"*{_fmt(notice.watch_value, notice.unit)}* after deploy `{escape(notice.deploy_sha[:10])}`"
        f"\n{escape(notice.verdict_reason)}"
    )
    lines = []
    for s in notice.suspects[:5]:
        session = f", session `{escape(s.agent_session)}`" if s.agent_session else ""
        label = f"#{s.pr_number} {s.title}"
        pr = link(s.url, label) if s.url else escape(label)
        lines.append(
            f"• {pr} by *{escape(s.agent)}*{session} (p={s.probability:.2f}): {escape(s.reason)}"
            + (f"\n    _{escape(s.provenance)}_" if s.provenance else "")
        )
    suspects = (
        "*Suspects (ambiguous: reverting the range)*\n" if notice.ambiguous else "*Suspects*\n"
    ) + ("\n".join(lines) or "none recorded")
    action = f"*Action* ({escape(notice.mode)} mode): {escape(notice.action)}"
    if notice.action_url:
        action += f"\n{link(notice.action_url, notice.action_url)}"
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": sli}},
        {"type": "section", "text": {"type": "mrkdwn", "text": suspects[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": action}},
        {
            "type": "actions",
            "block_id": f"rearguard_feedback:{notice.incident_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "value": notice.incident_id,
                    "text": {"type": "plain_text", "text": label},
                }
                for action_id, (label, _) in BUTTONS.items()
            ],
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"incident `{escape(notice.incident_id)}`"}],
        },
    ]


def reply_payload(reply: Reply, channel: str, thread_ts: str) -> dict[str, Any]:
    """The exact `chat.postMessage` arguments for a reply in an incident's thread (its text is
    plain text, escaped)."""
    return {
        "channel": channel,
        "thread_ts": thread_ts,
        "text": escape(reply.text),
        "metadata": {
            "event_type": EVENT_TYPE,
            "event_payload": {"key": reply.key, "incident_id": reply.incident_id},
        },
    }


def message_payload(notice: Notice, channel: str) -> dict[str, Any]:
    """The exact `chat.postMessage` arguments for `notice`; the console notifier prints these.

    `metadata` carries the idempotency key so a retry can find a message that was already posted.
    """
    return {
        "channel": channel,
        "text": render_text(notice),
        "blocks": render_blocks(notice),
        "metadata": {
            "event_type": EVENT_TYPE,
            "event_payload": {"key": notice.key, "incident_id": notice.incident_id},
        },
    }
