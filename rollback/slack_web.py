"""`SlackWeb`: Rearguard's one way of calling Slack's Web API, with its retry policy and errors.

It owns slack_sdk's `AsyncWebClient` and its aiohttp session, and every retry. slack_sdk's own
retry handlers are off: they resend `chat.postMessage` and `files_upload_v2`, which are not
idempotent, without looking first, so an answer lost after Slack posted (a 5xx or a dropped
connection on the way back) gave two messages. Here a write goes through `once(find, post)`:
every attempt, the retries too, runs `find` first and posts only when it finds nothing.

Retries follow slack_sdk's built-in handlers, through `observer.retry.retry_inline`, one budget of
`max_retries` per operation::

    429, Retry-After <= max_retry_after   -> wait it (plus up to 1 s of jitter), retry  ┐
    429, Retry-After >  max_retry_after   -> NotifyRetryable(retry_after) at once       │ Notify-
    500, 503, dropped or reset connection -> wait `retry_interval`, retry               │ Retryable
    other 5xx, Slack's transient codes    -> NotifyRetryable at once (the loop retries) ┘ if spent
    invalid_auth, channel_not_found, ...  -> NotifyRejected (a configuration problem)

A long `Retry-After` is never slept inside a Watch step: the loop comes back after it. No message
raised here contains the token.

Reads page: `find` follows `response_metadata.next_cursor` through `conversations.history`
or `conversations.replies` (slack_sdk's own cursor iteration), `PAGE` messages a request.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from observer.retry import Sleep, retry_inline
from rollback.notify import NotifyError, NotifyRejected, NotifyRetryable

T = TypeVar("T")

PAGE = 100
"""Messages per history or replies request: Slack's default page, well under its 999 maximum
(internal apps; apps sold outside the Marketplace get 15 a page and one request a minute)."""

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


class SlackWeb:
    """The Web API client for one bot token, posting to `channel` (named in error hints)."""

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str,
        timeout: float,
        max_retries: int,
        retry_interval: RetryIntervalCalculator | None,
        max_retry_after: float,
        sleep: Sleep,
    ) -> None:
        if not token:
            raise ValueError("Slack token is empty")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._token = token
        self._channel = channel
        self._base_url = base_url
        self._timeout = timeout
        self._max_retries = max_retries
        self._interval = retry_interval or BackoffRetryIntervalCalculator()
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None

    @property
    def client(self) -> AsyncWebClient:
        """The client, built on first use so its session belongs to the running loop."""
        if self._client is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                session=self._session,
                retry_handlers=[],  # `call` retries, through `retry_inline`
            )
            # slack_sdk reads HTTPS_PROXY from the environment (ignoring NO_PROXY); settings
            # come from config only, so no ambient proxy.
            self._client.proxy = None
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP session (safe to call twice, or before any call)."""
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._client = None

    async def once(
        self,
        what: str,
        find: Callable[[], Awaitable[T | None]],
        post: Callable[[], Awaitable[T]],
    ) -> T:
        """`post` unless `find` finds it done; every retry looks again before posting."""

        async def attempt() -> T:
            found = await find()
            return found if found is not None else await post()

        return await self.call(what, attempt)

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Await `op` (one or more Web API requests) with retries, mapping every failure onto
        `NotifyError`."""
        try:
            return await retry_inline(
                op, self._classify, attempts=self._max_retries + 1, sleep=self._sleep
            )
        except SlackApiError as exc:
            raise self._api_error(_method(exc, what), exc) from exc
        except SlackClientError as exc:
            raise NotifyRejected(self.redact(f"Slack {what} request invalid: {exc}")) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise NotifyRetryable(
                self.redact(f"Slack {what} unreachable after retries ({detail})")
            ) from exc

    async def find(
        self,
        read: Callable[..., Awaitable[AsyncSlackResponse]],
        match: Callable[[dict[str, Any]], T | None],
        **args: Any,
    ) -> T | None:
        """The first non-None `match` over the messages `read` (`conversations_history` or
        `conversations_replies`) returns for `args`, page after page, metadata included. Not
        retried itself: it runs inside `once`."""
        async for page in await read(**args, limit=PAGE, include_all_metadata=True):
            for message in page.get("messages") or []:
                found = match(message) if isinstance(message, dict) else None
                if found is not None:
                    return found
        return None

    def _classify(self, exc: Exception, attempt: int) -> float | None:
        """The wait slack_sdk's built-in handlers would take before retrying; None: no retry."""
        # A body that is not JSON leaves aiohttp's response in the error: never retried.
        response = exc.response if isinstance(exc, SlackApiError) else None
        status = response.status_code if isinstance(response, AsyncSlackResponse) else None
        if status == _HTTP_TOO_MANY:
            asked = _retry_after(response)
            if asked > self._max_retry_after:  # the loop waits it, not this Watch step
                raise NotifyRetryable(
                    self.redact(f"Slack {_method(exc, 'call')} rate limited for {asked:.0f}s "
                                f"(we wait {self._max_retry_after:.0f}s)"),
                    retry_after=asked,
                ) from exc  # fmt: skip
            if attempt > self._max_retries:
                return None
            # Jitter, not a secret: S311 is about cryptography.
            return asked + random.random()  # noqa: S311
        if attempt > self._max_retries:  # the budget is spent: the interval is not asked
            return None
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
        if status == _HTTP_TOO_MANY:
            asked = _retry_after(response if isinstance(response, AsyncSlackResponse) else None)
            return NotifyRetryable(
                self.redact(f"Slack {method} failed after retries: {reason}"), retry_after=asked
            )
        if status >= _HTTP_SERVER_ERROR or error in _TRANSIENT_ERRORS:
            return NotifyRetryable(self.redact(f"Slack {method} failed after retries: {reason}"))
        hint = {
            "invalid_auth": " (check the bot token)",
            "not_authed": " (no token sent)",
            "channel_not_found": f" (is {self._channel} a channel ID the bot can see?)",
            "not_in_channel": f" (invite the bot to {self._channel})",
            "missing_scope": " (the bot needs chat:write, channels:history and files:write)",
        }.get(str(error), "")
        return NotifyRejected(self.redact(f"Slack {method} rejected: {reason}{hint}"))

    def redact(self, text: str) -> str:
        """`text` with the token replaced by `***`."""
        return text.replace(self._token, "***")


def _retry_after(response: AsyncSlackResponse | None) -> float:
    """Slack's `Retry-After` in seconds (1 when missing or unreadable, as slack_sdk assumes)."""
    asked = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(float(asked), 0.0) if asked is not None else 1.0
    except ValueError:
        return 1.0


def _method(exc: Exception, default: str) -> str:
    """The Web API method that answered `exc` (`chat.postMessage`, ...), from its URL."""
    url = getattr(getattr(exc, "response", None), "api_url", None)
    return url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) and url else default
