"""The slow half of a Slack click, done after Slack has had its answer.

Slack wants an interactivity request answered within three seconds, and closing a revert PR on
GitHub may take longer. So `loop.api.slack` records the verdict, journals the click `accepted`
and answers; `ClickWork` then does the rest in a task the app owns (started and cancelled with
it, in `cleanup_ctx`):

1. "False alarm" in propose mode closes the incident's open revert PR (the action
   `close-revert-<incident>`, so however many clicks arrive it is closed once);
2. the incident's first message is redrawn in place (`Editor.amend`: `chat.update` on the channel
   and ts its notice landed at) to say who did what, with only the buttons that still make
   sense, and after a "Wrong PR" a select of the deploy's other PRs to pick the culprit from;
3. the click's journal row is marked `applied`.

A click whose work did not finish (the process died, GitHub or Slack kept failing) stays
`accepted` in the journal and is done again when the app next starts (`resume`); every step is
idempotent, so doing one twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

from attribution.records import ActionKind, ActionStatus, Incident
from loop.watch.actions import completed
from loop.watch.deps import WatchDeps
from loop.watch.followup import incident_thread
from observer.retry import Retryable, retry_delay
from rollback.notify import Amendment, Editor
from rollback.policy import Mode, effective
from rollback.slack import offered

log = logging.getLogger(__name__)

SOURCE = "slack"
ATTEMPTS = 4
"""Tries of a click's work while the app runs; after them it waits for the next start."""


@dataclass(frozen=True, slots=True)
class Click:
    """One verified click: a button, or a PR picked in the "which PR caused it?" select."""

    action_id: str
    kind: str
    incident_id: str
    user: str
    action_ts: str
    picked: int | None = None

    @property
    def delivery(self) -> str:
        """Its journal id: one per person, action and moment."""
        return f"{self.incident_id}:{self.user}:{self.action_id}:{self.action_ts}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Click:
        """The click as `to_json` journaled it."""
        picked = data.get("picked")
        return cls(str(data["action_id"]), str(data["kind"]), str(data["incident_id"]),
                   str(data["user"]), str(data["action_ts"]),
                   None if picked is None else int(picked))  # fmt: skip


async def finish(deps: WatchDeps, click: Click) -> None:
    """Close the revert on a false alarm (propose mode), then redraw the incident's message."""
    incident = await deps.store.incidents.incident(click.incident_id)
    if incident is None:
        return
    if click.kind == "false_alarm" and click.picked is None:
        await close_revert(deps, incident, click.user)
    thread = await incident_thread(deps, incident)
    if thread is not None and isinstance(deps.notifier, Editor):
        await deps.notifier.amend(thread, await amendment(deps, incident))


async def close_revert(deps: WatchDeps, incident: Incident, user: str) -> bool | None:
    """Close the incident's opened revert PR in propose mode (act mode leaves a merged revert
    alone); None when there is none to close, else whether it is closed."""
    service = deps.settings.service(incident.service)
    if service is None:
        return None
    mode, _ = effective(deps.settings.mode, deps.settings.human_gates, service.mode, None)
    actions = await deps.store.incidents.actions(incident.id)
    revert = next((a for a in actions if a.kind is ActionKind.REVERT), None)
    number = (revert.detail or {}).get("number") if revert else None
    if mode is not Mode.PROPOSE or revert is None or not completed(revert) or not number:
        return None
    key, now = close_key(incident.id), deps.clock.now()
    action = await deps.store.incidents.begin_action(key, incident.id, ActionKind.CLOSE, now)
    if completed(action):
        return True
    comment = f"Closed by Rearguard: {user} marked the incident a false alarm in Slack."
    try:
        await deps.forge.close_pull(service.repo, int(str(number)), comment)
    except Retryable:
        raise  # the action stays pending; the click's work is tried again
    except Exception as exc:  # noqa: BLE001 - recorded on the action; the click itself is kept
        await deps.store.incidents.finish_action(key, ActionStatus.FAILED, now=deps.clock.now(),
                                                 error=str(exc))  # fmt: skip
        return False
    detail = {"number": int(str(number)), "by": user}
    await deps.store.incidents.finish_action(key, ActionStatus.COMPLETED, now=deps.clock.now(),
                                             detail=detail)  # fmt: skip
    return True


