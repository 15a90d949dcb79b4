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

Journal and apply are one step for a record whose whole effect is rows (`Sender.rows`: a merged
PR, a deploy and its Watch): the rows go with the journal row into the store's group commit,
where the deliveries arriving together share one transaction, and the answer is sent once that
transaction has committed. A flood of deliveries is then a few transactions, not several per
delivery, and a Watch's store call waits behind one batch of them at most.

A JSON body is journaled as the text it arrived as (what `parse` read; no second encoding on the
hot path), any other body as the JSON of the `Parsed.body` it was read into.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web

from attribution.store_journal import Applied, Delivery, Journaled
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

    `apply` writes a record and returns the fields to add to the answer. `rows`, where a
    record's whole effect is rows, gives them instead (None for a record that needs `apply`):
    they are journaled with it in one group-committed transaction, and `applied` runs once they
    are durable (waking the scheduler) and returns the answer's fields. `answer` shapes the whole
    answer where the sender's callers expect one of their own (the CD hook answers with the
    deploy's id). `dedupe=False` applies every delivery (for senders whose records are
    idempotent themselves); `journal_ignored=False` keeps deliveries that mean nothing out of
    the journal; `later=True` leaves the journal row `accepted` after `apply`, which handed
    the record on to work that marks it applied once done (the Slack clicks' slow half, run
    after the answer and resumed from the journal after a crash)."""

    source: str
    verify: Callable[[web.Request, bytes], None]
    parse: Callable[[web.Request, bytes], Parsed[T]]
    apply: Callable[[web.Request, T], Awaitable[dict[str, Any]]] | None = None
    dedupe: bool = True
    journal_ignored: bool = True
    ok_status: int = 202
    answer: Callable[[Parsed[T], dict[str, Any]], dict[str, Any]] | None = field(default=None)
    rows: Callable[[web.Request, T], Applied | None] | None = None
    applied: Callable[[web.Request, T, Journaled], dict[str, Any]] | None = None
    keep_text: bool = True
    """False journals `Parsed.body` rather than the text the body arrived as (a sender whose
    body carries its token: the parsed body is journaled without it)."""
    later: bool = False


async def receive(request: web.Request, sender: Sender[T]) -> web.Response:
    """Run one delivery through verify, parse, journal and apply."""
    _, answer, status = await take(request, sender)
    return web.json_response(answer, status=status)


async def take(request: web.Request, sender: Sender[T]) -> tuple[Parsed[T], dict[str, Any], int]:
    """`receive` up to its answer: the parsed delivery, the answer and its status, for a sender
    whose answer depends on more than the delivery (Flagger's gates read the Watch)."""
    deps = request.app[DEPS]
    body = await request.read()
    now = deps.clock.now()
    # A refusal (IngestError) from verify or parse is answered and counted by `loop.api.errors`.
    sender.verify(request, body)
    parsed = sender.parse(request, body)
    record = parsed.record
    extra = await journal(request, sender, parsed, body, now)
    if extra is None:
        return parsed, {"status": "duplicate", "delivery": parsed.delivery}, 200
    if sender.answer is not None:
        answer = sender.answer(parsed, extra)
    else:
        status = "accepted" if record is not None else "ignored"
        answer = {"status": status, "delivery": parsed.delivery, **extra}
        if record is None and parsed.reason:
            answer["reason"] = parsed.reason
    return parsed, answer, sender.ok_status


async def journal(
    request: web.Request, sender: Sender[T], parsed: Parsed[T], body: bytes, now: float
) -> dict[str, Any] | None:
    """Journal and apply one parsed delivery (steps 3 and 4); the answer's fields, or None for
    a duplicate. The Argo Rollouts gate records the deploy it starts through this, as the CD hook
    does."""
    record = parsed.record
    effect = sender.rows(request, record) if record is not None and sender.rows else None
    extra: dict[str, Any] = {}
    if record is not None or sender.journal_ignored:
        done = await request.app[DEPS].store.journal.deliver(Delivery(
            sender.source, parsed.event, parsed.delivery, now,
            status="accepted" if record is not None else "ignored", body=parsed.body,
            error=None if record is not None else parsed.reason, applied=effect,
            dedupe=sender.dedupe, text=_json_text(request, body) if sender.keep_text else None,
        ))  # fmt: skip
        if done.duplicate:
            return None
        if record is not None and effect is not None and sender.applied is not None:
            extra = sender.applied(request, record, done)
    if record is not None and effect is None:
        extra = await _apply(request, sender, parsed.delivery, record)
    return extra


def _json_text(request: web.Request, body: bytes) -> str | None:
    """A JSON body as the text it arrived as, journaled without decoding and encoding it again
    (the parsed body it equals is what `parse` read from it); None for any other body."""
    if request.content_type != "application/json":
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


async def _apply(
    request: web.Request, sender: Sender[T], delivery: str, record: T
) -> dict[str, Any]:
    """Apply a record journaled `accepted`, then mark it applied; if it could not be applied,
    the journal lets a redelivery try again."""
    journal = request.app[DEPS].store.journal
    if sender.apply is None:
        raise TypeError(f"sender {sender.source} has neither rows nor apply for this record")
    try:
        extra = await sender.apply(request, record)
    except BaseException:
        await journal.release(sender.source, delivery)
        raise
    if not sender.later:
        await journal.mark(sender.source, delivery, "applied")
    return extra
