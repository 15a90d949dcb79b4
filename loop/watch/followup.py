"""What follows the revert and the first message of an incident: the auto-merge request, the SLI
plot and the replies in the incident's Slack thread, and the fix step.

Each is an action with its own idempotency key, run through `loop.watch.actions.run_action`
(written `pending` before the call, finished after it), so a restart neither asks twice nor posts
twice, nor forgets what it had not done yet:

    merge-<incident>         act mode, revert opened, no human gate: auto-merge (or REST merge)
    plot-<incident>          the regressed SLI around the deploy, a PNG in the incident's thread
                             (after the merge request, so a files outage never delays it)
    reply-revert-<incident>  the thread's reply saying what became of the revert
    fix-<incident>           the Fixer's draft fix PR, or the refined bug issue
    reply-fix-<incident>     the thread's reply linking it

The Fixer is `deps.fixer`, replaced by the keyless template when the incident's or the day's
Anthropic budget is spent; every model call's tokens and cost are stored before anything else.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from attribution.records import Action, ActionKind, ActionStatus, Deploy, Incident, MergedPR
from loop.config import ServiceSettings
from loop.watch.actions import completed, culprit_result, is_ratio, run_action, shown
from loop.watch.attribute import pr_files
from loop.watch.deps import WatchDeps
from observer.sources import MetricsError
from rollback.fix import draft_fix, fix_key
from rollback.fixer import FixContext, Fixer, TemplateFixer, Usage
from rollback.forge import ForgeError
from rollback.notify import Delivery, Reply, Upload
from rollback.plot import sli_png
from rollback.policy import Plan

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rearguard.loop")

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Followed:
    """The case `respond` acts on, as seen from here."""

    deploy: Deploy
    service: ServiceSettings
    incident: Incident
    prs: list[MergedPR]
    decision: Plan
    gates: tuple[str, ...]


def thread_of(notified: Action | None) -> Delivery | None:
    """The incident's Slack thread: where its first message landed."""
    detail = notified.detail if notified is not None and completed(notified) else None
    if not detail or not detail.get("ts"):
        return None
    return Delivery(channel=str(detail.get("channel", "")), ts=str(detail["ts"]))


async def first_notice(deps: WatchDeps, incident: Incident) -> Action | None:
    """The action that posted the incident's first message (the thread's parent)."""
    first = f"notify-{incident.id}"
    return next((a for a in await deps.store.incidents.actions(incident.id) if a.id == first), None)


async def incident_thread(deps: WatchDeps, incident: Incident) -> Delivery | None:
    """The thread of the incident's first message, once that message has landed."""
    return thread_of(await first_notice(deps, incident))


async def reply(
    deps: WatchDeps, incident: Incident, thread: Delivery | None, *, what: str, text: str
) -> Action | None:
    """Post `text` in the incident's thread once (key `reply-<what>-<incident>`); None when the
    incident has no thread (its first message never landed)."""
    if thread is None:
        return None

    async def call() -> tuple[str | None, dict[str, Any]]:
        landed = await deps.notifier.reply(thread, Reply(f"reply-{what}-{incident.id}",
                                                         incident.id, text))  # fmt: skip
        return None, {"channel": landed.channel, "ts": landed.ts, "text": text}

    return await run_action(deps, f"reply-{what}-{incident.id}", incident, ActionKind.REPLY, call)


async def follow_up(
    deps: WatchDeps, case: Followed, revert: Action | None, notified: Action | None
) -> None:
    """Merge request, plot, revert reply, fix, fix reply; each once."""
    thread = thread_of(notified)
    if revert is None:
        await upload_plot(deps, case, thread)
        return
    merge = await _merge(deps, case, revert)
    await upload_plot(deps, case, thread)
    await reply(deps, case.incident, thread, what="revert", text=_revert_text(case, revert, merge))
    if not completed(revert):
        return
    fix = await _fix(deps, case, revert)
    if completed(fix):
        kind = (fix.detail or {}).get("kind")
        what = "Draft fix PR opened" if kind == "fix_pr" else "Bug issue opened (no fix PR)"
        why = (fix.detail or {}).get("reason", "")
        text = f"{what}: {fix.url}" + (f" ({why})" if kind != "fix_pr" and why else "")
    else:
        text = f"Fix step FAILED: {fix.error}"
    await reply(deps, case.incident, thread, what="fix", text=text)


