"""A deploy's change range: the PRs it carries, read from the forge as an action of its own.

The range is the forge's commits between the previous deploy's commit and this one, matched to
the PRs on record (learned by webhook), completed by the PRs of commits none of them matched, and,
in a monorepo, narrowed to the service's paths. Reading it is an action like a revert, run by
`run_action` and kept in the same table, keyed `range-<deploy>` and owned by the deploy (it
changes nothing outside, so it is not one of an incident's actions): a retryable forge failure
(GitHub 5xx, a rate limit) leaves it pending and it is tried again after a growing delay, and
after the budget it is `failed` with the reason, which the incident's notice repeats.

The Watch does not wait for it: it observes from the first step whatever GitHub says. Only an
incident waits, since it needs its suspects; the regressed Watch stays `observing` until the
range is read or given up (`ChangeRange.prs` is None meanwhile, `retry_at` says when to look
again). Given up, the range is taken from the PRs on record alone when both of its ends are PRs
on record (the default branch's PRs land one after another, so those merged between the two are
the range); otherwise it is empty and the incident escalates to people, saying why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from attribution.changes import RangeCommit, change_set
from attribution.records import Action, ActionKind, ActionStatus, Deploy, MergedPR
from attribution.watch_rows import DeployPrs
from loop.config import ServiceSettings
from loop.watch import attribute
from loop.watch.actions import run_action
from loop.watch.deps import WatchDeps
from loop.watch.retry import ActionRetry


@dataclass(frozen=True, slots=True)
class ChangeRange:
    """What is known of a deploy's PRs: `prs` (None while the forge is still to be asked again,
    at `retry_at`), a note for people, and the rows to keep with the step's transition."""

    prs: tuple[MergedPR, ...] | None
    note: str
    retry_at: float | None = None
    rows: tuple[DeployPrs, ...] = ()


def range_key(deploy_id: str) -> str:
    """The idempotency key of a deploy's range action."""
    return f"range-{deploy_id}"


OnRange = Callable[[list[RangeCommit]], Awaitable[None]]
"""What else needs the range's commits once they are read (the revert it may carry)."""


async def resolve(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, on_range: OnRange
) -> ChangeRange:
    """The deploy's PRs: read from the forge now when that is due (the first time, or its retry
    time has come), else what the range action already holds. `on_range` gets the commits
    inside the action, so a restart before it finished gives them again."""
    base = await _base(deps, deploy)
    if base is None:
        note = "no previous deploy or previous_sha: the change range is unknown"
        return _known(deploy, service, [], note)
    now, held = deps.clock.now(), await _action(deps, deploy.id)
    if held is not None and (known := await _held(deps, deploy, service, base, held)) is not None:
        return known
    found: list[MergedPR] = []

    async def call() -> tuple[str | None, dict[str, Any]]:
        commits = await deps.forge.commits_between(service.repo, base, deploy.sha)
        in_range = [RangeCommit(c.sha, c.message, c.parents) for c in commits]
        await on_range(in_range)
        prs, note = await _matched(deps, service, in_range)
        found.extend(prs)
        return None, {"prs": [p.number for p in prs], "note": note, "commits": len(commits)}

    try:
        done = await run_action(deps, range_key(deploy.id), deploy.id, ActionKind.RANGE, call)
    except ActionRetry as exc:
        return ChangeRange(None, f"change range unresolved: {exc}", now + exc.delay)
    if done.status is ActionStatus.COMPLETED:
        return _known(deploy, service, found, str((done.detail or {}).get("note", "")))
    return await _given_up(deps, deploy, service, base, done)


async def _held(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, base: str, held: Action
) -> ChangeRange | None:
    """What an earlier step's range action tells without asking the forge; None when it is
    time to ask again."""
    if held.status is ActionStatus.COMPLETED:
        detail = held.detail or {}
        prs = await deps.store.prs.of_repo(service.repo, _numbers(detail))
        return _known(deploy, service, prs, str(detail.get("note", "")))
    if held.status is not ActionStatus.PENDING:
        return await _given_up(deps, deploy, service, base, held)
    retry_at = _retry_at(held)
    if retry_at is not None and retry_at > deps.clock.now():
        return ChangeRange(None, f"change range unresolved: {held.error}", retry_at)
    return None


async def _given_up(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, base: str, action: Action
) -> ChangeRange:
    """The range of a deploy whose forge read failed for good: from the PRs on record, what
    was used kept beside the failure (once) for the notice."""
    prs, used = await _from_records(deps, deploy, service, base)
    if "note" not in (action.detail or {}):
        detail: dict[str, Any] = {"prs": [p.number for p in prs], "note": used}
        await deps.store.incidents.finish_action(
            action.id, action.status, now=deps.clock.now(), detail=detail, error=action.error
        )
    return _known(deploy, service, prs, f"{_failed(action)}; {used}")


async def failure(deps: WatchDeps, deploy_id: str) -> str | None:
    """Why the deploy's range could not be read, and what was used instead; None if it was."""
    held = await _action(deps, deploy_id)
    if held is None or held.status is not ActionStatus.FAILED:
        return None
    return f"{_failed(held)}; {(held.detail or {}).get('note', '')}".rstrip("; ")


def _failed(action: Action) -> str:
    return f"change range unresolved: {action.error}"


async def _base(deps: WatchDeps, deploy: Deploy) -> str | None:
    if deploy.previous_sha is not None:
        return deploy.previous_sha
    previous = await deps.store.watches.previous_deploy(deploy)
    return previous.sha if previous else None


async def _action(deps: WatchDeps, deploy_id: str) -> Action | None:
    key = range_key(deploy_id)
    return next((a for a in await deps.store.incidents.actions(deploy_id) if a.id == key), None)


def _retry_at(action: Action) -> float | None:
    value = (action.detail or {}).get("retry_at")
    return float(value) if isinstance(value, int | float) else None


def _numbers(detail: dict[str, object]) -> list[int]:
    numbers = detail.get("prs")
    return [n for n in numbers if isinstance(n, int)] if isinstance(numbers, list) else []


def _known(deploy: Deploy, service: ServiceSettings, prs: list[MergedPR], note: str) -> ChangeRange:
    rows = (DeployPrs(deploy.id, service.repo, tuple(p.number for p in prs)),)
    return ChangeRange(tuple(prs), note, rows=rows)


async def _matched(
    deps: WatchDeps, service: ServiceSettings, in_range: list[RangeCommit]
) -> tuple[list[MergedPR], str]:
    """The range's commits as PRs: those on record, then those GitHub finds for the rest."""
    known = await deps.store.prs.of_repo(service.repo)
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


async def _from_records(
    deps: WatchDeps, deploy: Deploy, service: ServiceSettings, base: str
) -> tuple[list[MergedPR], str]:
    """The range as the PRs on record tell it, when both ends are PR merges on record: the PRs
    merged into the default branch after the one that landed `base`, up to the one that landed
    the deploy's commit."""
    known = [p for p in await deps.store.prs.of_repo(service.repo)
             if p.base_ref == service.default_branch]  # fmt: skip
    by_merge = {p.merge_sha: p for p in known}
    low, high = by_merge.get(base), by_merge.get(deploy.sha)
    if low is None or high is None:
        return [], "no PR on record bounds the range at both ends, so none is taken from records"
    between = [p for p in known if low.merged_at < p.merged_at <= high.merged_at
               and p.number != low.number]  # fmt: skip
    if high not in between:
        between.append(high)
    prs, _ = await attribute.in_service_paths(deps, service, between)
    return prs, (
        f"used the {len(prs)} PR(s) on record merged after #{low.number} up to #{high.number}"
    )
