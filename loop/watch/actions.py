"""Running an action: one idempotent side effect of an incident (a revert PR, a notice, a reply,
a merge request, a fix), keyed so that a restart neither repeats nor loses it.

An action row is written `pending` before its call and finished after it: `completed` with the
URL and detail the call returned, or `failed` with the reason. A retryable failure (the forge,
the chat or the model said "later") leaves it `pending` and raises `ActionRetry`, which the Watch
turns into its next due time (`loop.watch.retry`); after `max_action_attempts` it is `failed`.
While pending, the action keeps when it may be tried again (`detail.retry_at`), for a caller
that is not itself put off by the delay (the change range, read while the Watch observes on).
A call that finds a person already decided against it (a revert PR closed unmerged) raises
`Declined`: the action is `skipped` with the reason. A completed, failed or skipped action is
never called again.

The regressed SLI's result, which every notice, revert body and fix context quotes, is read here
once as a typed `SliResult` (`culprit_result`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from attribution.records import Action, ActionKind, ActionStatus, Incident
from loop.watch.deps import WatchDeps
from loop.watch.retry import ActionRetry, retry_delay
from observer.retry import Retryable
from observer.verdict import SliResult, Status

Call = Callable[[], Awaitable[tuple[str | None, dict[str, Any]]]]
"""An action's call: it returns the URL (if any) and the detail to keep."""


class Declined(Exception):
    """A person already decided against what the action does; the message says who and how."""


async def run_action(
    deps: WatchDeps, key: str, incident: Incident | str, kind: ActionKind, call: Call
) -> Action:
    """Begin (or resume) the action `key` of `incident` (or, for a deploy's own change range,
    of the deploy's id), make its call if it is pending, record the outcome."""
    owner = incident if isinstance(incident, str) else incident.id
    action = await deps.store.incidents.begin_action(key, owner, kind, deps.clock.now())
    if action.status is not ActionStatus.PENDING:
        return action
    try:
        url, detail = await call()
    except Declined as exc:
        return await deps.store.incidents.finish_action(
            key, ActionStatus.SKIPPED, now=deps.clock.now(), error=str(exc)
        )
    except Retryable as exc:
        if action.attempts < deps.max_action_attempts:
            delay = retry_delay(
                action.attempts, deps.action_retry_seconds, deps.action_retry_cap, exc.retry_after
            )
            now = deps.clock.now()
            await deps.store.incidents.note_action_error(key, now, str(exc), retry_at=now + delay)
            raise ActionRetry(
                f"{kind} attempt {action.attempts} of {deps.max_action_attempts} failed, "
                f"retrying in {delay:.0f}s: {exc}",
                delay,
            ) from exc
        return await deps.store.incidents.finish_action(
            key, ActionStatus.FAILED, now=deps.clock.now(),
            error=f"gave up after {action.attempts} attempts: {exc}",
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any other failure is final for this action
        return await deps.store.incidents.finish_action(
            key, ActionStatus.FAILED, now=deps.clock.now(), error=str(exc)
        )
    return await deps.store.incidents.finish_action(
        key, ActionStatus.COMPLETED, now=deps.clock.now(), url=url, detail=detail
    )


def completed(action: Action | None) -> bool:
    """Whether `action` exists and its call succeeded."""
    return action is not None and action.status is ActionStatus.COMPLETED


def culprit_result(incident: Incident) -> SliResult:
    """The regressed SLI's result as the incident kept it (an empty inconclusive one if none)."""
    results = incident.verdict.get("results", [])
    if isinstance(results, list):
        for r in results:
            if isinstance(r, dict) and r.get("sli") == incident.sli:
                return SliResult.from_json(r)
    return SliResult(sli=str(incident.sli), status=Status.INCONCLUSIVE, reason=incident.reason)


def is_ratio(result: SliResult) -> bool:
    """Ratio SLIs keep baseline counts; gauges do not."""
    return bool(result.baseline_total)


def shown(value: float, ratio: bool) -> str:
    """A rate as a percentage (ratio SLIs) or a gauge's value, `n/a` when unknown."""
    if math.isnan(value):
        return "n/a"
    return f"{value * 100:.2f}%" if ratio else f"{value:.4g}"
