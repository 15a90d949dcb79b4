"""`ConsoleNotifier`: prints the exact `chat.postMessage` payload instead of posting it.

It owns the demo's and dry runs' notifications: one readable line, then `message_payload` as
indented JSON, the same arguments `SlackNotifier` hands to Slack: it imports the Slack renderer
(`rollback.slack`) rather than render its own, so what the console shows is what a team would
see. It never fails; the `ts` (and file ID) it returns is derived from the notice key (the file's
name), so the same notice always "lands" at the same place, as it would with the idempotent Slack
notifier.
"""

from __future__ import annotations

import hashlib
import json
from typing import TextIO

from rollback.notify import Delivery, Notice, Reply, Upload, WarningNotice
from rollback.slack import (
    message_payload,
    render_text,
    reply_payload,
    warning_payload,
    warning_text,
)


class ConsoleNotifier:
    """Writes each notice's Slack payload to `stream` (stdout in the demo)."""

    def __init__(self, stream: TextIO, channel: str = "#rollbacks") -> None:
        self._stream = stream
        self._channel = channel

    async def send(self, notice: Notice) -> Delivery:
        """Print the payload Slack would receive; return a deterministic `Delivery`."""
        payload = message_payload(notice, self._channel)
        self._stream.write(f"[notify {self._channel}] {render_text(notice)}\n")
        self._stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        self._stream.flush()
        return Delivery(channel=self._channel, ts=console_ts(notice.key))

    async def warn(self, warning: WarningNotice) -> Delivery:
        """Print the warning's payload; its `ts` depends only on its key."""
        payload = warning_payload(warning, self._channel)
        self._stream.write(f"[warn {self._channel}] {warning_text(warning)}\n")
        self._stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        self._stream.flush()
        return Delivery(channel=self._channel, ts=console_ts(warning.key))

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        """Print the reply's payload; its `ts` depends only on its key."""
        payload = reply_payload(reply, thread.channel, thread.ts)
        self._stream.write(f"[reply {thread.channel} {thread.ts}] {reply.text}\n")
        self._stream.write(json.dumps(payload, ensure_ascii=False) + "\n")
        self._stream.flush()
        return Delivery(channel=thread.channel, ts=console_ts(reply.key))

    async def upload(self, thread: Delivery, upload: Upload) -> str:
        """Say which file would be shared in `thread`; its ID depends only on its name."""
        self._stream.write(f"[upload {thread.channel} {thread.ts}] {upload.filename} "
                           f"({len(upload.data)} bytes): {upload.title}\n")  # fmt: skip
        self._stream.flush()
        return "F" + console_ts(upload.filename).replace(".", "")


def console_ts(key: str) -> str:
    """A Slack-shaped `ts` (`seconds.micros`) that depends only on `key`."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return f"{digest % 10**10:010d}.{digest % 10**6:06d}"
