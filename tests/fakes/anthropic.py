"""`FakeAnthropic`: an in-process Messages API (`POST /v1/messages`) for the anthropic SDK.

It answers with the real response shape (`id`, `type: message`, `role`, `model`, `content` text
blocks, `stop_reason`, `usage` with input and output tokens), the text being whatever the test
scripted with `answer_with` (a JSON object for structured output). It checks the key, records every
request body, and injects failures the fixer must survive: 5xx, 429 with `retry-after`, 529
overloaded (Anthropic's error envelope), and slow answers (timeouts). The key is accepted as
`x-api-key` or as `Authorization: Bearer` (what anthropic 2.x sends). Serve it with `await
fake.start()` and give the SDK `base_url=fake.url`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

KEY = "sk-ant-fake-0123456789"


@dataclass
class _Fault:
    remaining: int
    status: int
    kind: str
    retry_after: int | None


class FakeAnthropic:
    """The Messages API with one key; `answers` are served in order, the last one repeated."""

    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.answers: list[str] = ['{"diagnosis": "", "hypothesis": "", "plan": [], '
                                   '"patch": "", "tests": []}']  # fmt: skip
        self.usage = (1200, 350)
        self._faults: list[_Fault] = []
        self._delay = 0.0
        self._server: TestServer | None = None
        self.app = web.Application()
        self.app.router.add_post("/v1/messages", self._messages)

    async def start(self) -> FakeAnthropic:
        self._server = TestServer(self.app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    def answer_with(self, *texts: str | dict[str, Any]) -> None:
        """Serve these answers in order (dicts are sent as JSON text)."""
        self.answers = [t if isinstance(t, str) else json.dumps(t) for t in texts]

    def fail_next(self, count: int, status: int = 500, *, retry_after: int | None = None) -> None:
        """Answer the next `count` requests with `status` (429 rate limit, 529 overloaded...)."""
        kinds = {429: "rate_limit_error", 529: "overloaded_error"}
        self._faults.append(_Fault(count, status, kinds.get(status, "api_error"), retry_after))

    def delay(self, seconds: float) -> None:
        self._delay = seconds

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self._delay:
            await asyncio.sleep(self._delay)
        # anthropic 2.x sends the key as a bearer token; the API also accepts `x-api-key`.
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid x-api-key")
        fault = next((f for f in self._faults if f.remaining > 0), None)
        if fault is not None:
            fault.remaining -= 1
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after else {}
            return _error(fault.status, fault.kind, "fault injected", headers)
        text = self.answers[min(len(self.requests) - 1, len(self.answers) - 1)]
        return web.json_response({
            "id": f"msg_fake{len(self.requests):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1],
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })  # fmt: skip


def _error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status, headers=headers or {})
