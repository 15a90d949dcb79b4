"""The Watch: one deploy's state machine, advanced one transition per call.

Every transition is a row written before the side effect it leads to, so a restart resumes each
Watch where it was: `deployed` reads the change range (see `change_range`: a forge that fails
is asked again later, the Watch observes meanwhile), `observing` evaluates the SLIs once per
step (at the Watch's own offset in it, `step_offset`, so Watches deployed together do not all
evaluate at once; each evaluation's pace is told to `WatchDeps.pace`), `regressed` (the
incident and its suspects written in the same transaction) decides the plan, `rolling_back`
carries out the actions (see `respond`), and `reverted` waits for the deploy that carries the
revert and verifies recovery (see `recovery`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from opentelemetry import trace

from attribution.records import Deploy, Incident, MergedPR, WatchState
from attribution.watch_rows import Observations, OpenIncident
from loop.config import ServiceSettings
from loop.watch import attribute, change_range, verdict_checks
from loop.watch.deps import WatchDeps
from loop.watch.pace import paced
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


async def advance(
    deps: WatchDeps, deploy_id: str, *, seen: WatchState | None = None
) -> Phase | None:
    """Take the next transition of one Watch: the phase it is in afterwards, or None when the
    Watch is unknown or final, or another step moved it first (nothing was done then).

    `seen`: the Watch as the scheduler's due query just read it, so an observing step costs no
    read of its own (its deploy is kept in `deps.memory`, a deploy never changes); a stale one
    is harmless, as every move is a compare-and-set on the phase and version read."""
    found = await _read(deps, deploy_id, seen)
    if found is None:
        return None
    state, deploy = found
    turn = Turn(deploy, Phase(state.phase), state.version, state.next_due, state.evaluations)
    step = _STEPS.get(turn.phase)
    if step is None:
        return None
    service = deps.settings.service(deploy.service)
    if service is None:
        deps.memory.forget(deploy_id)
        reason = f"service {deploy.service!r} is not in the config: nothing to watch"
        now = deps.clock.now()
        return await moved(deps, turn.to(Phase.INCONCLUSIVE, reason, now))
    if turn.phase is Phase.OBSERVING:  # an evaluation: its lag and queries are counted
        return await paced(deps, state.next_due, service.step, lambda d: step(d, turn, service))
    return await step(deps, turn, service)


async def _read(
    deps: WatchDeps, deploy_id: str, seen: WatchState | None
) -> tuple[WatchState, Deploy] | None:
    deploy = deps.memory.deploy(deploy_id) if seen is not None else None
    if seen is not None and deploy is not None:
        return seen, deploy
    found = await deps.store.watches.watch_deploy(deploy_id)
    if found is not None and found[0].phase == Phase.OBSERVING:
        deps.memory.keep_deploy(found[1])
    return found


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
    first = deploy.finished_at + step_offset(deploy.id, service.step) + service.step
    move = turn.to(Phase.OBSERVING, reason, max(now, first), rows=changes.rows)
    phase = await moved(deps, move)
    if phase is not None:  # written: the deployed commit shows the Watch in progress, soon
        deps.reports.submit(deploy.id, partial(verdict_checks.report_observing, deps, deploy,
                                               service))  # fmt: skip
    return phase


async def _observe(deps: WatchDeps, turn: Turn, service: ServiceSettings) -> Phase | None:
    deploy = turn.deploy
    windows = Windows(
        deploy.finished_at, service.baseline, service.watch, service.step,
        service.seasonal, deploy.sha,
    )  # fmt: skip
    late = deps.settings.prometheus_late_samples
    memory = await deps.memory.recall(
        deps.store, deploy.id, service=service, windows=windows, settings=deps.detector, late=late,
        kept=turn.evaluations > 0,
    )  # fmt: skip
    now = deps.clock.now()
    # The evaluation is the loop's own work (the detector); its queries are `prometheus.fetch`.
    with tracer.start_as_current_span("watch.evaluate"):
        verdict = await evaluate(
            deps.source, service.slis, windows, now, deps.detector, intervals=deps.intervals,
            scrape_interval=deps.settings.prometheus_scrape_interval, memory=memory, late=late,
        )  # fmt: skip
    for failure in deps.query_health.record(deploy.service, verdict):  # logged once, not per step
        log.error("service %s: SLI %s cannot be evaluated (%s): %s", failure.service,
                  failure.sli, failure.cause, failure.reason)  # fmt: skip
    observed = Observations(deploy.id, now, [r.to_json() for r in verdict.results], turn.due)
    kept = verdict.to_json()
    baselines = deps.memory.unsaved(deploy.id)
    if verdict.status is Status.OBSERVING:
        offset = step_offset(deploy.id, service.step)
        next_due = min(next_step_due(deploy.finished_at, service.step, now, offset),
                       deploy.finished_at + service.watch + offset)  # fmt: skip
        move = turn.to(Phase.OBSERVING, verdict.reason, max(next_due, now), verdict=kept,
                       rows=(observed, *baselines))  # fmt: skip
    elif verdict.status is Status.REGRESSED:
        changes = await _changes(deps, deploy, service)
        if changes.prs is None:  # the forge is asked again later; the incident needs its PRs
            reason = f"{verdict.reason}; the incident waits for the change range ({changes.note})"
            move = turn.to(Phase.OBSERVING, reason, max(changes.retry_at or now, now),
                           verdict=kept, rows=(observed, *baselines))  # fmt: skip
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
    if phase is Phase.OBSERVING:
        deps.memory.saved(deploy.id, baselines)
    else:  # moved on, or another step moved the Watch: what it kept may no longer hold
        deps.memory.forget(deploy.id)
    if phase is not None:  # the evaluation is written: its warnings may go out (never a revert)
        await post_warnings(deps, deploy, verdict)
        opened = next((r.incident for r in move.rows if isinstance(r, OpenIncident)), None)
        await verdict_checks.report_verdict(deps, deploy, service, phase, verdict, incident=opened)
    return phase


def step_offset(deploy_id: str, step: float) -> float:
    """Where in each step a deploy's Watch evaluates: a fraction of `step` in [0, 1) drawn from a
    stable hash of the deploy id (not Python's `hash()`, salted per process, so the offset
    survives a restart). Services deployed together then evaluate spread over the step instead
    of all at the same instant."""
    digest = hashlib.sha256(deploy_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * max(step, 0.0)


def next_step_due(deployed_at: float, step: float, now: float, offset: float = 0.0) -> float:
    """When the Watch's next evaluation is due: the first point of its grid
    (`deployed_at + offset + k * step`, k >= 1) after `now`, so evaluations stay on the grid
    instead of drifting later by each evaluation's own duration (and by the scheduler's wake-up)
    as `now + step` did. The `offset` (`step_offset`, in [0, step)) only moves when in the step
    the Watch looks: the queries still evaluate at `deployed_at + j * step`, a later look sees
    the same points with more of the last scrape in."""
    if step <= 0:
        return now
    done = math.floor((now - deployed_at - offset + _ON_TIME) / step)
    return deployed_at + offset + (max(done, 0) + 1) * step


_ON_TIME = 1e-3
"""Seconds before a grid point that count as on it: `next_due` is stored to the microsecond, so a
Watch woken at its due time can read a clock a fraction of a microsecond early (and a Unix time
plus a fractional offset is only exact to about 1e-7 s)."""


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
