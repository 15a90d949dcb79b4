"""The Watch: one deploy's state machine, advanced one transition per call.

Every transition is a row written before the side effect it leads to, so a restart resumes each
Watch where it was: `deployed` reads the change range (see `change_range`: a forge that fails
is asked again later, the Watch observes meanwhile), `observing` evaluates the SLIs once per
step, `regressed` (the incident and its suspects written in the same transaction) decides the
plan, `rolling_back` carries out the actions (see `respond`), and `reverted` waits for the deploy
that carries the revert and verifies recovery (see `recovery`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from opentelemetry import trace

from attribution.records import Deploy, Incident, MergedPR
from attribution.watch_rows import Observations, OpenIncident
from loop.config import ServiceSettings
from loop.watch import attribute, change_range, verdict_checks
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.recovery import link_revert_deploy, verify
from loop.watch.respond import respond
from loop.watch.transitions import Turn, moved
from loop.watch.warnings import post_warnings
from observer.observe import Windows, evaluate
from observer.verdict import Status, Verdict
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


async def _changes(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings
) -> change_range.ChangeRange:
    """The deploy's change range, linking any revert it carries once its commits are read."""
    link = partial(link_revert_deploy, deps, deploy, service)
    return await change_range.resolve(deps, deploy, service, link)


async def _start(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    deploy = turn.deploy
    changes = await _changes(deps, deploy, service)
    found = "not yet known" if changes.prs is None else str(len(changes.prs))
    reason = (
        f"watching {len(service.slis)} SLI(s) for {service.watch:.0f}s at a {service.step:.0f}s "
        f"step; {found} PR(s) in the deploy" + (f"; {changes.note}" if changes.note else "")
    )
    now = deps.clock.now()
    move = turn.to(Phase.OBSERVING, reason, max(now, deploy.finished_at + service.step),
                   rows=changes.rows)  # fmt: skip
    phase = await moved(deps, move)
    if phase is not None:  # written: the deployed commit shows the Watch in progress
        await verdict_checks.report_observing(deps, deploy, service)
    return phase


async def _observe(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    deploy = turn.deploy
    windows = Windows(
        deploy.finished_at, service.baseline, service.watch, service.step,
        service.seasonal, deploy.sha,
    )  # fmt: skip
    now = deps.clock.now()
    # The evaluation is the loop's own work (the detector); its queries are `prometheus.fetch`.
    with tracer.start_as_current_span("watch.evaluate"):
        verdict = await evaluate(
            deps.source, service.slis, windows, now, deps.detector, intervals=deps.intervals,
            scrape_interval=deps.settings.prometheus_scrape_interval,
        )  # fmt: skip
    for failure in deps.query_health.record(deploy.service, verdict):  # logged once, not per step
        log.error("service %s: SLI %s cannot be evaluated (%s): %s", failure.service,
                  failure.sli, failure.cause, failure.reason)  # fmt: skip
    observed = Observations(deploy.id, now, [r.to_json() for r in verdict.results])
    kept = verdict.to_json()
    if verdict.status is Status.OBSERVING:
        next_due = min(next_step_due(deploy.finished_at, service.step, now),
                       deploy.finished_at + service.watch)  # fmt: skip
        move = turn.to(Phase.OBSERVING, verdict.reason, max(next_due, now), verdict=kept,
                       rows=(observed,))  # fmt: skip
    elif verdict.status is Status.REGRESSED:
        changes = await _changes(deps, deploy, service)
        if changes.prs is None:  # the forge is asked again later; the incident needs its PRs
            reason = f"{verdict.reason}; the incident waits for the change range ({changes.note})"
            move = turn.to(Phase.OBSERVING, reason, max(changes.retry_at or now, now),
                           verdict=kept, rows=(observed,))  # fmt: skip
        else:
            with tracer.start_as_current_span("attribution.rank"):
                incident = await _incident(deps, deploy, service, verdict, changes.prs, now=now)
            move = turn.to(Phase.REGRESSED, verdict.reason, now, verdict=kept,
                           rows=(*changes.rows, observed, OpenIncident(incident)))  # fmt: skip
    else:  # a range still unread is tried once more if due: its PRs, and a revert it carries
        changes = await _changes(deps, deploy, service)
        final = Phase.HEALTHY if verdict.status is Status.HEALTHY else Phase.INCONCLUSIVE
        move = turn.to(final, verdict.reason, now, verdict=kept, rows=(*changes.rows, observed))
    phase = await moved(deps, move)
    if phase is not None:  # the evaluation is written: its warnings may go out (never a revert)
        await post_warnings(deps, deploy, verdict)
        opened = next((r.incident for r in move.rows if isinstance(r, OpenIncident)), None)
        await verdict_checks.report_verdict(deps, deploy, service, phase, verdict, incident=opened)
    return phase


def next_step_due(deployed_at: float, step: float, now: float) -> float:
    """When the next watch step's data can exist: the first step boundary of the deploy's grid
    (`deployed_at + k * step`) after `now`, so evaluations stay on the grid instead of drifting
    later by each evaluation's own duration (and by the scheduler's wake-up) as `now + step` did."""
    if step <= 0:
        return now
    done = math.floor((now - deployed_at) / step + 1e-9)
    return deployed_at + (max(done, 0) + 1) * step


async def _incident(
    deps: WatchDeps,
    deploy: Deploy,
    service: ServiceSettings,
    verdict: Verdict,
    prs: Sequence[MergedPR],
    *,
    now: float,
) -> Incident:
    """The incident to open over the deploy's PRs."""
    ranking = await attribute.rank_incident(
        deps, deploy, service, verdict.culprit_sli, prs, now=now
    )
    return Incident(
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
