"""What `FakeSlack` keeps and how it shows it: messages, uploaded files, Slack's cursor paging,
and a reading of mrkdwn the way Slack's clients read it.

Paging follows Slack's `conversations.history` and `conversations.replies`: `limit` (history:
default 100, at most 999; replies: default 1000), `oldest` / `latest` (exclusive unless
`inclusive`), and an opaque `cursor` taken from the previous page's
`response_metadata.next_cursor` (Slack's own cursors are base64 of `next_ts:<ts>`), with
`has_more` saying whether another page exists.

`read_args` reads a request's arguments as Slack does (query, form or JSON body).

`render` reads mrkdwn as Slack does: `<...>` is a control sequence (a link `<url|label>`, a
mention `<@U…>`, a broadcast `<!channel>` / `<!here>` / `<!everyone>`), and `&amp;` `&lt;`
`&gt;` are the only way to show those three characters literally. Tests use it to ask what a
reader would see and whom a message would notify.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER_ID = "U0REARGRD"
BOT_ID = "B0REARGRD"
APP_ID = "A0REARGRD"
TEAM_ID = "T0REARGRD"

# A control sequence is a `<`, no other `<` or `>`, then `>`: inside `<url|a <!channel> b>` Slack
# sees `<!channel>` (and notifies the channel), and the link around it falls apart.
_CONTROL = re.compile(r"<([^<>]*)>")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


@dataclass(frozen=True, slots=True)
class FakeMessage:
    """One message as the fake stores it: what the client sent, plus Slack's `ts`."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    thread_ts: str | None = None
    edited: bool = False
    user: str = BOT_USER_ID  # someone else's message has their user ID and no bot_id


@dataclass(slots=True)
class FakeFile:
    """An uploaded file: its bytes, and where it was shared (channel, thread ts) once completed;
    `share_ts` is the ts of the message that shows it there."""

    id: str
    filename: str
    length: int
    data: bytes = b""
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    share_ts: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A mrkdwn text as a Slack reader sees it."""

    text: str
    links: list[tuple[str, str]] = field(default_factory=list)  # (url, label)
    mentions: set[str] = field(default_factory=set)  # "@U…", "!channel", "!here", ...


def unescape(text: str) -> str:
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text


def render(mrkdwn: str) -> Rendered:
    """What Slack shows for `mrkdwn`, with the links it makes and the people it notifies."""
    links: list[tuple[str, str]] = []
    mentions: set[str] = set()

    def control(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith(("@", "!", "#")):
            if not target.startswith("#"):
                mentions.add(target.split("^")[0] if target.startswith("!") else target)
            return unescape(label or target)
        links.append((unescape(target), unescape(label or target)))
        return unescape(label or target)

    pieces, last = [], 0
    for match in _CONTROL.finditer(mrkdwn):
        pieces.append(unescape(mrkdwn[last : match.start()]))
        pieces.append(control(match))
        last = match.end()
    pieces.append(unescape(mrkdwn[last:]))
    return Rendered("".join(pieces), links, mentions)


def mrkdwn_texts(message: FakeMessage) -> list[str]:
    """Every text of `message` that Slack reads as mrkdwn: `text`, and each mrkdwn object."""
    found = [message.text]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return found


def ts_after(now: float, previous: str | None) -> str:
    """A Slack `ts` ("seconds.micros") at `now`, later than `previous` (ts are unique)."""
    micros = round(now * 1_000_000)
    if previous is not None:
        micros = max(micros, _micros(previous) + 1)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _micros(ts: str) -> int:
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6])


class PageError(Exception):
    """A paging argument Slack would refuse; the message is Slack's error code."""


def page(
    ordered: list[dict[str, Any]],
    args: dict[str, Any],
    *,
    default_limit: int,
    max_limit: int,
    newest_first: bool,
) -> dict[str, Any]:
    """One page of `ordered` (Slack message objects in the method's order) for `args`."""
    oldest = _ts_arg(args, "oldest", "invalid_ts_oldest")
    latest = _ts_arg(args, "latest", "invalid_ts_latest")
    inclusive = truthy(args.get("inclusive"))
    try:
        limit = int(args.get("limit") or default_limit)
    except ValueError as exc:
        raise PageError("invalid_limit") from exc
    limit = min(max(limit, 1), max_limit)

    def within(ts: str) -> bool:
        t = _micros(ts)
        low = oldest is None or t > oldest or (inclusive and t == oldest)
        high = latest is None or t < latest or (inclusive and t == latest)
        return low and high

    chosen = [m for m in ordered if within(m["ts"])]
    start = 0
    if args.get("cursor"):  # the page starts at the message the cursor names (or past it)
        at = _cursor_ts(str(args["cursor"]))
        start = next(
            (i for i, m in enumerate(chosen)
             if (_micros(m["ts"]) <= at if newest_first else _micros(m["ts"]) >= at)),
            len(chosen),
        )  # fmt: skip
    shown, rest = chosen[start : start + limit], chosen[start + limit :]
    out: dict[str, Any] = {"ok": True, "messages": shown, "has_more": bool(rest)}
    if rest:
        raw = f"next_ts:{_micros(rest[0]['ts'])}".encode()
        out["response_metadata"] = {"next_cursor": base64.b64encode(raw).decode()}
    return out


