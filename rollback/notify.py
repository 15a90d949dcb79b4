"""The `Notifier` boundary and the one rendering of a notice into Slack Block Kit.

One thread per incident: `send` posts the first message (with the SLI plot when there is one and
the Confirm / False alarm / Wrong PR buttons) and returns its `Delivery`; `reply` posts a
`Reply` (revert opened, merged, recovered, escalated, fix opened) into that thread. Both are
idempotent per key.

The console notifier prints exactly the payload the Slack notifier posts, so the demo shows what a
team would see. Exception tree::

    NotifyError                the notice was not delivered
    ├── NotifyRetryable        429, 5xx, timeout: the action stays pending and is retried
                               (also an `observer.retry.Retryable`)
    └── NotifyRejected         bad token, unknown channel: retrying will not help
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True, slots=True)
class Notice:
    """Everything a rollback notice says; rendered once by `render_blocks`."""

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
    plot_png: bytes | None = None  # the SLI around the deploy, uploaded into the thread


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply in an incident's thread; `key` makes it idempotent."""

    key: str
    incident_id: str
    text: str


# Button action ids -> the feedback kind they record (attribution learns from these).
BUTTONS = {
    "rearguard_confirm": ("Confirm", "confirmed"),
    "rearguard_false_alarm": ("False alarm", "false_alarm"),
    "rearguard_wrong_pr": ("Wrong PR", "wrong_pr"),
}


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

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        """Post `reply` in `thread` (once per `reply.key`)."""
        ...


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    return f"{value:.4g}{unit and ' ' + unit}"


def render_text(notice: Notice) -> str:
    """The plain-text fallback Slack requires beside blocks (and shows in notifications)."""
    culprit = notice.suspects[0] if notice.suspects and not notice.ambiguous else None
    who = f"PR #{culprit.pr_number} ({culprit.agent})" if culprit else "the whole deploy range"
    return (
        f"Rearguard: {notice.service}/{notice.environment} regressed on {notice.sli} "
        f"({_fmt(notice.baseline_value, notice.unit)} -> {_fmt(notice.watch_value, notice.unit)}) "
        f"after deploy {notice.deploy_sha[:10]}; suspect: {who}; {notice.action}"
        + (f": {notice.action_url}" if notice.action_url else "")
    )


def render_blocks(notice: Notice) -> list[dict[str, Any]]:
    """Block Kit for one incident notice (header, SLI values, suspects, action)."""
    header = f"Regression in {notice.service} ({notice.environment})"
    sli = (
        f"*SLI* `{notice.sli}`: {_fmt(notice.baseline_value, notice.unit)} before → "
        f"*{_fmt(notice.watch_value, notice.unit)}* after deploy `{notice.deploy_sha[:10]}`\n"
        f"{notice.verdict_reason}"
    )
    lines = []
    for s in notice.suspects[:5]:
        session = f", session `{s.agent_session}`" if s.agent_session else ""
        lines.append(
            f"• <{s.url}|#{s.pr_number} {s.title}> by *{s.agent}*{session} "
            f"(p={s.probability:.2f}): {s.reason}"
        )
    suspects = (
        "*Suspects (ambiguous: reverting the range)*\n" if notice.ambiguous else "*Suspects*\n"
    ) + ("\n".join(lines) or "none recorded")
    action = f"*Action* ({notice.mode} mode): {notice.action}"
    if notice.action_url:
        action += f"\n<{notice.action_url}|{notice.action_url}>"
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
            "elements": [{"type": "mrkdwn", "text": f"incident `{notice.incident_id}`"}],
        },
    ]


def reply_payload(reply: Reply, channel: str, thread_ts: str) -> dict[str, Any]:
    """The exact `chat.postMessage` arguments for a reply in an incident's thread."""
    return {
        "channel": channel,
        "thread_ts": thread_ts,
        "text": reply.text,
        "metadata": {
            "event_type": "rearguard_notice",
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
            "event_type": "rearguard_notice",
            "event_payload": {"key": notice.key, "incident_id": notice.incident_id},
        },
    }
