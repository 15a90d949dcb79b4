"""What incidents teach, flowing back to the repositories: spec comments and lessons PRs.

An incident is confirmed when a person confirms it (`POST /v1/incidents/{id}/feedback`, the
Slack button) or when the revert restores health (`loop.watch.recovery`); each only records a
feedback row. The side effects are applied here, in one place, by a sweep the scheduler runs
beside the Watches (`learn`), so that a restart resumes them from the store:

    spec-<incident>   one comment on the culprit's spec issue (an action: written `pending`
                      before the call, the forge finding its hidden marker before it posts, so
                      neither a retry, a restart nor an answer lost after GitHub made it
                      gives a second); it waits until the revert and fix steps are settled, so
                      it can link them
    lessons           per repository, at most once a day and only with a confirmed incident the
                      last run did not learn from (`[lessons] auto`, `min_incidents`): the lessons
                      derived from the store (`attribution.lessons`), worded by the template or
                      the model (`rollback.lessons_model`), proposed as one PR updating the marked
                      section of the instructions file (`rollback.lessons_doc`), updated in place
                      while it is open. The run is claimed in `lessons_runs` before the forge is
                      called; one that failed or never finished is tried again an hour later.
                      `rearguard lessons` runs the same `propose_lessons` by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attribution.feedback import Blame, Signal
from attribution.lessons import ChangedFile, Lesson, Outcome, confirmed, derive, patch_lines
from attribution.records import ActionKind, ActionStatus, Incident, MergedPR
from attribution.store import Store
from loop.config import Settings
from loop.watch.actions import culprit_result, is_ratio, run_action, shown
from loop.watch.deps import WatchDeps
from loop.watch.followup import DAY, evidence
from loop.watch.retry import ActionRetry
from rollback.anthropic_fixer import AnthropicFixer
from rollback.fix import fix_key
from rollback.forge import FileProposal, ForgeError, ForgeReads, LearningForge, ProposalState
from rollback.lessons_doc import LessonsFileError, pr_body, pr_title, render, splice
from rollback.lessons_model import LessonWriter, ModelWriter, TemplateWriter
from rollback.spec_comment import SpecNote, comment_body, spec_issue, spec_key

log = logging.getLogger(__name__)

LESSONS_LABELS = ("rearguard", "lessons")
RETRY_FAILED = 3600.0
"""A lessons run that failed (GitHub down) or never finished (a crash) is tried again after this."""
MAX_DIFFS = 50
"""Culprit PRs whose diffs one run reads from the forge (the rest count by their paths)."""


@dataclass(frozen=True, slots=True)
class LessonsOutcome:
    """What a lessons run did: its state (`ProposalState`, or skipped/failed), the PR, the
    lessons written, and a sentence for people."""

    state: str
    url: str | None
    lessons: tuple[Lesson, ...]
    note: str

    def to_json(self) -> dict[str, Any]:
        """The outcome as `rearguard lessons --json` and `POST /v1/lessons` answer it."""
        return {"state": self.state, "url": self.url, "note": self.note,
                "lessons": [{"key": x.key, "text": x.text, "incidents": list(x.incidents),
                             "prs": list(x.prs)} for x in self.lessons]}  # fmt: skip


async def learn(deps: WatchDeps) -> None:
    """One sweep: the spec comments owed, then the lessons owed; a failure of one is logged and
    the rest go on (the next sweep tries again)."""
    forge = deps.forge
    if not isinstance(forge, LearningForge):
        return  # the demo's local git forge has no issues to comment on
    for incident_id in await deps.store.lessons.owed_spec_comments():
        try:
            await comment_on_spec(deps, forge, incident_id)
        except ActionRetry as exc:
            log.info("spec comment of %s: %s", incident_id, exc)
        except Exception:
            log.exception("spec comment of %s failed", incident_id)
    lessons = deps.settings.lessons
    if not (lessons.enabled and lessons.auto):
        return
    now = deps.clock.now()
    for repo in await deps.store.lessons.owed_lessons(now - DAY, now - RETRY_FAILED):
        try:
            done = await propose_for(deps, forge, repo, minimum=lessons.min_incidents)
            log.info("lessons of %s: %s", repo, done.note)
        except Exception:
            log.exception("lessons of %s failed", repo)


# -- spec comments -----------------------------------------------------------------------------


async def comment_on_spec(deps: WatchDeps, forge: LearningForge, incident_id: str) -> None:
    """Comment once on each spec issue the confirmed culprits name, once the revert and fix
    steps are settled (their URLs belong in the comment)."""
    store, now = deps.store, deps.clock.now()
    incident = await store.incidents.incident(incident_id)
    if incident is None:
        return
    actions = {a.id: a for a in await store.incidents.actions(incident_id)}
    own = actions.get(spec_key(incident_id))
    retry_at = (own.detail or {}).get("retry_at") if own else None
    if isinstance(retry_at, int | float) and retry_at > now:
        return
    reverts = [a for a in actions.values() if a.kind is ActionKind.REVERT]
    fix = actions.get(fix_key(incident_id))
    if any(a.status is ActionStatus.PENDING for a in reverts):
        return  # the revert is still being opened
    if any(a.status is ActionStatus.COMPLETED for a in reverts) and (
        fix is None or fix.status is ActionStatus.PENDING
    ):
        return  # the fix step follows a completed revert: wait for it too
    revert = next((a for a in reversed(reverts) if a.status is ActionStatus.COMPLETED), None)
    signals = await store.lessons.signals(incident_id)
    culprits = await _culprits(store, incident, signals)
    targets: dict[tuple[str, int], MergedPR] = {}
    for pr in culprits:
        target = spec_issue(pr.identity.spec, pr.repo)
        if target is not None:
            targets.setdefault(target, pr)

    async def call() -> tuple[str | None, dict[str, Any]]:
        if not targets:
            specs = [pr.identity.spec for pr in culprits if pr.identity.spec]
            why = f"the spec {specs[0]!r} is no GitHub issue" if specs else "no spec on record"
            return None, {"commented": False, "reason": why if culprits else "no culprit left"}
        made = []
        for (repo, number), pr in targets.items():
            note = SpecNote(
                incident_id=incident.id, service=incident.service,
                environment=incident.environment, sli=incident.sli,
                regression=_regression(incident), evidence=evidence(incident)[1:],
                pr_number=pr.number, pr_title=pr.title, pr_url=pr.url, how=_how(signals),
                revert_url=revert.url if revert else None,
                fix_url=fix.url if fix and fix.status is ActionStatus.COMPLETED else None,
                fix_kind=str((fix.detail or {}).get("kind")) if fix and fix.detail else None,
                incident_url=deps.incident_url(incident.id),
            )  # fmt: skip
            body = comment_body(note)
            made.append(await forge.comment_once(repo, number, spec_key(incident.id), body))
        issues = [f"{repo}#{number}" for repo, number in targets]
        return made[0].url, {"commented": True, "issues": issues, "urls": [m.url for m in made],
                             "reused": all(m.reused for m in made)}  # fmt: skip

    await run_action(deps, spec_key(incident.id), incident, ActionKind.SPEC, call)


async def _culprits(store: Store, incident: Incident, signals: Sequence[Signal]) -> list[MergedPR]:
    """The incident's culprit PRs after every signal (none: a later verdict took them back)."""
    if not incident.suspects:
        return []
    repo = incident.suspects[0].repo
    blame = Blame(incident.id, repo, tuple(s.number for s in incident.suspects),
                  incident.ambiguous, incident.revert_unit)  # fmt: skip
    found = confirmed([blame], signals)
    return await store.prs.of_repo(repo, found[0].culprits) if found else []


