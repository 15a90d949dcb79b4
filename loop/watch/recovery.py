"""The `reverted` phase: find the deploy that carries the revert, verify recovery, and act on it.

A revert PR goes through the repository's own CI and CD, so Rearguard waits: when a later deploy
of the same service and environment holds the revert's merge (`link_revert_deploy`, called once
that deploy's change range is read — whether it came from the CD hook or a GitHub
`deployment_status`, and however late GitHub answered),
the incident's Watch is woken and, one step at a time, judges the regressed SLI since that deploy
against the incident's pre-regression baseline (`observer.recovery`). Then, each decision written
before its side effect:

- recovered: feedback `recovered`, the time to restore, a notice, `recovered`;
- still regressed: feedback `not_recovered`, then the next suspect (`rolling_back` again, round
  n + 1) or, with none left, a notice and `escalated`;
- no verdict by the end of the window, or the revert PR closed unmerged by a person: a notice
  and `escalated` (a closed revert is respected: no other revert is opened).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from attribution.changes import RangeCommit
from attribution.next_suspect import next_round
from attribution.records import ActionKind, Deploy, Incident, RevertRound, RoundOutcome
from attribution.revert_match import OpenedRevert, carries
from attribution.watch_rows import NextRound
from loop.config import ServiceSettings
from loop.watch.actions import culprit_result, run_action
from loop.watch.deps import WatchDeps
from loop.watch.followup import incident_thread, reply
from loop.watch.phases import Phase
from loop.watch.respond import Case, build_notice
from loop.watch.retry import ActionRetry
from loop.watch.rounds import round_key
from loop.watch.transitions import Turn, claim, moved
from observer.recovery import RecoveryWindows, observe_recovery
from observer.verdict import SliResult, Status
from rollback.policy import plan

RECHECK_WAITING = 3600.0
"""How often a Watch waiting for its revert to be deployed wakes by itself (a carrying deploy
wakes it at once)."""

_OUTCOMES = {Status.HEALTHY: RoundOutcome.RECOVERED, Status.REGRESSED: RoundOutcome.NOT_RECOVERED}


async def link_revert_deploy(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, range_commits: list[RangeCommit]
) -> None:
    """If `deploy`, whose change range is `range_commits`, carries an opened revert of this
    service and environment, say so and wake the incident's Watch to verify recovery from the
    deploy's first step."""
    waiting = await deps.store.rounds.awaiting_reverts(
        deploy.service, deploy.environment, phase=Phase.REVERTED
    )
    if not waiting:
        return
    known = await deps.store.prs.of_repo(service.repo)
    now = deps.clock.now()
    for found, detail in waiting:
        if not carries(range_commits, known, OpenedRevert.from_detail(found.action_id, detail)):
            continue
        incident = await deps.store.incidents.incident(found.incident_id)
        if incident is None:
            continue
        reason = (
            f"revert {found.action_id} deployed in {deploy.sha[:10]} ({deploy.id}); "
            f"verifying {incident.sli} against the baseline before the regression"
        )
        await deps.store.rounds.link_round_deploy(
            found, deploy.id, incident.deploy_id, phase=Phase.REVERTED, now=now,
            due=max(now, deploy.finished_at + service.step), reason=reason,
        )  # fmt: skip


