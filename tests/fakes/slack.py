"""`FakeSlack`: an in-process Slack Web API on loopback, spoken to by the real `slack_sdk` client.

It owns the slice of Slack that Rearguard uses (`auth.test`, `chat.postMessage`, `chat.update`,
`conversations.history`, `conversations.replies`, and `files_upload_v2`'s three steps:
`files.getUploadURLExternal`, the POST of the bytes to the returned URL, and
`files.completeUploadExternal`, which shares the file into a channel or thread, where a message
showing it appears) with Slack's envelopes, error codes and cursor paging
(`tests.fakes.slack_messages`). Requests are read the way Slack reads them: `POST /api/<method>`
with a JSON or form body, or query parameters (slack_sdk sends `conversations.history` as a
GET); the token comes from `Authorization: Bearer` or a `token` argument. Every `ts` is the
fake's clock (the wall clock unless given), as Slack's are Slack's time.

Fault injection covers what the notifier must survive: refusals before anything happens (429
with `Retry-After`, 5xx, slow answers) and answers lost after Slack did the work (a 5xx, or the
connection dropped, possibly after holding the request: `fail_after_next`, `drop_after_next`).
`post_as` writes a message as a person would, for busy channels.

Slack's limits are kept: at most 50 blocks and 40,000 characters of text, and the block and
element limits Rearguard's messages come near (`slack_messages.block_errors`: section text 3000,
header 150, buttons' text 75, a select's 100 options of 75-character text and 150-character
values), refused with `invalid_blocks` / `msg_too_long`; `chat.update` edits only a message the
bot posted (`cant_update_message`) that exists (`message_not_found`). Rate limits are injected
per method (`rate_limit_next(..., method="chat.update")`), not counted.

Deliberate simplifications: one team, one bot; `chat.postMessage` requires `text` (Slack only
warns without it; Rearguard always sends it); a shared file's message carries no comment.

Use it with its own `start()`/`close()` (or `async with`), or hand `fake.app` to pytest-aiohttp's
`aiohttp_server` and `attach()` the server. `url` is the `base_url` for slack_sdk, trailing slash
included (`http://127.0.0.1:PORT/api/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.latency import Latency
from tests.fakes.slack_messages import (
    BOT_ID,
    BOT_USER_ID,
    MAX_TEXT,
    TEAM_ID,
    FakeFile,
    FakeMessage,
    PageError,
    as_slack,
    block_errors,
    json_arg,
    page,
    read_args,
    share_message,
    truthy,
    ts_after,
)

__all__ = ["BOT_USER_ID", "TOKEN", "FakeFile", "FakeMessage", "FakeSlack"]

TOKEN = "xoxb-0000000000-fake-rearguard-token"
HUMAN_USER_ID = "U0PERSON1"


@dataclass(slots=True)
class _Fault:
    remaining: int
    status: int
    method: str | None
    retry_after: int | None = None
    body: dict[str, Any] | None = None
    # "before": refused, nothing done; "answer": done, then `status`; "drop": done, then the
    # connection closes without an answer (after holding it `hold` seconds).
    when: Literal["before", "answer", "drop"] = "before"
    hold: float = 0.0


class FakeSlack:
    """A Slack workspace on loopback with one bot token and optional known channels."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        channels: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.channels = frozenset(channels) if channels is not None else None
        # Slack's time: every `ts` is taken from it (a test on a manual clock passes its own).
        self.clock = clock
        self.messages: list[FakeMessage] = []
        self.files: list[FakeFile] = []
        # Every request's method name in arrival order, retries included.
        self.calls: list[str] = []
        # The bot token's scopes, sent as `x-oauth-scopes` on every answer as Slack does;
        # None sends no header.
        self.scopes: tuple[str, ...] | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/api/{method}", self._dispatch)
        self.app.router.add_post("/upload/{file_id}", self._upload)
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._latency = Latency(0.0)
        self._last_ts: str | None = None
        self._server: TestServer | None = None
        self._owns_server = False
        # Set on close so a delayed handler does not hold up the server's shutdown.
        self._closing = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Serve on a free loopback port until `close()`."""
        server = TestServer(self.app, host="127.0.0.1")
        await server.start_server()
        self._owns_server = True
        return self.attach(server)

    def attach(self, server: TestServer) -> Self:
        """Use a server someone else started (pytest-aiohttp's `aiohttp_server(fake.app)`)."""
        self._server = server
        return self

    async def close(self) -> None:
        """Release delayed requests and stop the server if `start()` started it."""
        self._closing.set()
        if self._server is not None and self._owns_server:
            await self._server.close()
        self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The `base_url` to give slack_sdk: `http://127.0.0.1:PORT/api/`."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not serving: call start() or attach(server)")
        return str(self._server.make_url("/api/"))

    # -- fault injection -------------------------------------------------------------------

    def rate_limit_next(
        self, count: int, retry_after: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next `count` requests (to `method`, if given) with 429 and `Retry-After`."""
        self._faults.append(
            _Fault(count, 429, method, retry_after, {"ok": False, "error": "ratelimited"})
        )

    def fail_next(
        self, count: int, status: int = 500, *, error: str | None = None, method: str | None = None
    ) -> None:
        """Answer the next `count` requests (to `method`, if given) with `status`: an HTML error
        page, or Slack's `{"ok": false, "error": error}` envelope when `error` is given."""
        body = {"ok": False, "error": error} if error is not None else None
        self._faults.append(_Fault(count, status, method, body=body))

    def delay(self, seconds: float, upto: float | None = None, *, seed: int = 0) -> None:
        """Hold every later request for `seconds` before answering (0 to stop); with `upto`, a
        time drawn uniformly between the two for each request, seeded with `seed`."""
        self._delay = seconds
        self._latency = Latency(seconds, upto, seed)

    def fail_after_next(self, count: int, status: int = 503, *, method: str) -> None:
        """Do the next `count` `method` requests, then answer `status` (an HTML error page): the
        work is done and the answer that says so is lost."""
        self._faults.append(_Fault(count, status, method, when="answer"))

    def drop_after_next(self, count: int, *, method: str, hold: float = 0.0) -> None:
        """Do the next `count` `method` requests, hold each answer `hold` seconds (released by
        `close()`), then close the connection without answering."""
        self._faults.append(_Fault(count, 0, method, when="drop", hold=hold))

    # -- the workspace's other users -------------------------------------------------------

    def post_as(
        self, channel: str, text: str, *, user: str = HUMAN_USER_ID, thread_ts: str | None = None
    ) -> FakeMessage:
        """A message someone else posts (no bot, no metadata), as a busy channel has."""
        message = FakeMessage(channel, self._next_ts(), text, None, None, thread_ts, user=user)
        self.messages.append(message)
        return message

    def _next_ts(self) -> str:
        self._last_ts = ts_after(self.clock(), self._last_ts)
        return self._last_ts

    # -- the API ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.calls.append(method)
        if self._delay:
            # Returns early when the fake closes, so shutdown never waits out the delay.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._latency.draw())
        fault = self._take_fault(method)
        if fault is not None and fault.when == "before":
            return _fault_response(fault)
        args = await read_args(request)
        denied = self._check_token(request, args)
        if denied is not None:
            return web.json_response({"ok": False, "error": denied})
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method", "req_method": method})
        try:
            answer = handler(args)
        except PageError as exc:
            answer = {"ok": False, "error": str(exc)}
        if fault is None:
            scopes = {} if self.scopes is None else {"x-oauth-scopes": ",".join(self.scopes)}
            return web.json_response(answer, headers=scopes)
        if fault.when == "answer":
            return _fault_response(fault)
        return await self._drop(request, fault.hold)

    async def _drop(self, request: web.Request, hold: float) -> web.StreamResponse:
        """Close the connection without an answer, after holding it (released by `close()`)."""
        if hold:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), hold)
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)  # never reaches the client: the transport is closed

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                return fault
        return None

    def _check_token(self, request: web.Request, args: dict[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else str(args.get("token", ""))
        if not token:
            return "not_authed"
        if token != self.token:
            return "invalid_auth"
        return None

    def _known(self, channel: object) -> bool:
        return (
            isinstance(channel, str)
            and bool(channel)
            and (self.channels is None or channel in self.channels)
        )

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://rearguard-test.slack.com/",
            "team": "Rearguard Test",
            "user": "rearguard",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        text = args.get("text")
        if not isinstance(text, str) or not text:
            return {"ok": False, "error": "no_text"}
        if (refused := _content_refused(text, args.get("blocks"))) is not None:
            return refused
        thread_ts = args.get("thread_ts")
        message = FakeMessage(
            channel=str(channel),
            ts=self._next_ts(),
            text=text,
            blocks=json_arg(args.get("blocks")),
            metadata=json_arg(args.get("metadata")),
            thread_ts=str(thread_ts) if thread_ts else None,
        )
        self.messages.append(message)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "message": as_slack(message, with_metadata=True),
        }

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("ts")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        if (refused := _content_refused(args.get("text"), args.get("blocks"))) is not None:
            return refused
        for i, message in enumerate(self.messages):
            if message.channel == channel and message.ts == ts:
                if message.user != BOT_USER_ID:  # only the bot's own messages are its to edit
                    return {"ok": False, "error": "cant_update_message"}
                changes: dict[str, Any] = {"edited": True}
                if args.get("text"):
                    changes["text"] = str(args["text"])
                if args.get("blocks") is not None:
                    changes["blocks"] = json_arg(args["blocks"])
                if args.get("metadata") is not None:
                    changes["metadata"] = json_arg(args["metadata"])
                updated = replace(message, **changes)
                self.messages[i] = updated
                return {
                    "ok": True,
                    "channel": updated.channel,
                    "ts": updated.ts,
                    "text": updated.text,
                    "message": as_slack(updated, with_metadata=True),
                }
        return {"ok": False, "error": "message_not_found"}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("ts")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        if not any(m.channel == channel and m.ts == ts for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        with_metadata = truthy(args.get("include_all_metadata"))
        # The parent, then its replies and the files shared into it, oldest first.
        thread = [as_slack(m, with_metadata=with_metadata) for m in self.messages
                  if m.channel == channel and ts in (m.ts, m.thread_ts)]  # fmt: skip
        thread += [share_message(f) for f in self.files
                   if f.channel == channel and f.thread_ts == ts and f.share_ts]  # fmt: skip
        thread.sort(key=lambda m: float(m["ts"]))
        return page(thread, args, default_limit=1000, max_limit=1000, newest_first=False)

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), str(args.get("length", ""))
        if not filename or not length.isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file = FakeFile(
            id=f"F{len(self.files) + 1:08d}", filename=str(filename), length=int(length)
        )
        self.files.append(file)
        assert self._server is not None
        return {"ok": True, "file_id": file.id,
                "upload_url": str(self._server.make_url(f"/upload/{file.id}"))}  # fmt: skip

    async def _upload(self, request: web.Request) -> web.Response:
        found = [f for f in self.files if f.id == request.match_info["file_id"]]
        if not found:
            return web.Response(status=404, text="no such upload")
        found[0].data = await request.read()
        return web.Response(text=f"OK - {len(found[0].data)}")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = json_arg(args.get("files")) or []
        channel = args.get("channel_id")
        if channel is not None and not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for entry in entries:
            found = [f for f in self.files if f.id == entry.get("id")]
            if not found or len(found[0].data) != found[0].length:
                return {"ok": False, "error": "file_not_found"}
            file = found[0]
            file.title, file.channel = entry.get("title"), channel
            file.thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
            if channel is not None:  # shared: a message shows it in the channel or thread
                file.share_ts = self._next_ts()
            done.append({"id": file.id, "title": file.title, "name": file.filename})
        return {"ok": True, "files": done}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        with_metadata = truthy(args.get("include_all_metadata"))
        # History holds top-level messages only, newest first; thread replies live in replies.
        top = [as_slack(m, with_metadata=with_metadata) for m in self.messages
               if m.channel == channel and m.thread_ts in (None, m.ts)]  # fmt: skip
        top += [share_message(f) for f in self.files
                if f.channel == channel and f.thread_ts is None and f.share_ts]  # fmt: skip
        top.sort(key=lambda m: float(m["ts"]), reverse=True)
        answer = page(top, args, default_limit=100, max_limit=999, newest_first=True)
        return answer | {"pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0}


def _content_refused(text: object, blocks: object) -> dict[str, Any] | None:
    """Slack's answer to a message over its limits (`msg_too_long`, `invalid_blocks` with the
    reasons), None for one it takes."""
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return {"ok": False, "error": "msg_too_long"}
    errors = block_errors(json_arg(blocks))
    return {"ok": False, "error": "invalid_blocks", "errors": errors} if errors else None


def _fault_response(fault: _Fault) -> web.Response:
    if fault.body is not None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return web.json_response(fault.body, status=fault.status, headers=headers)
    return web.Response(
        status=fault.status,
        text=f"<html><body><h1>{fault.status}</h1>Slack is having trouble.</body></html>",
        content_type="text/html",
    )
