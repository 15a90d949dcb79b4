"""`SlackNotifier`: posts each rollback notice, reply and plot exactly once, to the service's
own channel or the default one; redraws an incident's first message in place (`amend`, with
`chat.update`); and the one rendering of a notice into Block Kit.

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
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from observer.retry import Sleep
from rollback.notify import (
    Amendment,
    Delivery,
    Notice,
    NotifyRejected,
    Reply,
    Upload,
    WarningNotice,
)
from rollback.slack_web import SlackWeb

EVENT_TYPE = "rearguard_notice"
CLOCK_SKEW = 900.0
"""Seconds of history read before the incident opened: Rearguard's clock may run ahead of
Slack's (which stamps each `ts`) by up to this much, and the message is still found."""


class SlackNotifier:
    """Posts each notice once to its service's channel (`channels`, service name -> channel ID),
    else to `channel` (a channel ID such as `C0123ABCD`)."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        channels: Mapping[str, str] | None = None,
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
        self._channels = {name: c for name, c in (channels or {}).items() if c}
        if bad := [c for c in self._channels.values() if c.startswith("#")]:
            raise ValueError(f"Slack channels must be conversation IDs, not {bad}")
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
        client, channel = self._web.client, self.channel_of(notice.service)
        return await self._post(message_payload(notice, channel), notice.key,
                                client.conversations_history, channel=channel,
                                oldest=f"{oldest:.6f}")  # fmt: skip

    async def warn(self, warning: WarningNotice) -> Delivery:
        """Post `warning` unless the channel already shows a message with its key."""
        oldest = max(warning.raised_at - CLOCK_SKEW, 0.0)
        client, channel = self._web.client, self.channel_of(warning.service)
        return await self._post(warning_payload(warning, channel), warning.key,
                                client.conversations_history, channel=channel,
                                oldest=f"{oldest:.6f}")  # fmt: skip

    def channel_of(self, service: str) -> str:
        """Where `service`'s notices go: its own channel, else the default one."""
        return self._channels.get(service, self._channel)

    async def amend(self, thread: Delivery, amendment: Amendment) -> None:
        """Redraw the message at `thread` with `amendment` (`chat.update` on its channel and
        ts): its blocks as Slack holds them, read back first, the status and buttons replaced."""
        client = self._web.client

        async def update() -> None:
            found = await client.conversations_history(
                channel=thread.channel, latest=thread.ts, oldest=thread.ts, inclusive=True,
                limit=1,
            )  # fmt: skip
            messages = [m for m in found.get("messages") or [] if m.get("ts") == thread.ts]
            if not messages:
                raise NotifyRejected(f"Slack message {thread.ts} is not in {thread.channel}")
            message = messages[0]
            blocks = amended_blocks(message.get("blocks") or [], amendment)
            text = str(message.get("text") or "")
            await client.chat_update(channel=thread.channel, ts=thread.ts, text=text, blocks=blocks)

        async with self._lock:
            await self._web.call("chat.update", update)

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


def offered(given: set[str], picked: bool) -> tuple[tuple[str, ...], bool]:
    """The buttons still offered once people gave the verdicts `given` (feedback kinds), and
    whether the "which PR caused it?" select is shown: each verdict's own button goes (no
    second Confirm), the others stay so that someone can disagree; the select follows a Wrong
    PR until someone has `picked` a PR in it."""
    buttons = tuple(a for a, (_, kind) in BUTTONS.items() if kind not in given)
    return buttons, "wrong_pr" in given and not picked


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
        feedback_actions(notice.incident_id, tuple(BUTTONS)),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"incident `{escape(notice.incident_id)}`"}],
        },
    ]


PICK = "rearguard_pick_culprit"
"""The action id of the "which PR was it?" select that a Wrong PR click brings up."""
FEEDBACK_BLOCK, STATUS_BLOCK = "rearguard_feedback", "rearguard_status"
MAX_OPTIONS, MAX_OPTION_TEXT = 100, 75  # Slack's limits for a static_select


