"""The one place a Watch's transition is applied.

A step of the Watch decides what happens next and returns it as a `Transition`: where from and to,
why, when the Watch is due again, the verdict to keep, and the rows that belong to the move (the
evaluation's observations, the incident, the next revert round; see `attribution.watch_rows`).
`apply` checks the move against the table in `loop.watch.phases`, then writes it as a
compare-and-set on the Watch's phase and version, rows included, in one transaction. When another
step got there first, nothing is written, the lost race is logged, and the step acts on nothing:
a step with side effects (opening a revert, posting a notice) first `claim`s the Watch, and only
the step whose claim was applied goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from attribution.records import Deploy
from attribution.watch_rows import WatchRow
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase, allowed

log = logging.getLogger(__name__)


class InvalidMove(Exception):
    """A step decided a move the phase table does not allow: a bug, never applied."""


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step of a Watch decided."""

    deploy_id: str
    source: Phase
    target: Phase
    reason: str
    next_due: float
    verdict: dict[str, Any] | None = None
    rows: Sequence[WatchRow] = ()
    version: int | None = None
    """The Watch's version the step read; the move is refused if another step moved it since."""


@dataclass(frozen=True, slots=True)
class Turn:
    """A Watch as one step read it: its deploy, phase and version."""

    deploy: Deploy
    phase: Phase
    version: int
    due: float | None = None
    """When the step was due (the Watch's `next_due`), as the step read it."""
    evaluations: int = 0
    """The evaluations the Watch had kept, as the step read it."""

    def to(
        self,
        target: Phase,
        reason: str,
        next_due: float,
        *,
        verdict: dict[str, Any] | None = None,
        rows: Sequence[WatchRow] = (),
    ) -> Transition:
        """The move from where this turn found the Watch to `target`."""
        return Transition(
            self.deploy.id, self.phase, target, reason, next_due, verdict, rows, self.version
        )

    def stay(self, next_due: float, reason: str) -> Transition:
        """The Watch stays where it is and is due again at `next_due`."""
        return self.to(self.phase, reason, next_due)


async def apply(deps: WatchDeps, move: Transition) -> bool:
    """Write `move` if the Watch is still where its step read it; False (logged) when not."""
    if not allowed(move.source, move.target):
        raise InvalidMove(
            f"watch {move.deploy_id}: {move.source} -> {move.target} is not an allowed move"
        )
    applied = await deps.store.watches.transition(
        move.deploy_id, move.source, move.target, now=deps.clock.now(),
        next_due=move.next_due, reason=move.reason, verdict=move.verdict, rows=move.rows,
        version=move.version,
    )  # fmt: skip
    if not applied:
        log.warning(
            "watch %s: %s -> %s refused, another step moved the Watch since it was read; "
            "acting on nothing", move.deploy_id, move.source, move.target,
        )  # fmt: skip
    return applied


async def moved(deps: WatchDeps, move: Transition) -> Phase | None:
    """Apply `move`: the phase the Watch is in afterwards, or None when the race was lost."""
    return move.target if await apply(deps, move) else None


async def claim(deps: WatchDeps, turn: Turn, reason: str) -> Turn | None:
    """Take the Watch for a step with side effects (it stays due now, so a crash resumes it at
    once); the turn to act on, or None when another step holds it."""
    if not await apply(deps, turn.stay(deps.clock.now(), reason)):
        return None
    return replace(turn, version=turn.version + 1)
