"""The `Notifier` boundary: the protocol, the notices it delivers, and its errors.

One thread per incident: `send` posts the first message (with the Confirm / False alarm / Wrong
PR buttons) and returns its `Delivery`; `upload` puts a file (the SLI plot) into that thread;
`reply` posts a `Reply` (revert opened, merged, recovered, escalated, fix opened) into it. All
three are idempotent: a notice or reply per key, a file per name in its thread, however often
the call is repeated (a retry, a restart) and however busy the channel is.

Every text a notice or reply carries is plain text: the notifier escapes it for its medium
(Slack's mrkdwn), so a PR title cannot mention a channel or break a link.

A notifier that can also edit its first message in place is an `Editor` (`amend`): what people
did with the buttons (who confirmed, who said false alarm, which PR they picked instead) is shown
on the message itself, with only the buttons that still make sense.

Implementations: `SlackNotifier` (rollback/slack.py, which also renders a notice into Block Kit)
and `ConsoleNotifier` (rollback/console.py, which prints exactly the payload the Slack notifier
posts, so the demo shows what a team would see). Exception tree::

    NotifyError                the notice was not delivered
    ├── NotifyRetryable        429, 5xx, timeout: the action stays pending and is retried
                               (also an `observer.retry.Retryable`)
    └── NotifyRejected         bad token, unknown channel: retrying will not help
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from observer.retry import Retryable


class NotifyError(Exception):
    """A notice was not delivered; the message says why (tokens redacted)."""


class NotifyRetryable(NotifyError, Retryable):
    """Delivery may succeed later (rate limit, outage, timeout)."""


class NotifyRejected(NotifyError):
    """Delivery will not succeed without a configuration change."""


@dataclass(frozen=True, slots=True)
class SuspectLine:
    """One suspect as a notice shows it."""

    pr_number: int
    title: str
    url: str
    agent: str
    agent_session: str | None
    probability: float
    reason: str
    provenance: str = ""
    """Agent, model, session and the marker they came from (`attribution.identity.describe`)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Everything a rollback notice says; rendered once, by `rollback.slack.render_blocks`."""

    key: str
    incident_id: str
    service: str
    environment: str
    deploy_sha: str
    sli: str
    baseline_value: float
    watch_value: float
    unit: str
    verdict_reason: str
    suspects: tuple[SuspectLine, ...]
    ambiguous: bool
    action: str
    action_url: str | None
    mode: str
    opened_at: float
    """When the incident opened (epoch seconds): no copy of this notice is older, so the
    duplicate check reads the channel back to then, and no further."""


@dataclass(frozen=True, slots=True)
class WarningNotice:
    """An early warning (data gone, traffic fallen): a thread of its own, no buttons, no revert;
    rendered by `rollback.slack.warning_payload`."""

    key: str
    service: str
    environment: str
    deploy_sha: str
    sli: str
    reason: str
    detail: str
    raised_at: float
    """When the warning was first raised (epoch seconds): the duplicate check reads back to then."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply in an incident's thread; `key` makes it idempotent."""

    key: str
    incident_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A file for an incident's thread; its `filename` makes it idempotent (one file of that
    name per thread)."""

    key: str
    incident_id: str
    filename: str
    title: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a notice landed: the channel and Slack's message `ts` (a console gives its own)."""

    channel: str
    ts: str


class Notifier(Protocol):
    """Delivers notices to people."""

    async def send(self, notice: Notice) -> Delivery:
        """Deliver `notice` as a thread's first message; raise `NotifyRetryable` or
        `NotifyRejected` on failure."""
        ...

    async def warn(self, warning: WarningNotice) -> Delivery:
        """Deliver `warning` as a message of its own (once per `warning.key`)."""
        ...

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        """Post `reply` in `thread` (once per `reply.key`)."""
        ...

    async def upload(self, thread: Delivery, upload: Upload) -> str:
        """Share `upload` in `thread` (once per `upload.filename`); the file's ID."""
        ...


@dataclass(frozen=True, slots=True)
class Amendment:
    """What people did on an incident's first message, shown on it in place
    (`rollback.slack.amended_blocks`)."""

    incident_id: str
    lines: tuple[str, ...]
    """One plain-text line per thing done ("Confirmed by ana"), escaped where shown."""
    offer: tuple[str, ...]
    """The button action ids still offered (`rollback.slack.BUTTONS`)."""
    choices: tuple[tuple[int, str], ...] = ()
    """PRs (number, title) to pick the culprit from, after a "Wrong PR"; empty shows no picker."""


@runtime_checkable
class Editor(Protocol):
    """A notifier that can change the first message of an incident's thread."""

    async def amend(self, thread: Delivery, amendment: Amendment) -> None:
        """Show `amendment` on the message at `thread` (idempotent: the same amendment twice
        leaves the same message)."""
        ...
