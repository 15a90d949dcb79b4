"""The verdict back on GitHub: a check run (or commit status) on the deployed commit, and one on
each revert PR's head naming its incident.

Each report is an action run through `loop.watch.actions.run_action` after the transition it
reports is written, so the journal makes it at-most-once per key across restarts, and the
forge's lookup by `external_id` (`rollback.github_checks`) covers an answer lost after GitHub
acted. One check run per deploy (`external_id` `rearguard-<deploy>`) goes through two actions:

    check-<deploy>-observing   in_progress, when the Watch starts observing (in
                               `loop.watch.report_lane`, so the Watch does not wait for it)
    check-<deploy>-verdict     completed: success (healthy), neutral (inconclusive) or failure
                               (regressed, with the numbers and the suspect PRs)
    check-<revert key>         on the revert PR's head: neutral, naming the incident

A report GitHub puts off (5xx, rate limit) is logged and left pending, never delaying the Watch:
a regressed Watch's next steps try a pending verdict again (`retry_pending`); a healthy or
inconclusive Watch has none, so its verdict stays pending (the row says so).
"""

from __future__ import annotations

import logging
from typing import Any

from attribution.records import Action, ActionKind, ActionStatus, Deploy, Incident, MergedPR
from loop.config import ServiceSettings
from loop.watch.actions import culprit_result, is_ratio, run_action, shown
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.retry import ActionRetry
from observer.verdict import SliResult, Status, Verdict
from rollback.checks import CheckRequest, CheckState, NoChecks

log = logging.getLogger(__name__)

CHECK_NAME = "rearguard"
FINAL: dict[Phase, CheckState] = {
    Phase.HEALTHY: CheckState.SUCCESS,
    Phase.INCONCLUSIVE: CheckState.NEUTRAL,
    Phase.REGRESSED: CheckState.FAILURE,
}


def run_key(deploy_id: str) -> str:
    """The deploy's check run as GitHub keeps it (`external_id`)."""
    return f"rearguard-{deploy_id}"


def _code(text: str) -> str:
    """Untrusted text (PR titles, reasons) as one Markdown code span: no links or mentions."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


async def _report(deps: WatchDeps, key: str, owner: str, request: CheckRequest) -> Action | None:
    if isinstance(deps.checks, NoChecks):  # no forge shows verdicts (the demo): no action row
        return None

    async def call() -> tuple[str | None, dict[str, Any]]:
        shown_at = await deps.checks.report(request)
        return shown_at.url, {"kind": shown_at.kind, "id": shown_at.id, "sha": request.sha,
                              "state": str(request.state), "title": request.title,
                              "reused": shown_at.reused}  # fmt: skip

    try:
        return await run_action(deps, key, owner, ActionKind.CHECK, call)
    except ActionRetry as exc:
        log.warning("check %s not shown on %s yet: %s", key, request.sha[:12], exc)
        return None


async def report_observing(deps: WatchDeps, deploy: Deploy, service: ServiceSettings) -> None:
    """The deploy's check run, in progress while its Watch observes."""
    title = f"observing {len(service.slis)} SLI(s) for {service.watch:.0f}s after the deploy"
    summary = f"Rearguard is watching `{service.name}` in `{deploy.environment}`."
    request = CheckRequest(service.repo, deploy.sha, run_key(deploy.id), CHECK_NAME,
                           CheckState.IN_PROGRESS, title, summary)  # fmt: skip
    await _report(deps, f"check-{deploy.id}-observing", deploy.id, request)