def _revert_text(case: Followed, revert: Action, merge: Action | None) -> str:
    if revert.status is ActionStatus.SKIPPED:
        return f"Revert not pursued: {revert.error}"
    if not completed(revert):
        return f"Revert FAILED, a person must revert by hand: {revert.error}"
    text = f"Revert PR opened: {revert.url}"
    if case.decision.needs_human:
        return f"{text}. needs-human: {'; '.join(case.decision.reasons)}"
    if merge is None:
        return f"{text}. {'; '.join(case.decision.reasons)}"
    if completed(merge):
        return f"{text}. {(merge.detail or {}).get('note', '')}"
    return f"{text}. Auto-merge request FAILED: {merge.error}; a person merges it"


async def _merge(deps: WatchDeps, case: Followed, revert: Action) -> Action | None:
    number = (revert.detail or {}).get("number")
    if not case.decision.auto_merge or not completed(revert) or not number:
        return None

    async def call() -> tuple[str | None, dict[str, Any]]:
        done = await deps.forge.request_merge(
            case.service.repo, int(str(number)), allow_rest_merge=deps.settings.allow_rest_merge
        )
        return revert.url, {"state": str(done.state), "note": done.note}

    return await run_action(deps, f"merge-{case.incident.id}", case.incident, ActionKind.MERGE,
                            call)  # fmt: skip


async def _fixer(deps: WatchDeps, incident: Incident) -> Fixer:
    """`deps.fixer`, or the template when the incident's or the day's budget is spent."""
    if isinstance(deps.fixer, TemplateFixer):
        return deps.fixer
    caps = deps.settings.anthropic
    _, spent = await deps.store.usage.spent(incident_id=incident.id)
    if spent >= caps.incident_cap_usd:
        return TemplateFixer(f"the incident's Anthropic budget is spent (${spent:.2f})")
    _, today = await deps.store.usage.spent(since=deps.clock.now() - DAY)
    if today >= caps.daily_cap_usd:
        return TemplateFixer(f"the day's Anthropic budget is spent (${today:.2f})")
    return deps.fixer


async def _fix(deps: WatchDeps, case: Followed, revert: Action) -> Action:
    incident = case.incident

    async def call() -> tuple[str | None, dict[str, Any]]:
        culprit = _culprit(case)
        context = await _context(deps, case, culprit, revert)

        async def keep(usage: Usage) -> None:
            await deps.store.usage.record(
                incident.id,
                model=usage.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
                now=deps.clock.now(),
            )

        outcome = await draft_fix(
            deps.forge,
            await _fixer(deps, incident),
            context,
            merge_sha=culprit.merge_sha,
            gates=case.gates,
            on_usage=keep,
        )
        tokens, cost = await deps.store.usage.spent(incident_id=incident.id)
        return outcome.url, {
            "kind": outcome.kind,
            "number": outcome.number,
            "pr": culprit.number,
            "reason": outcome.reason,
            "tokens": tokens,
            "cost_usd": cost,
        }

    return await run_action(deps, fix_key(incident.id), incident, ActionKind.FIX, call)


def _culprit(case: Followed) -> MergedPR:
    """The top-ranked suspect among the reverted PRs."""
    by_number = {p.number: p for p in case.prs}
    for suspect in case.incident.suspects:
        if suspect.number in by_number:
            return by_number[suspect.number]
    if not case.prs:
        raise ForgeError("no reverted PR on record to fix")
    return case.prs[0]


def evidence(incident: Incident) -> tuple[str, ...]:
    """The regression and the suspects in lines a person (or a model) reads."""
    result = culprit_result(incident)
    ratio = is_ratio(result)
    lines = [
        f"{incident.sli}: {shown(result.baseline_value, ratio)} before the deploy, "
        f"{shown(result.watch_value, ratio)} after (statistic {result.statistic:.2f} "
        f">= threshold {result.threshold:.2f})"
    ]
    lines += [f"suspect #{s.number} (p={s.probability:.2f}): {s.reason}" for s in incident.suspects]
    return tuple(lines)


