"""Revert rounds: which PRs the current revert of an incident undoes, and its keys.

Round 1 reverts the incident's revert unit; when its deploy does not restore health, round 2
reverts the next suspect (see `attribution.next_suspect`), and so on. Each round has its own
idempotency keys, so a restart repeats nothing and a second round never reuses the first's PR.
"""

from __future__ import annotations

from attribution.records import Incident, RevertRound
from attribution.store import Store
from rollback.revert import revert_key


def round_key(incident_id: str, number: int) -> str:
    """The revert action's key (and branch suffix) of round `number`."""
    base = revert_key(incident_id)
    return base if number == 1 else f"{base}-r{number}"


def notice_key(incident_id: str, number: int) -> str:
    """The key of the notice that announces round `number`'s revert."""
    return f"notify-{incident_id}" if number == 1 else f"notify-{incident_id}-r{number}"


async def current_round(store: Store, incident: Incident, now: float) -> RevertRound:
    """The incident's latest round, writing round 1 (its revert unit) the first time; one store
    call either way."""
    first = RevertRound(
        incident.id, 1, incident.revert_unit, round_key(incident.id, 1), now, incident.reason
    )
    return (await store.rounds.ensure_round(first))[-1]
