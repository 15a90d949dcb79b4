"""The Watch: one deploy's state machine, advanced one transition per call.

Every transition is a row written before the side effect it leads to, so a restart resumes each
Watch where it was: `deployed` resolves the change set, `observing` evaluates the SLIs once per
step, `regressed` (the incident and its suspects written in the same transaction) decides the
plan, `rolling_back` carries out the actions (see `respond`), and `reverted` waits for the deploy
that carries the revert and verifies recovery (see `recovery`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable

from opentelemetry import trace

from attribution.changes import RangeCommit, change_set
from attribution.records import Deploy, Incident, MergedPR
from attribution.watch_rows import DeployPrs, Observations, OpenIncident
from loop.config import ServiceSettings
from loop.watch import attribute
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.recovery import link_revert_deploy, verify
from loop.watch.respond import respond
from loop.watch.transitions import Turn, moved
from observer.observe import Windows, evaluate
from observer.verdict import Status, Verdict
from rollback.forge import ForgeError
from rollback.policy import effective, plan

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rearguard.loop")


def incident_id_for(deploy_id: str) -> str:
    """Deterministic, so a replayed transition cannot mint a second incident for a deploy."""
    return "inc_" + hashlib.sha256(deploy_id.encode()).hexdigest()[:12]


async def advance(deps: WatchDeps, deploy_id: str) -> Phase | None:
    """Take the next transition of one Watch: the phase it is in afterwards, or None when the
    Watch is unknown or final, or another step moved it first (nothing was done then)."""
    found = await deps.store.watches.watch_deploy(deploy_id)
    if found is None:
        return None
    state, deploy = found
    turn = Turn(deploy, Phase(state.phase), state.version)
    step = _STEPS.get(turn.phase)
    if step is None:
        return None
    service = deps.settings.service(deploy.service)
    if service is None:
        reason = f"service {deploy.service!r} is not in the config: nothing to watch"
        now = deps.clock.now()
        return await moved(deps, turn.to(Phase.INCONCLUSIVE, reason, now))
    return await step(deps, turn, service)


async def resolve_changes(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings
) -> tuple[list[MergedPR], str]:
    """The PRs between the previous deploy and this one, and a note when that is not known."""
    base = deploy.previous_sha
    if base is None:
        previous = await deps.store.watches.previous_deploy(deploy)
        base = previous.sha if previous else None
    if base is None:
        return [], "no previous deploy or previous_sha: the change range is unknown"
    try:
        with tracer.start_as_current_span("github.commits_between"):
            commits = await deps.forge.commits_between(service.repo, base, deploy.sha)
    except ForgeError as exc:
        return [], f"change range {base[:10]}..{deploy.sha[:10]} unresolved: {exc}"
    known = await deps.store.prs.of_repo(service.repo)
    in_range = [RangeCommit(c.sha, c.message, c.parents) for c in commits]
    changes = change_set(in_range, known)
    if (changes.unknown_numbers or changes.unattributed) and await attribute.find_missing_prs(
        deps, service, in_range, known
    ):
        changes = change_set(in_range, await deps.store.prs.of_repo(service.repo))
    prs, outside = await attribute.in_service_paths(deps, service, list(changes.prs))
    note = f" {outside} PR(s) outside the service's paths left out" if outside else ""
    if changes.unknown_numbers:
        note += " PRs not on record: " + ", ".join(f"#{n}" for n in changes.unknown_numbers)
    if changes.unattributed:
        note += f" {len(changes.unattributed)} commit(s) without a PR"
    return prs, note.strip()


async def _start(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    deploy = turn.deploy
    prs, note = await resolve_changes(deps, deploy, service)
    await link_revert_deploy(deps, deploy, service)
    reason = (
        f"watching {len(service.slis)} SLI(s) for {service.watch:.0f}s at a {service.step:.0f}s "
        f"step; {len(prs)} PR(s) in the deploy" + (f"; {note}" if note else "")
    )
    now = deps.clock.now()
    carried = DeployPrs(deploy.id, service.repo, tuple(p.number for p in prs))
    move = turn.to(Phase.OBSERVING, reason, max(now, deploy.finished_at + service.step),
                   rows=(carried,))  # fmt: skip
    return await moved(deps, move)


async def _observe(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    deploy = turn.deploy
    windows = Windows(
        deploy.finished_at, service.baseline, service.watch, service.step,
        service.seasonal, deploy.sha,
    )  # fmt: skip
    now = deps.clock.now()
    # The evaluation is the loop's own work (the detector); its queries are `prometheus.fetch`.
    with tracer.start_as_current_span("watch.evaluate"):
        verdict = await evaluate(deps.source, service.slis, windows, now, deps.detector)
    observed = Observations(deploy.id, now, [r.to_json() for r in verdict.results])
    kept = verdict.to_json()
    if verdict.status is Status.OBSERVING:
        next_due = min(next_step_due(deploy.finished_at, service.step, now),
                       deploy.finished_at + service.watch)  # fmt: skip
        move = turn.to(Phase.OBSERVING, verdict.reason, max(next_due, now), verdict=kept,
                       rows=(observed,))  # fmt: skip
    elif verdict.status is Status.REGRESSED:
        with tracer.start_as_current_span("attribution.rank"):
            incident, carried = await _incident(deps, deploy, service, verdict, now)
        move = turn.to(Phase.REGRESSED, verdict.reason, now, verdict=kept,
                       rows=(*carried, observed, OpenIncident(incident)))  # fmt: skip
    else:
        final = Phase.HEALTHY if verdict.status is Status.HEALTHY else Phase.INCONCLUSIVE
        move = turn.to(final, verdict.reason, now, verdict=kept, rows=(observed,))
    return await moved(deps, move)


def next_step_due(deployed_at: float, step: float, now: float) -> float:
    """When the next watch step's data can exist: the first step boundary of the deploy's grid
    (`deployed_at + k * step`) after `now`, so evaluations stay on the grid instead of drifting
    later by each evaluation's own duration (and by the scheduler's wake-up) as `now + step` did."""
    if step <= 0:
        return now
    done = math.floor((now - deployed_at) / step + 1e-9)
    return deployed_at + (max(done, 0) + 1) * step


async def _incident(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, verdict: Verdict, now: float
) -> tuple[Incident, tuple[DeployPrs, ...]]:
    """The incident to open, and the deploy's PRs when they were resolved only now."""
    prs = await deps.store.prs.deploy_prs(deploy.id)
    carried: tuple[DeployPrs, ...] = ()
    if not prs:  # the range could not be resolved at deploy time; try once more now
        prs, _ = await resolve_changes(deps, deploy, service)
        carried = (DeployPrs(deploy.id, service.repo, tuple(p.number for p in prs)),)
    ranking = await attribute.rank_incident(
        deps, deploy, service, verdict.culprit_sli, prs, now=now
    )
    incident = Incident(
        id=incident_id_for(deploy.id),
        deploy_id=deploy.id,
        service=deploy.service,
        environment=deploy.environment,
        sli=verdict.culprit_sli,
        opened_at=now,
        verdict=verdict.to_json(),
        ambiguous=ranking.ambiguous,
        confidence=ranking.confidence,
        revert_unit=ranking.revert_unit,
        reason=ranking.reason,
        suspects=ranking.suspects,
    )
    return incident, carried


async def _plan(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    incident = await deps.store.incidents.incident_for_deploy(turn.deploy.id)
    now = deps.clock.now()
    if incident is None:  # cannot happen: the incident is written with the transition
        raise RuntimeError(f"deploy {turn.deploy.id} is regressed but has no incident row")
    prs = await deps.store.prs.of_repo(service.repo, incident.revert_unit)
    files = await attribute.pr_files(deps, service.repo, prs)
    mode, gates = effective(deps.settings.mode, deps.settings.human_gates, service.mode,
                            service.human_gates)  # fmt: skip
    decision = plan(mode, incident.revert_unit, files.paths(), gates,
                    unknown=files.unknown(incident.revert_unit))  # fmt: skip
    return await moved(deps, turn.to(Phase.ROLLING_BACK, "; ".join(decision.reasons), now))


Step = Callable[[WatchDeps, Turn, ServiceSettings], Awaitable[Phase | None]]

_STEPS: dict[Phase, Step] = {
    Phase.DEPLOYED: _start,
    Phase.OBSERVING: _observe,
    Phase.REGRESSED: _plan,
    Phase.ROLLING_BACK: respond,
    Phase.REVERTED: verify,
}
