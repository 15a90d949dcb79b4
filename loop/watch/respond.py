"""The `rolling_back` phase: open the revert through the Forge, then tell people through the
Notifier, each as an action row written `pending` before the call and finished after it.

A restart re-enters here: a completed action is not repeated, a pending one is retried (the Forge
and the Notifier are idempotent per key; a revert PR the Forge finds merged since counts as opened,
one found closed unmerged is respected as when a person's close arrives by webhook, see
`loop.api.revert_events`) after a growing delay (`loop.watch.retry`), and after
`max_action_attempts` it is marked `failed` with the reason, which the notice then reports. The
auto-merge request, the thread's replies and the fix step follow (`loop.watch.followup`). The Watch
ends `reverted` when a revert exists, `escalated` otherwise. The SLI plot is its own action in
the first message's thread (`loop.watch.followup.upload_plot`), so a restart between the message
and the upload still uploads it, once. Each revert round (the next suspect
after a revert that did not restore health) has its own keys (`loop.watch.rounds`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from opentelemetry import trace

from attribution.identity import describe
from attribution.records import (
    Action,
    ActionKind,
    ActionStatus,
    Deploy,
    Incident,
    MergedPR,
    RevertRound,
)
from loop.config import ServiceSettings
from loop.watch import change_range, verdict_checks
from loop.watch.actions import Declined, completed, culprit_result, is_ratio, run_action, shown
from loop.watch.attribute import pr_files
from loop.watch.deps import WatchDeps
from loop.watch.followup import (
    Followed,
    first_notice,
    follow_up,
    incident_thread,
    reply,
)
from loop.watch.phases import Phase
from loop.watch.retry import ActionRetry
from loop.watch.rounds import current_round, notice_key
from loop.watch.transitions import Turn, claim, moved
from rollback.forge import ChangeState, PullRef, RevertResult
from rollback.notify import Notice, SuspectLine
from rollback.policy import Plan, effective, plan
from rollback.revert import RevertContext, revert_key, revert_request

tracer = trace.get_tracer("rearguard.loop")


@dataclass(frozen=True, slots=True)
class Case:
    """Everything the actions of one incident are about."""

    deploy: Deploy
    service: ServiceSettings
    incident: Incident
    prs: list[MergedPR]
    decision: Plan
    round: RevertRound | None = None


async def respond(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    """Carry out the plan for the deploy's incident, one idempotent action at a time; None when
    another step holds the Watch (then nothing is done)."""
    deploy = turn.deploy
    incident = await deps.store.incidents.incident_for_deploy(deploy.id)
    if incident is None:
        raise RuntimeError(f"deploy {deploy.id} is rolling back but has no incident row")
    acting = await claim(deps, turn, "carrying out the incident's plan")
    if acting is None:
        return None
    current = await current_round(deps.store, incident, deps.clock.now())
    prs = await deps.store.prs.of_repo(service.repo, current.prs)
    files = await pr_files(deps, service.repo, prs)
    mode, gates = effective(deps.settings.mode, deps.settings.human_gates, service.mode,
                            service.human_gates)  # fmt: skip
    decision = plan(mode, current.prs, files.paths(), gates, unknown=files.unknown(current.prs))
    if (unresolved := await change_range.failure(deps, deploy.id)) is not None:
        decision = replace(decision, reasons=(unresolved, *decision.reasons))  # say so
    case = Case(deploy, service, incident, prs, decision, current)
    try:
        await verdict_checks.retry_pending(deps, deploy, incident)
        revert = await _revert(deps, case)
        if completed(revert):
            await deps.store.rounds.revert_opened(incident, deploy.finished_at, deps.clock.now())
            await verdict_checks.report_revert(deps, incident, service.repo, revert)
        notified = await _notify(deps, case, revert)
        if current.round > 1:  # replies go under the first message, never under a reply
            notified = await first_notice(deps, incident)
        followed = Followed(deploy, service, incident, prs, decision, gates)
        await follow_up(deps, followed, revert, notified)
    except ActionRetry as exc:
        now = deps.clock.now()
        return await moved(deps, acting.stay(now + exc.delay, str(exc)))
    now = deps.clock.now()
    if revert is not None and completed(revert):
        reason = f"revert opened: {revert.url}; waiting for it to be merged and deployed"
        return await moved(deps, acting.to(Phase.REVERTED, reason, now))
    why = revert.error if revert is not None and revert.error else "; ".join(decision.reasons)
    if revert is not None and revert.status is ActionStatus.SKIPPED:  # a person closed it
        why = f"revert not pursued: {why}; no other revert is opened for this incident"
    else:
        why = f"no revert opened: {why}"
    return await moved(deps, acting.to(Phase.ESCALATED, why, now))


async def _revert(deps: WatchDeps, case: Case) -> Action | None:
    deploy, service, incident, prs, decision = (
        case.deploy, case.service, case.incident, case.prs, case.decision)  # fmt: skip
    if not decision.open_revert:
        return None
    result = culprit_result(incident)
    ratio = is_ratio(result)
    context = RevertContext(
        incident_id=incident.id,
        service=service.name,
        environment=deploy.environment,
        deploy_sha=deploy.sha,
        sli=incident.sli or "unknown",
        before=shown(result.baseline_value, ratio),
        after=shown(result.watch_value, ratio),
        statistic=f"statistic {result.statistic:.2f} >= {result.threshold:.2f}",
        suspects=tuple(f"#{s.number} (p={s.probability:.2f}): {s.reason}"
                       for s in incident.suspects),
        agent_sessions=tuple(p.identity.session for p in prs if p.identity.session),
        provenance=tuple(f"#{p.number}: {describe(p.identity, p.head_ref)}" for p in prs),
        incident_url=deps.incident_url(incident.id),
    )  # fmt: skip
    request = revert_request(
        service.repo,
        service.default_branch,
        [PullRef(p.number, p.merge_sha, p.title) for p in prs],
        context,
        decision.labels,
    )

    async def call() -> tuple[str, dict[str, Any]]:
        with tracer.start_as_current_span("github.open_revert"):
            made = await deps.forge.open_revert(request)
        if made.state is ChangeState.CLOSED:
            await _closed_meanwhile(deps, request.key, made)
        detail = {
            "branch": made.branch,
            "number": made.number,
            "head_sha": made.head_sha,
            "reused": made.reused,
            "state": str(made.state),
            "labels": list(request.labels),
            "prs": [p.number for p in prs],
            "needs_human": decision.needs_human,
        }
        return made.url, detail

    key = case.round.action_id if case.round else revert_key(incident.id)
    if key != request.key:  # a later round: its own key, branch and marker
        request = replace(request, key=key, body=request.body.replace(request.key, key))
    return await run_action(deps, key, incident, ActionKind.REVERT, call)


async def _closed_meanwhile(deps: WatchDeps, key: str, made: RevertResult) -> None:
    """The revert PR from an earlier attempt, closed unmerged by a person since: record it as the
    webhook of that close would have (round `closed`, action `skipped`), and decline."""
    note = f"revert PR #{made.number} ({made.url}) was closed unmerged by a person"
    phases = (Phase.REVERTED, Phase.ROLLING_BACK)
    await deps.store.rounds.close_revert(key, phases=phases, now=deps.clock.now(), note=note)
    raise Declined(note)


async def _notify(deps: WatchDeps, case: Case, revert: Action | None) -> Action | None:
    notice = await build_notice(deps, case, revert)
    if case.round is not None and case.round.round > 1:
        notice = replace(notice, key=notice_key(case.incident.id, case.round.round),
                         action=f"{case.round.reason}; {notice.action}")  # fmt: skip
        thread = await incident_thread(deps, case.incident)
        if thread is not None:  # a later round is told in the incident's thread
            text = notice.action + (f": {notice.action_url}" if notice.action_url else "")
            return await reply(deps, case.incident, thread, what=f"round{case.round.round}",
                               text=text)  # fmt: skip

    async def call() -> tuple[str | None, dict[str, Any]]:
        with tracer.start_as_current_span("slack.send"):
            delivery = await deps.notifier.send(notice)
        return None, {"channel": delivery.channel, "ts": delivery.ts}

    return await run_action(deps, notice.key, case.incident, ActionKind.NOTIFY, call)


async def build_notice(deps: WatchDeps, case: Case, revert: Action | None) -> Notice:
    """The notice for an incident, saying truthfully what was (or was not) done."""
    deploy, service, incident, decision = case.deploy, case.service, case.incident, case.decision
    prs = {p.number: p for p in await deps.store.prs.deploy_prs(deploy.id)}
    lines = []
    for s in incident.suspects:
        pr = prs.get(s.number)
        lines.append(SuspectLine(
            pr_number=s.number, title=pr.title if pr else "", url=pr.url if pr else "",
            agent=pr.identity.name if pr else "unknown",
            agent_session=pr.identity.session if pr else None,
            probability=s.probability, reason=s.reason,
            provenance=describe(pr.identity, pr.head_ref) if pr else "",
        ))  # fmt: skip
    if revert is None:
        action, url = "; ".join(decision.reasons), None
    elif completed(revert):
        what = "revert PR opened" if (revert.detail or {}).get("number") else "revert created"
        action = f"{what}; {'; '.join(decision.reasons)}"
        url = revert.url
    elif revert.status is ActionStatus.SKIPPED:
        action, url = f"revert not pursued: {revert.error}", None
    else:
        action, url = f"revert FAILED: {revert.error}", None
    result = culprit_result(incident)
    return Notice(
        key=f"notify-{incident.id}",
        incident_id=incident.id,
        service=service.name,
        environment=deploy.environment,
        deploy_sha=deploy.sha,
        sli=incident.sli or "unknown",
        baseline_value=result.baseline_value,
        watch_value=result.watch_value,
        unit="ratio" if is_ratio(result) else "",
        verdict_reason=result.reason or incident.reason,
        suspects=tuple(lines),
        ambiguous=incident.ambiguous,
        action=action,
        action_url=url,
        mode=str(deps.settings.mode if case.service.mode is None else case.service.mode),
        opened_at=incident.opened_at,
    )