def _how(signals: Sequence[Signal]) -> str:
    if any(s.kind == "confirmed" for s in signals):
        return "confirmed by a person"
    return "confirmed when the revert restored health"


def _regression(incident: Incident) -> str:
    result = culprit_result(incident)
    ratio = is_ratio(result)
    return (
        f"went from {shown(result.baseline_value, ratio)} before the deploy to "
        f"{shown(result.watch_value, ratio)} after (statistic {result.statistic:.2f} >= "
        f"threshold {result.threshold:.2f})"
    )


# -- lessons -----------------------------------------------------------------------------------


async def propose_for(
    deps: WatchDeps, forge: LearningForge, repo: str, *, minimum: int = 1
) -> LessonsOutcome:
    """`propose_lessons` for `repo` with the app's own store, forge and writer, one proposal per
    repository at a time (the sweep and `POST /v1/lessons` cannot open two PRs)."""
    async with deps.lessons_locks.setdefault(repo, asyncio.Lock()):
        return await propose_lessons(
            deps.settings, deps.store, deps.forge, forge, await lesson_writer(deps),
            repo=repo, now=deps.clock.now(), minimum=minimum,
        )  # fmt: skip


async def lesson_writer(deps: WatchDeps) -> LessonWriter:
    """The model when the Fixer has one and the day's Anthropic budget is not spent; else the
    template."""
    if not isinstance(deps.fixer, AnthropicFixer):
        return TemplateWriter()
    _, today = await deps.store.usage.spent(since=deps.clock.now() - DAY)
    if today >= deps.settings.anthropic.daily_cap_usd:
        return TemplateWriter(f"the day's Anthropic budget is spent (${today:.2f})")
    return ModelWriter(deps.fixer)