def close_key(incident_id: str) -> str:
    return f"close-revert-{incident_id}"


async def amendment(deps: WatchDeps, incident: Incident) -> Amendment:
    """What the incident's message shows now: people's verdicts, the closed revert, the buttons
    still offered and, after a Wrong PR, the other PRs of the deploy to pick from."""
    top = incident.revert_unit[0] if incident.revert_unit else None
    lines: list[str] = []
    given: set[str] = set()
    picked = False
    for kind, pr, actor in await deps.store.incidents.verdicts(incident.id):
        if kind == "confirmed" and pr is not None and pr != top:
            picked = True
            line = f"{actor} picked #{pr} as the PR that caused it"
        else:
            given.add(kind)
            line = {
                "confirmed": f"Confirmed by {actor}" + (f": #{pr} caused it" if pr else ""),
                "false_alarm": f"False alarm, says {actor}",
                "wrong_pr": f"Wrong PR, says {actor}" + (f": not #{pr}" if pr else ""),
            }[kind]
        if line not in lines:
            lines.append(line)
    close = next((a for a in await deps.store.incidents.actions(incident.id)
                  if a.id == close_key(incident.id)), None)  # fmt: skip
    if completed(close):
        assert close is not None
        lines.append(f"Revert PR #{(close.detail or {}).get('number')} closed as a false alarm "
                     f"(by {(close.detail or {}).get('by')})")  # fmt: skip
    elif close is not None and close.status is ActionStatus.FAILED:
        lines.append(f"Closing the revert PR FAILED: {close.error}")
    buttons, picker = offered(given, picked)
    choices: tuple[tuple[int, str], ...] = ()
    if picker:
        titles = {p.number: p.title for p in await deps.store.prs.deploy_prs(incident.deploy_id)}
        choices = tuple((s.number, titles.get(s.number, "")) for s in incident.suspects
                        if s.number != top)  # fmt: skip
    return Amendment(incident.id, tuple(lines), buttons, choices)


class ClickWork:
    """The clicks' slow halves, each in a task of its own, one at a time per incident."""

    def __init__(self, deps: WatchDeps) -> None:
        self._deps = deps
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def submit(self, click: Click) -> None:
        """Do `click`'s work after the answer; its journal row is marked applied when done."""
        task = asyncio.create_task(self._run(click))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> int:
        """Take up every click journaled and not yet applied (a crash, a failed try); how many."""
        pending = await self._deps.store.journal.unapplied(SOURCE)
        for delivery, body in pending:
            try:
                click = Click.from_json(body)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("slack click %s: journaled body unreadable; skipped", delivery)
                continue
            self.submit(click)
        return len(pending)

    async def idle(self) -> None:
        """Wait until no click's work is running (the tests' and shutdown's)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the work still running; it stays `accepted` and resumes at the next start."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, click: Click) -> None:
        journal = self._deps.store.journal
        lock = self._locks.setdefault(click.incident_id, asyncio.Lock())
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with lock:
                    await finish(self._deps, click)
            except Retryable as exc:
                if attempt < ATTEMPTS:
                    await asyncio.sleep(retry_delay(attempt, 2.0, 60.0, exc.retry_after))
                    continue
                log.warning("slack click %s: %s; resumed at the next start", click.delivery, exc)
            except Exception:
                log.exception("slack click %s failed; resumed at the next start", click.delivery)
            else:
                await journal.mark(SOURCE, click.delivery, "applied")
                return
            break
        await journal.release(SOURCE, click.delivery)
