"""Posting a Watch's early warnings (once per Watch, SLI and reason) and its SLIs' query
failures (once per service and cause); never a revert.

An evaluation's results carry the warning `observer.early_warning` found (`SliResult.warning`);
after the evaluation's transition is written, each one is posted as an action owned by the
deploy, keyed `warn-<deploy>-<sli>-<reason>`: the journal makes it at-most-once across restarts,
and the notifier's own key lookup covers a post whose answer was lost. A post Slack put off
stays pending and is tried again at the next evaluation that still shows the warning.

A query failure (`SliResult.failure`: a PromQL error, Prometheus unreachable, no series) is
posted the same way, keyed `query-failure-<service>-<cause>-<UTC day>` so that every Watch of
the service after the first finds it posted that day; a failure that lasts, or comes back later,
is posted again once a day, not never again. Its detail is the source's own error text (escaped
when rendered).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from attribution.records import Action, ActionKind, Deploy
from loop.watch.actions import run_action
from loop.watch.deps import WatchDeps
from loop.watch.retry import ActionRetry
from observer.verdict import Verdict
from rollback.notify import WarningNotice

log = logging.getLogger(__name__)


def warning_key(deploy_id: str, sli: str, reason: str) -> str:
    return f"warn-{deploy_id}-{sli}-{reason}"


def failure_key(service: str, cause: str, now: float) -> str:
    day = datetime.fromtimestamp(now, UTC).date().isoformat()
    return f"query-failure-{service}-{cause}-{day}"


def _notices(deploy: Deploy, verdict: Verdict, now: float) -> list[WarningNotice]:
    """The notices `verdict`'s results call for: each query failure, then each warning."""
    out = []
    for result in verdict.results:
        if result.failure:
            key, reason, detail = (failure_key(deploy.service, result.failure, now), result.failure,
                                   result.reason)  # fmt: skip
        elif result.warning:
            key, reason, detail = (warning_key(deploy.id, result.sli, result.warning),
                                   result.warning, result.warning_detail)  # fmt: skip
        else:
            continue
        out.append(WarningNotice(
            key=key, service=deploy.service, environment=deploy.environment,
            deploy_sha=deploy.sha, sli=result.sli, reason=reason, detail=detail, raised_at=now,
        ))  # fmt: skip
    return out


async def post_warnings(deps: WatchDeps, deploy: Deploy, verdict: Verdict) -> list[Action]:
    """Post each warning and query failure of `verdict` not posted yet; the actions as they
    stand afterwards."""
    done = []
    for notice in _notices(deploy, verdict, deps.clock.now()):

        async def call(notice: WarningNotice = notice) -> tuple[str | None, dict[str, Any]]:
            log.warning("watch %s: SLI %s %s: %s", deploy.id, notice.sli, notice.reason,
                        notice.detail)  # fmt: skip
            delivery = await deps.notifier.warn(notice)
            return None, {"sli": notice.sli, "reason": notice.reason, "detail": notice.detail,
                          "channel": delivery.channel, "ts": delivery.ts}  # fmt: skip

        try:
            action = await run_action(deps, notice.key, deploy.id, ActionKind.WARN, call)
        except ActionRetry as exc:
            log.warning("watch %s: notice %s not posted yet: %s", deploy.id, notice.key, exc)
            continue
        done.append(action)
    return done