async def _context(
    deps: WatchDeps, case: Followed, culprit: MergedPR, revert: Action
) -> FixContext:
    repo = case.service.repo
    known = (await pr_files(deps, repo, [culprit])).known.get(culprit.number)
    files = sorted(known or ())
    before = await deps.forge.read_files(repo, f"{culprit.merge_sha}^", files)
    after = await deps.forge.read_files(repo, culprit.merge_sha, files)
    diff = "".join(
        "".join(
            difflib.unified_diff(
                (before.get(f) or "").splitlines(keepends=True),
                (after.get(f) or "").splitlines(keepends=True),
                f"a/{f}",
                f"b/{f}",
            )
        )
        for f in files
    )
    return FixContext(
        incident_id=case.incident.id, repo=repo, base_branch=case.service.default_branch,
        service=case.service.name, pr_number=culprit.number, pr_title=culprit.title,
        pr_url=culprit.url, pr_author=culprit.author, pr_body=culprit.body,
        spec=culprit.identity.spec, agent_session=culprit.identity.session, files=tuple(files),
        files_known=known is not None, diff=diff, evidence=evidence(case.incident),
        revert_url=revert.url, incident_url=deps.incident_url(case.incident.id),
    )  # fmt: skip


async def upload_plot(deps: WatchDeps, case: Followed, thread: Delivery | None) -> Action | None:
    """Share the regressed SLI's plot in the incident's thread once (key `plot-<incident>`);
    None when the incident has no thread (its first message never landed)."""
    if thread is None:
        return None
    incident, key = case.incident, f"plot-{case.incident.id}"

    async def call() -> tuple[str | None, dict[str, Any]]:
        png = await sli_plot(deps, case.deploy, case.service, incident.sli)
        if png is None:
            return None, {"uploaded": False, "reason": "no plot for this SLI (a gauge, or no data)"}
        upload = Upload(key, incident.id, filename=f"{incident.id}-{incident.sli}.png",
                        title=f"{case.service.name} {incident.sli} around deploy "
                              f"{case.deploy.sha[:10]}", data=png)  # fmt: skip
        with tracer.start_as_current_span("slack.upload"):
            file_id = await deps.notifier.upload(thread, upload)
        return None, {"uploaded": True, "file": file_id, "filename": upload.filename,
                      "channel": thread.channel, "thread_ts": thread.ts}  # fmt: skip

    return await run_action(deps, key, incident, ActionKind.UPLOAD, call)


async def sli_plot(deps: WatchDeps, deploy: Deploy, service: ServiceSettings,
                   sli_name: str | None) -> bytes | None:  # fmt: skip
    """A PNG of the regressed ratio SLI from a baseline before the deploy until now."""
    sli = next((s for s in service.slis if s.name == sli_name), None)
    if sli is None or sli.unit != "ratio":
        return None
    queries, step = sli.queries(service.step), service.step
    start, end = deploy.finished_at - service.baseline, deps.clock.now()
    try:
        with tracer.start_as_current_span("prometheus.fetch"):
            bad, total = await asyncio.gather(
                deps.source.query_range(queries["bad"], start, end, step),
                deps.source.query_range(queries["total"], start, end, step),
            )
    except MetricsError as exc:
        log.warning("no SLI plot for deploy %s: %s", deploy.id, exc)
        return None
    bads = {p.t: p.value for s in bad for p in s.samples}
    points = [(p.t, bads.get(p.t, 0.0) / p.value) for s in total for p in s.samples if p.value > 0]
    if len(points) < 2:  # noqa: PLR2004 - a line needs two points
        return None
    title = f"{service.name} {sli.name} around deploy {deploy.sha[:10]}"
    # Rendering is CPU work of tens of milliseconds: off the event loop, like the store's calls.
    return await asyncio.to_thread(sli_png, sorted(points), deploy.finished_at, title, sli.unit)