def feedback_actions(
    incident_id: str, offer: tuple[str, ...], choices: tuple[tuple[int, str], ...] = ()
) -> dict[str, Any]:
    """The actions block: the buttons in `offer`, and a select of `choices` (PR number and
    title; the option's value is the number) when there are any."""
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": action_id, "value": incident_id,
         "text": {"type": "plain_text", "text": BUTTONS[action_id][0]}}
        for action_id in offer if action_id in BUTTONS
    ]  # fmt: skip
    if choices:
        options = [
            {"text": {"type": "plain_text", "text": _clip(f"#{number} {title}", MAX_OPTION_TEXT)},
             "value": str(number)}
            for number, title in choices[:MAX_OPTIONS]
        ]  # fmt: skip
        elements.append({
            "type": "static_select", "action_id": PICK, "options": options,
            "placeholder": {"type": "plain_text", "text": "Which PR caused it?"},
        })  # fmt: skip
    return {"type": "actions", "block_id": f"{FEEDBACK_BLOCK}:{incident_id}", "elements": elements}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def amended_blocks(blocks: list[dict[str, Any]], amendment: Amendment) -> list[dict[str, Any]]:
    """`blocks` (a first message as Slack holds it) with the feedback actions redrawn from
    `amendment` (dropped when nothing is left to offer) and a status section after them saying
    what people did; any earlier status is replaced, so amending twice gives the same blocks."""
    status = "\n".join(escape(line) for line in amendment.lines)
    actions = feedback_actions(amendment.incident_id, amendment.offer, amendment.choices)
    drawn: list[dict[str, Any]] = []
    if actions["elements"]:
        drawn.append(actions)
    if status:
        drawn.append({"type": "section", "block_id": STATUS_BLOCK,
                      "text": {"type": "mrkdwn", "text": status[:3000]}})  # fmt: skip
    out: list[dict[str, Any]] = []
    for block in blocks:
        block_id = str(block.get("block_id", ""))
        if block_id == STATUS_BLOCK:
            continue
        if block_id.startswith(FEEDBACK_BLOCK):
            out.extend(drawn)
            drawn = []
            continue
        out.append(block)
    return out + drawn


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


WARNING_TITLES = {
    "vanished": "SLI data vanished",
    "counters_reset": "Request counters reset",
    "traffic_drop": "Traffic dropped",
    "query_rejected": "SLI query rejected",
    "source_unavailable": "Metrics source unreachable",
    "no_series": "SLI query returns no series",
}


def warning_text(warning: WarningNotice) -> str:
    """A warning's fallback text, as mrkdwn (every part escaped)."""
    title = WARNING_TITLES.get(warning.reason, warning.reason)
    return escape(
        f"Rearguard warning: {warning.service}/{warning.environment} {title.lower()} on SLI "
        f"{warning.sli} (deploy {warning.deploy_sha[:10]}): {warning.detail}. "
        "Nothing is reverted on missing data."
    )


def warning_payload(warning: WarningNotice, channel: str) -> dict[str, Any]:
    """The exact `chat.postMessage` arguments for an early warning or a query failure: no
    buttons (there is no incident to confirm), the key in `metadata` like every other notice."""
    title = WARNING_TITLES.get(warning.reason, warning.reason)
    header = f"{title} in {warning.service} ({warning.environment})"  # plain_text: no markup
    body = (
        f"*SLI* `{escape(warning.sli)}` (deploy `{escape(warning.deploy_sha[:10])}`): "
        f"{escape(warning.detail)}\n*No action*: missing data never reverts anything."
    )
    return {
        "channel": channel,
        "text": warning_text(warning),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"warning `{escape(warning.reason)}`"}],
            },
        ],
        "metadata": {
            "event_type": EVENT_TYPE,
            "event_payload": {"key": warning.key, "warning": warning.reason},
        },
    }