async def report_verdict(
    deps: WatchDeps,
    deploy: Deploy,
    service: ServiceSettings,
    phase: Phase,
    verdict: Verdict,
    *,
    incident: Incident | None = None,
) -> Action | None:
    """The deploy's check run, completed with the verdict `phase` ends on; None for a phase
    that is no verdict (the Watch observes on)."""
    state = FINAL.get(phase)
    if state is None:
        return None
    lines = [f"**{phase}**: {_code(verdict.reason)}", "", "| SLI | status | before | after |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for r in verdict.results:
        ratio = bool(r.baseline_total)
        lines.append(f"| {_code(r.sli)} | {r.status} | {shown(r.baseline_value, ratio)} | "
                     f"{shown(r.watch_value, ratio)} |")  # fmt: skip
    title = f"{phase}: {verdict.reason}"
    if incident is not None:
        prs = {p.number: p for p in await deps.store.prs.deploy_prs(deploy.id)}
        title = f"regressed: {incident.sli} ({_numbers(incident)}); suspects " + ", ".join(
            f"#{s.number}" for s in incident.suspects
        )
        lines += ["", f"Incident `{incident.id}`: {_numbers(incident)}", "", "Suspect PRs:"]
        lines += [_suspect(s.number, s.probability, s.reason, prs.get(s.number))
                  for s in incident.suspects]  # fmt: skip
    request = CheckRequest(
        service.repo, deploy.sha, run_key(deploy.id), CHECK_NAME, state, title,
        "\n".join(lines), details_url=deps.incident_url(incident.id) if incident else None,
    )  # fmt: skip
    await deps.reports.settle(deploy.id)  # the observing report never lands after this one
    return await _report(deps, f"check-{deploy.id}-verdict", deploy.id, request)


def _numbers(incident: Incident) -> str:
    result = culprit_result(incident)
    ratio = is_ratio(result)
    return (f"{shown(result.baseline_value, ratio)} before, {shown(result.watch_value, ratio)} "
            f"after, statistic {result.statistic:.2f} >= {result.threshold:.2f}")  # fmt: skip


def _suspect(number: int, probability: float, reason: str, pr: MergedPR | None) -> str:
    title = f" {_code(pr.title)}" if pr and pr.title else ""
    link = f" ({pr.url})" if pr and pr.url.startswith("https://") else ""
    return f"- #{number}{title}{link}: p={probability:.2f}, {_code(reason)}"


async def retry_pending(deps: WatchDeps, deploy: Deploy, incident: Incident) -> None:
    """Try again a verdict check GitHub put off, from a later step of a regressed Watch."""
    key = f"check-{deploy.id}-verdict"
    for action in await deps.store.incidents.actions(deploy.id):
        if action.id == key and action.status is ActionStatus.PENDING:
            service = deps.settings.service(deploy.service)
            if service is None:
                return
            kept = incident.verdict.get("results")
            results = tuple(SliResult.from_json(r) for r in kept if isinstance(r, dict)
                            ) if isinstance(kept, list) else ()  # fmt: skip
            verdict = Verdict(Status.REGRESSED, str(incident.verdict.get("reason", "")), results,
                              incident.sli)  # fmt: skip
            await report_verdict(deps, deploy, service, Phase.REGRESSED, verdict,
                                 incident=incident)  # fmt: skip


async def report_revert(
    deps: WatchDeps, incident: Incident, repo: str, revert: Action | None
) -> None:
    """A check on the revert PR's head naming the incident it undoes."""
    if revert is None:
        return
    detail = revert.detail or {}
    sha, number = detail.get("head_sha"), detail.get("number")
    if revert.status is not ActionStatus.COMPLETED or not isinstance(sha, str) or not number:
        return
    reverted = detail.get("prs")
    prs = ", ".join(f"#{n}" for n in reverted) if isinstance(reverted, list) else "its PRs"
    title = f"revert for incident {incident.id} ({incident.sli} regressed; reverts {prs})"
    summary = (f"Rearguard opened this PR to undo {prs} for incident `{incident.id}`: "
               f"{_numbers(incident)}.")  # fmt: skip
    request = CheckRequest(repo, sha, f"rearguard-{revert.id}", CHECK_NAME, CheckState.NEUTRAL,
                           title, summary, details_url=deps.incident_url(incident.id))  # fmt: skip
    await _report(deps, f"check-{revert.id}", incident.id, request)