async def propose_lessons(
    settings: Settings,
    store: Store,
    reads: ForgeReads,
    writes: LearningForge,
    writer: LessonWriter,
    *,
    repo: str,
    now: float,
    minimum: int = 1,
) -> LessonsOutcome:
    """Derive `repo`'s lessons from the store and propose them (see the module doc)."""
    service = settings.service_for_repo(repo)
    if service is None:
        return LessonsOutcome("skipped", None, (), f"no service of {repo} in the config")
    deployed, blames, signals = await store.evidence.learning(repo)
    found = confirmed(blames, signals)
    if len(found) < minimum:
        note = f"{len(found)} confirmed incident(s), fewer than {minimum}: nothing proposed"
        # Kept as a run, so the sweep asks again only a day later or after a new incident.
        await store.lessons.claim_run(repo, [c.incident_id for c in found], now)
        await store.lessons.finish_run(repo, "skipped", error=note)
        return LessonsOutcome("skipped", None, (), note)
    outcomes = {}
    for c in found:
        incident = await store.incidents.incident(c.incident_id)
        if incident is not None:
            outcomes[c.incident_id] = Outcome(incident.id, incident.service, incident.sli,
                                              incident.opened_at)  # fmt: skip
    diffs = await _diffs(reads, repo, sorted({n for c in found for n in c.culprits}))
    derived = derive(deployed, blames, signals, outcomes, diffs)
    worded = await writer.word(derived)
    if worded.usage is not None:
        u = worded.usage
        await store.usage.record(f"lessons:{repo}", model=u.model, input_tokens=u.input_tokens,
                                 output_tokens=u.output_tokens, cost_usd=u.cost_usd,
                                 now=now)  # fmt: skip
    lessons = worded.lessons
    path = settings.lessons.path_for(repo)
    section = render(lessons, settings.public_url)
    incidents = [c.incident_id for c in found]
    await store.lessons.claim_run(repo, incidents, now)
    proposal = FileProposal(
        repo=repo, branch=settings.lessons.branch, base_branch=service.default_branch, path=path,
        edit=lambda text: splice(text, section),
        message=f"{pr_title(repo)}\n\nRearguard-Key: lessons\n",
        title=pr_title(repo), body=pr_body(lessons, path, settings.public_url),
        labels=LESSONS_LABELS,
    )  # fmt: skip
    try:
        done = await writes.propose_file(proposal)
    except (ForgeError, LessonsFileError) as exc:
        await store.lessons.finish_run(repo, "failed", error=str(exc))
        return LessonsOutcome("failed", None, lessons, f"not proposed: {exc}")
    await store.lessons.finish_run(repo, str(done.state), url=done.url)
    said = {
        ProposalState.OPENED: f"opened {done.url}",
        ProposalState.UPDATED: f"updated {done.url}",
        ProposalState.UNCHANGED: f"{path} already holds these lessons",
    }[done.state]
    note = f"{len(lessons)} lesson(s) from {len(found)} incident(s): {said}"
    if worded.note:
        note += f" ({worded.note})"
    return LessonsOutcome(str(done.state), done.url, lessons, note)


async def _diffs(reads: ForgeReads, repo: str, numbers: list[int]) -> dict[int, list[ChangedFile]]:
    """The changed lines of culprit PRs from the forge; a PR it cannot list counts by paths."""
    out: dict[int, list[ChangedFile]] = {}
    for number in numbers[:MAX_DIFFS]:
        try:
            files = await reads.pull_files(repo, number)
        except ForgeError as exc:
            log.info("lessons of %s: no diff of #%d (%s); counting its paths", repo, number, exc)
            continue
        out[number] = [ChangedFile(f.path, *patch_lines(f.patch), status=f.status) for f in files]
    return out
