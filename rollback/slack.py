"""`SlackNotifier`: posts rollback notices to one Slack channel through slack_sdk's Web API client.

It owns the Slack edge: the `AsyncWebClient` and its aiohttp session, the retry policy, the
idempotency lookup, and the mapping of Slack's failures onto `notify.py`'s errors. Retries happen
in one place, `observer.retry.retry_inline` around each Web API call (slack_sdk's own retry
handlers are off), with the rules of slack_sdk's built-in handlers: 429 after `Retry-After` (plus
up to a second of jitter); 500/503 and dropped connections after `retry_interval`; one budget of
`max_retries` per call. `files_upload_v2`, three requests in slack_sdk, is retried as one call.
Whatever is left after that budget becomes `NotifyRetryable`; configuration problems
(`invalid_auth`, `channel_not_found`, `missing_scope`, ...) become `NotifyRejected`. No message
this module raises contains the token.

Idempotency: every post carries `metadata.event_payload.key`; before posting, the most recent
`HISTORY_WINDOW` messages of the channel are searched for that key, and a hit is returned as the
`Delivery` instead of a second post. That lookup needs a channel *ID* (`conversations.history`
refuses names) and the `channels:history` scope (`groups:history` for a private channel) beside
`chat:write`. Replies are found the same way in `conversations.replies` of their thread.

The first message's SLI plot is uploaded into its thread with `files_upload_v2` (`files:write`),
only when the message was posted now: an upload that still fails after its inline retries is
logged, not raised, so that the action's retry never posts a second message or a second plot.

Rendering lives here too, once: `message_payload` and `reply_payload` are the exact
`chat.postMessage` arguments (Block Kit from `render_blocks`, the fallback text from `render_text`,
the Confirm / False alarm / Wrong PR `BUTTONS`); `ConsoleNotifier` prints the same payloads.
Every text that reaches Slack as mrkdwn goes through `escape` (`&`, `<`, `>` as Slack's
entities): PR titles, agents, reasons, replies. Only Rearguard's own links (`link`) and
formatting stay markup, so a title such as `Stop paging <!channel>` notifies nobody.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from observer.retry import retry_inline
from rollback.notify import Delivery, Notice, NotifyError, NotifyRejected, NotifyRetryable, Reply

log = logging.getLogger(__name__)

# How many recent channel messages the idempotency lookup reads (one page of history).
HISTORY_WINDOW = 100
EVENT_TYPE = "rearguard_notice"
# Slack's own "try again later" error codes, whatever the HTTP status says.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "request_timeout", "service_unavailable", "fatal_error", "internal_error"}
)
_HTTP_TOO_MANY = 429
_HTTP_SERVER_ERROR = 500
# What slack_sdk's built-in handlers retry: these statuses, and these dropped connections.
_RETRIED_STATUSES = frozenset({500, 503})
_RETRIED_CONNECTIONS = (
    aiohttp.ServerConnectionError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,  # [Errno 104] Connection reset by peer
)


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
    ) -> None:
        """`retry_interval` paces 5xx and connection retries (slack_sdk's backoff by default);
        429 retries always wait what Slack's `Retry-After` says."""
        if not token:
            raise ValueError("Slack token is empty")
        if not channel or channel.startswith("#"):
            raise ValueError(
                f"Slack channel must be a conversation ID such as C0123ABCD, not {channel!r}: "
                "conversations.history (the idempotency lookup) accepts only IDs"
            )
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._token = token
        self._channel = channel
        self._base_url = base_url
        self._timeout = timeout
        self._max_retries = max_retries
        self._interval = retry_interval or BackoffRetryIntervalCalculator()
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        # One send at a time: lookup-then-post must not interleave for the same key, and Slack
        # allows about one message per second per channel anyway.
        self._lock = asyncio.Lock()

    async def send(self, notice: Notice) -> Delivery:
        """Post `notice` unless the channel already shows a message with its key."""
        payload = message_payload(notice, self._channel)
        async with self._lock:
            existing = await self._find(notice.key)
            if existing is not None:
                return existing
            client = self._web()
            post = partial(client.chat_postMessage, **payload)
            response = await self._call("chat.postMessage", post)
            delivery = Delivery(channel=str(response["channel"]), ts=str(response["ts"]))
            if notice.plot_png:
                await self._upload_plot(delivery, notice)
        return delivery

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        """Post `reply` in `thread` unless the thread already holds a reply with its key."""
        async with self._lock:
            client = self._web()
            replies = await self._call(
                "conversations.replies",
                partial(
                    client.conversations_replies,
                    channel=thread.channel, ts=thread.ts, include_all_metadata=True,
                    limit=HISTORY_WINDOW,
                ),
            )  # fmt: skip
            for message in replies.get("messages") or []:
                if _notice_key(message) == reply.key:
                    return Delivery(channel=thread.channel, ts=str(message["ts"]))
            payload = reply_payload(reply, thread.channel, thread.ts)
            post = partial(client.chat_postMessage, **payload)
            response = await self._call("chat.postMessage", post)
        return Delivery(channel=str(response["channel"]), ts=str(response["ts"]))

    async def _upload_plot(self, delivery: Delivery, notice: Notice) -> None:
        """Upload the SLI plot into the new message's thread; a failure is logged, not raised."""
        assert notice.plot_png is not None
        upload = partial(
            self._web().files_upload_v2,
            channel=delivery.channel, thread_ts=delivery.ts, file=notice.plot_png,
            filename=f"{notice.incident_id}-{notice.sli}.png",
            title=f"{notice.service} {notice.sli} around deploy {notice.deploy_sha[:10]}",
        )  # fmt: skip
        try:
            await self._call("files_upload_v2", upload)
        except NotifyError as exc:
            log.warning("SLI plot for %s not uploaded: %s", notice.incident_id, exc)

    async def aclose(self) -> None:
        """Close the HTTP session (safe to call twice, or before any send)."""
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None

    async def _find(self, key: str) -> Delivery | None:
        """The delivery of an earlier post of `key` among the channel's recent messages."""
        client = self._web()
        history = await self._call(
            "conversations.history",
            partial(
                client.conversations_history,
                channel=self._channel,
                limit=HISTORY_WINDOW,
                include_all_metadata=True,
            ),
        )
        for message in history.get("messages") or []:
            if _notice_key(message) == key:
                return Delivery(channel=self._channel, ts=str(message["ts"]))
        return None

    def _web(self) -> AsyncWebClient:
        """The client, built on first use so its session belongs to the running loop."""
        if self._client is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                session=self._session,
                retry_handlers=[],  # `_call` retries, through `retry_inline`
            )
            # slack_sdk reads HTTPS_PROXY from the environment (ignoring NO_PROXY); settings
            # come from config only, so no ambient proxy.
            self._client.proxy = None
        return self._client

    async def _call(
        self, method: str, call: Callable[[], Awaitable[AsyncSlackResponse]]
    ) -> AsyncSlackResponse:
        """Await one Web API call with retries, mapping every failure onto `NotifyError`."""
        try:
            return await retry_inline(call, self._classify, attempts=self._max_retries + 1)
        except SlackApiError as exc:
            raise self._api_error(method, exc) from exc
        except SlackClientError as exc:
            raise NotifyRejected(self._redact(f"Slack {method} request invalid: {exc}")) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise NotifyRetryable(
                self._redact(f"Slack {method} unreachable after retries ({detail})")
            ) from exc

    def _classify(self, exc: Exception, attempt: int) -> float | None:
        """The wait slack_sdk's built-in handlers would take before retrying; None: no retry."""
        if attempt > self._max_retries:  # the budget is spent: the interval is not asked
            return None
        # A body that is not JSON leaves aiohttp's response in the error: never retried.
        response = exc.response if isinstance(exc, SlackApiError) else None
        status = response.status_code if isinstance(response, AsyncSlackResponse) else None
        if status == _HTTP_TOO_MANY:
            asked = response.headers.get("Retry-After") if response is not None else None
            # Jitter, not a secret: S311 is about cryptography.
            return (int(asked) if asked is not None else 1) + random.random()  # noqa: S311
        if status in _RETRIED_STATUSES or isinstance(exc, _RETRIED_CONNECTIONS):
            return self._interval.calculate_sleep_duration(attempt - 1)
        return None

    def _api_error(self, method: str, exc: SlackApiError) -> NotifyError:
        """Classify a Slack answer: transient (429, 5xx, Slack's retry codes) or a rejection."""
        response = exc.response
        # An AsyncSlackResponse has `status_code`; an unparseable body leaves aiohttp's `status`.
        status: int = getattr(response, "status_code", 0) or getattr(response, "status", 0)
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        reason = str(error) if error else f"HTTP {status}"
        if status == _HTTP_TOO_MANY or status >= _HTTP_SERVER_ERROR or error in _TRANSIENT_ERRORS:
            return NotifyRetryable(self._redact(f"Slack {method} failed after retries: {reason}"))
        hint = {
            "invalid_auth": " (check the bot token)",
            "not_authed": " (no token sent)",
            "channel_not_found": f" (is {self._channel} a channel ID the bot can see?)",
            "not_in_channel": f" (invite the bot to {self._channel})",
            "missing_scope": " (the bot needs chat:write and channels:history)",
        }.get(str(error), "")
        return NotifyRejected(self._redact(f"Slack {method} rejected: {reason}{hint}"))

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***")


def _notice_key(message: Any) -> object:
    """The Rearguard idempotency key a history message carries, if any."""
    if not isinstance(message, dict):
        return None
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
