"""A revert PR closed unmerged by a person: parsed where it enters, then applied to its incident.

Rearguard's revert PRs carry `<!-- rearguard-key: KEY -->` in their body. When GitHub reports one
closed without a merge, a person decided against it: the incident records who and when, the
revert action stops being retried, and the incident's Watch escalates without opening another
revert (see `loop.watch.recovery`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attribution.store import Store
from loop.api.fields import read_number, read_url
from loop.config import Settings
from loop.watch.phases import Phase

_MARKER = re.compile(r"<!--\s*rearguard-key:\s*([\w.-]+)\s*-->")


@dataclass(frozen=True, slots=True)
class ClosedRevert:
    """A revert PR closed unmerged: its key, number, URL and who closed it."""

    key: str
    number: int
    url: str
    actor: str


def parse_closed_revert(data: Any, settings: Settings) -> ClosedRevert | None:
    """A `pull_request` event for a Rearguard revert PR (of a configured repository) closed
    unmerged, else None."""
    if not isinstance(data, Mapping) or data.get("action") != "closed":
        return None
    repo = data.get("repository")
    name = repo.get("full_name") if isinstance(repo, Mapping) else None
    if not isinstance(name, str) or settings.service_for_repo(name) is None:
        return None
    pull = data.get("pull_request")
    if not isinstance(pull, Mapping) or pull.get("merged") is not False:
        return None
    match = _MARKER.search(str(pull.get("body") or ""))
    if match is None:
        return None
    number = read_number(data, "pull_request.number")
    url = read_url(data, "pull_request.html_url", required=True)
    sender = data.get("sender")
    actor = sender.get("login") if isinstance(sender, Mapping) else None
    return ClosedRevert(match.group(1), number, url, actor if isinstance(actor, str) else "someone")


async def apply_closed_revert(store: Store, closed: ClosedRevert, now: float) -> str | None:
    """Record the closure on its incident; the incident id, or None for an unknown key."""
    note = f"revert PR #{closed.number} ({closed.url}) was closed unmerged by @{closed.actor}"
    return await store.rounds.close_revert(
        closed.key, phases=(Phase.REVERTED, Phase.ROLLING_BACK), now=now, note=note
    )