async def verify(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    """One step of a `reverted` Watch (its deploy is the bad deploy): wait, judge, or act; None
    when another step holds the Watch."""
    deploy = turn.deploy
    incident = await deps.store.incidents.incident_for_deploy(deploy.id)
    rounds = await deps.store.rounds.of_incident(incident.id) if incident else []
    if incident is None or not rounds:
        raise RuntimeError(f"deploy {deploy.id} is reverted but has no incident or revert round")
    current = rounds[-1]
    now = deps.clock.now()
    result: SliResult | None = None
    if current.outcome is None:
        if current.deploy_id is None:
            reason = "revert opened; waiting for a deploy that carries it"
            return await moved(deps, turn.stay(now + RECHECK_WAITING, reason))
        result = await _judge(deps, deploy, service, incident, current)
        if result.status is Status.OBSERVING:
            reason = f"verifying recovery: {result.reason}"
            return await moved(deps, turn.stay(now + service.step, reason))
    acting = await claim(deps, turn, "acting on the revert's outcome")
    if acting is None:
        return None
    if result is not None:
        outcome = _OUTCOMES.get(result.status, RoundOutcome.INCONCLUSIVE)
        feedback = [(f"{outcome}-{incident.id}-{n}", str(outcome), n) for n in current.prs]
        await deps.store.rounds.settle_round(
            current, outcome, now=now, note=result.reason,
            recovered_at=now if outcome is RoundOutcome.RECOVERED else None,
            feedback=feedback if outcome is not RoundOutcome.INCONCLUSIVE else (),
        )  # fmt: skip
        current = (await deps.store.rounds.of_incident(incident.id))[-1]
    try:
        return await _act(deps, acting, service, incident, [*rounds[:-1], current])
    except ActionRetry as exc:
        return await moved(deps, acting.stay(deps.clock.now() + exc.delay, str(exc)))


async def _judge(
    deps: WatchDeps,
    deploy: Deploy,
    service: ServiceSettings,
    incident: Incident,
    current: RevertRound,
) -> SliResult:
    """The regressed SLI since the carrying deploy, against the incident's baseline."""
    carrier = await deps.store.watches.deploy(current.deploy_id or "")
    sli = next((s for s in service.slis if s.name == incident.sli), None)
    if carrier is None or sli is None:
        why = "the carrying deploy is gone" if carrier is None else f"no SLI {incident.sli!r}"
        return SliResult(sli=str(incident.sli), status=Status.INCONCLUSIVE, reason=why)
    regressed = culprit_result(incident).watch_value
    windows = RecoveryWindows(
        baseline_start=deploy.finished_at - service.baseline,
        baseline_end=deploy.finished_at,
        since=carrier.finished_at,
        length=service.watch,
        step=service.step,
    )
    now = deps.clock.now()
    return await observe_recovery(
        deps.source, sli, windows, regressed, now, settings=deps.detector,
        intervals=deps.intervals, scrape_interval=deps.settings.prometheus_scrape_interval,
    )  # fmt: skip


async def _act(
    deps: WatchDeps,
    acting: Turn,
    service: ServiceSettings,
    incident: Incident,
    rounds: list[RevertRound],
) -> Phase | None:
    """Carry out a settled round: notice and final phase, or the next round's revert."""
    deploy = acting.deploy
    current = rounds[-1]
    reverted = ", ".join(f"#{n}" for n in current.prs)
    now = deps.clock.now()
    if current.outcome is RoundOutcome.RECOVERED:
        times = await deps.store.rounds.incident_times(incident.id)
        restore = times.time_to_restore if times and times.time_to_restore is not None else None
        took = f"; time to restore {_duration(restore)}" if restore is not None else ""
        text = f"RECOVERED after reverting {reverted}: {current.note}{took}"
        await _announce(deps, deploy, service, incident, what="recovered", text=text)
        return await moved(deps, acting.to(Phase.RECOVERED, text, now))
    if current.outcome is RoundOutcome.NOT_RECOVERED:
        reverted_all = {n for r in rounds for n in r.prs}
        following = next_round(incident.suspects, reverted_all, deps.settings.action_bar)
        if following is not None:
            number = current.round + 1
            key = round_key(incident.id, number)
            upcoming = RevertRound(
                incident.id, number, following.revert_unit, key, now, following.reason
            )
            reason = f"{current.note}; {following.reason}"
            return await moved(deps, acting.to(Phase.ROLLING_BACK, reason, now,
                                               rows=(NextRound(upcoming),)))  # fmt: skip
        text = (f"ESCALATED: reverting {reverted} did not restore health ({current.note}) and no "
                "suspect is left to revert: a person must investigate")  # fmt: skip
    elif current.outcome is RoundOutcome.CLOSED:
        text = (f"ESCALATED: {current.note}; Rearguard respects it and opens no other revert for "
                "this incident")  # fmt: skip
    else:
        text = (
            f"ESCALATED: recovery after reverting {reverted} could not be verified: {current.note}"
        )
    await _announce(deps, deploy, service, incident, what="escalated", text=text)
    return await moved(deps, acting.to(Phase.ESCALATED, text, now))


async def _announce(
    deps: WatchDeps,
    deploy: Deploy,
    service: ServiceSettings,
    incident: Incident,
    *,
    what: str,
    text: str,
) -> None:
    """Tell people how the incident ended, once: a reply in the incident's thread, or a notice
    of its own when the first message never landed (an idempotent action either way)."""
    thread = await incident_thread(deps, incident)
    if thread is not None:
        await reply(deps, incident, thread, what=what, text=text)
        return
    # Only the notice's frame (its action is `text`): no gate is decided, no files looked up.
    decision = plan(deps.settings.mode, incident.revert_unit, [], deps.settings.human_gates,
                    unknown=incident.revert_unit)  # fmt: skip
    case = Case(deploy, service, incident, [], decision)
    notice = replace(await build_notice(deps, case, None), key=f"notify-{incident.id}-{what}",
                     action=text, action_url=deps.incident_url(incident.id))  # fmt: skip

    async def call() -> tuple[str | None, dict[str, Any]]:
        delivery = await deps.notifier.send(notice)
        return None, {"channel": delivery.channel, "ts": delivery.ts, "outcome": what}

    await run_action(deps, notice.key, incident, ActionKind.NOTIFY, call)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