def _ts_arg(args: dict[str, Any], name: str, error: str) -> int | None:
    value = args.get(name)
    if value in (None, ""):
        return None
    try:
        return round(float(str(value)) * 1_000_000)
    except ValueError as exc:
        raise PageError(error) from exc


def _cursor_ts(cursor: str) -> int:
    try:
        decoded = base64.b64decode(cursor, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise PageError("invalid_cursor") from exc
    prefix, _, value = decoded.partition(":")
    if prefix != "next_ts" or not value.isdigit():
        raise PageError("invalid_cursor")
    return int(value)


def as_slack(message: FakeMessage, *, with_metadata: bool) -> dict[str, Any]:
    """The message object Slack returns (fields Rearguard may read)."""
    out: dict[str, Any] = {"user": message.user, "type": "message", "ts": message.ts,
                           "text": message.text, "team": TEAM_ID}  # fmt: skip
    if message.user == BOT_USER_ID:
        out |= {"bot_id": BOT_ID, "app_id": APP_ID}
    if message.blocks is not None:
        # Slack assigns a block_id to every block that was sent without one.
        out["blocks"] = [
            b if "block_id" in b else {**b, "block_id": f"{message.ts}-{i}"}
            for i, b in enumerate(message.blocks)
        ]
    if message.thread_ts is not None:
        out["thread_ts"] = message.thread_ts
    if message.edited:
        out["edited"] = {"user": message.user, "ts": message.ts}
    if with_metadata and message.metadata is not None:
        out["metadata"] = message.metadata
    return out


def share_message(file: FakeFile) -> dict[str, Any]:
    """The message that shows a shared file in its channel or thread, as history returns it."""
    assert file.share_ts is not None
    out: dict[str, Any] = {
        "user": BOT_USER_ID, "type": "message", "ts": file.share_ts, "text": "", "team": TEAM_ID,
        "upload": True, "display_as_bot": False,
        "files": [{"id": file.id, "name": file.filename, "title": file.title or file.filename,
                   "mimetype": "image/png", "filetype": "png", "user": BOT_USER_ID,
                   "size": file.length, "mode": "hosted"}],
    }  # fmt: skip
    if file.thread_ts is not None:
        out["thread_ts"] = file.thread_ts
    return out


def truthy(value: object) -> bool:
    """A Slack boolean argument: `true` or `1`, in a query, form or JSON body."""
    return str(value or "").lower() in {"1", "true"}


async def read_args(request: web.Request) -> dict[str, Any]:
    """Merge query parameters with a JSON or form body, as Slack accepts all three."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            args.update(body)
    elif request.can_read_body:
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return args


def json_arg(value: Any) -> Any:
    """Form bodies carry `blocks` and `metadata` as JSON strings; JSON bodies carry objects."""
    if isinstance(value, str):
        return json.loads(value)
    return value


MAX_BLOCKS, MAX_TEXT = 50, 40_000
"""Slack's limits on a message: 50 blocks, 40,000 characters of `text` (`msg_too_long`)."""
_LIMITS = {  # (block or element type, what) -> Slack's maximum
    ("section", "text"): 3000, ("header", "text"): 150, ("context", "elements"): 10,
    ("actions", "elements"): 25, ("button", "text"): 75, ("button", "value"): 2000,
    ("static_select", "options"): 100, ("option", "text"): 75, ("option", "value"): 150,
    ("block", "block_id"): 255,
}  # fmt: skip


def block_errors(blocks: object) -> list[str]:
    """Why Slack would answer `invalid_blocks` for `blocks` (empty when it would take them)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    errors = [f"no more than {MAX_BLOCKS} items allowed"] if len(blocks) > MAX_BLOCKS else []

    def over(kind: str, what: str, size: int, where: str) -> None:
        if size > _LIMITS[kind, what]:
            limit = _LIMITS[kind, what] + 1
            errors.append(f"must be less than {limit} {what} [json-pointer:{where}]")

    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"block must be an object with a type [json-pointer:{where}]")
            continue
        kind = block["type"]
        over("block", "block_id", len(str(block.get("block_id", ""))), f"{where}/block_id")
        if kind in ("section", "header") and isinstance(block.get("text"), dict):
            over(kind, "text", len(str(block["text"].get("text", ""))), f"{where}/text")
        elements = block.get("elements") or []
        if kind in ("context", "actions"):
            over(kind, "elements", len(elements), f"{where}/elements")
        for j, element in enumerate(elements if kind == "actions" else []):
            at = f"{where}/elements/{j}"
            if element.get("type") == "button":
                over("button", "text", len(str(element.get("text", {}).get("text", ""))), at)
                over("button", "value", len(str(element.get("value", ""))), at)
            if element.get("type") == "static_select":
                options = element.get("options") or []
                over("static_select", "options", len(options), f"{at}/options")
                for k, option in enumerate(options):
                    text = str(option.get("text", {}).get("text", ""))
                    over("option", "text", len(text), f"{at}/options/{k}/text")
                    over("option", "value", len(str(option.get("value", ""))), f"{at}/options/{k}")
    return errors
