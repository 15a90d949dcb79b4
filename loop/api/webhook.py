"""The one shape every sender's endpoint follows: verify, parse, journal, apply.

1. verify: the request is the sender's (a signature or a bearer token); refused with a 4xx;
2. parse: the body becomes a typed record where it enters, or a 4xx naming the field;
3. journal: the delivery is kept before it is acknowledged, deduplicated on the sender's delivery
   id, so a redelivery is recognised and not applied twice (a delivery journaled but never applied,
   because the process died in between, is applied on its redelivery);
4. apply: the record is written, then the journal row is marked `applied`.

A refused request (not the sender's, or not a record) writes nothing to the store: not its body,
not its headers, not a row saying it came, so no one can fill the store or claim a delivery id by
sending requests. It is answered with a 4xx naming the problem and counted in `/metrics` by route
and reason code (`loop.api.errors`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from loop.api.context import DEPS

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    """A parsed delivery: its event and delivery id, the body to journal, and the record to
    apply (None when the delivery is acknowledged but means nothing to Rearguard, and `reason`
    says why: it is journaled with the delivery and given in the answer)."""

    event: str
    delivery: str
    body: Any
    record: T | None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Sender(Generic[T]):
    """How one sender's deliveries are checked, read and applied.

    `apply` returns the fields to add to the answer; `answer` shapes the whole answer where the
    sender's callers expect one of their own (the CD hook answers with the deploy's id).
    `dedupe=False` applies every delivery (for senders whose records are idempotent themselves);
    `journal_ignored=False` keeps deliveries that mean nothing out of the journal."""

    source: str
    verify: Callable[[web.Request, bytes], None]
    parse: Callable[[web.Request, bytes], Parsed[T]]
    apply: Callable[[web.Request, T], Awaitable[dict[str, Any]]]
    dedupe: bool = True
    journal_ignored: bool = True
    ok_status: int = 202
    answer: Callable[[Parsed[T], dict[str, Any]], dict[str, Any]] | None = field(default=None)


async def receive(request: web.Request, sender: Sender[T]) -> web.Response:
    """Run one delivery through verify, parse, journal and apply."""
    deps = request.app[DEPS]
    body = await request.read()
    now = deps.clock.now()
    # A refusal (IngestError) from verify or parse is answered and counted by `loop.api.errors`.
    sender.verify(request, body)
    parsed = sender.parse(request, body)
    applies = parsed.record is not None
    if applies or sender.journal_ignored:
        fresh = await deps.store.journal.record(
            sender.source, parsed.event, parsed.delivery,
            status="accepted" if applies else "ignored", received_at=now, body=parsed.body,
            error=None if applies else parsed.reason,
        )  # fmt: skip
        if (
            sender.dedupe
            and not fresh
            and await deps.store.journal.status(sender.source, parsed.delivery) != "accepted"
        ):
            return web.json_response({"status": "duplicate", "delivery": parsed.delivery})
    extra: dict[str, Any] = {}
    if parsed.record is not None:
        extra = await sender.apply(request, parsed.record)
        await deps.store.journal.mark(sender.source, parsed.delivery, "applied")
    if sender.answer is not None:
        answer = sender.answer(parsed, extra)
    else:
        status = "accepted" if applies else "ignored"
        answer = {"status": status, "delivery": parsed.delivery, **extra}
        if not applies and parsed.reason:
            answer["reason"] = parsed.reason
    return web.json_response(answer, status=sender.ok_status)
