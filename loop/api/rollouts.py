"""`POST /v1/gates/argo-rollouts`: the gate Argo Rollouts' `web` metric provider asks.

One call names a service, an environment and the canary's revision (`revision`, `image` or
`images`, mapped to the application's commit by `loop.api.revisions`; or `sha`). The first call
for a commit records its deploy through the CD hook's own path (`loop.api.cd.CD`: the same
record, journal row and Watch), so the Watch starts in canary mode (the service's SLIs with
`version_label` split the canary's series, labelled with the commit or its short form, from the
stable ones); every call answers the Watch's verdict with its numbers, always 200 so that Argo
reads the body (a non-2xx answer is a measurement Error to Argo, not a verdict):

    {"verdict": "observing" | "healthy" | "regressed" | "inconclusive", "phase", "reason",
     "deploy", "sha", "created", "culprit_sli", "results": [{"sli", "status", ...numbers}]}

`verdict` comes from the Watch's phase: `observing` until the Watch is final, `regressed` from
the moment it is (and through the rollback that follows). The shipped templates
(deploy/argo-rollouts/) read `healthy` as Successful, `regressed` as Failed and anything else as
neither, which Argo counts as Inconclusive.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiohttp import web

from loop.api.cd import CD, RESOLVED, resolve_body
from loop.api.context import DEPS, SETTINGS
from loop.api.fields import IngestError
from loop.api.ingest import parse_deploy_request
from loop.api.webhook import Parsed, journal
from loop.watch.phases import Phase

VERDICTS: dict[str, str] = {
    Phase.DEPLOYED: "observing",
    Phase.OBSERVING: "observing",
    Phase.HEALTHY: "healthy",
    Phase.INCONCLUSIVE: "inconclusive",
    Phase.REGRESSED: "regressed",
    Phase.ROLLING_BACK: "regressed",
    Phase.REVERTED: "regressed",
    Phase.RECOVERED: "regressed",
    Phase.ESCALATED: "regressed",
}
"""The gate's verdict for each Watch phase."""
NUMBERS = (
    "sli", "status", "mode", "reason", "baseline_value", "watch_value", "baseline_bad",
    "baseline_total", "watch_bad", "watch_total", "statistic", "threshold", "effect",
)  # fmt: skip

_locks: weakref.WeakKeyDictionary[web.Application, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock(app: web.Application) -> asyncio.Lock:
    """One lock per app: two measurements at once for a new commit make one deploy."""
    return _locks.setdefault(app, asyncio.Lock())


async def post_gate(request: web.Request) -> web.Response:
    """Start (once) and read the canary Watch of one revision; 200 with the verdict."""
    await resolve_body(request)
    data = request[RESOLVED]
    settings, deps = request.app[SETTINGS], request.app[DEPS]
    now = deps.clock.now()
    deploy = parse_deploy_request(data, settings, now)
    service = settings.service(deploy.service)
    if service is None or not any(sli.version_label for sli in service.slis):
        raise IngestError(422, "not_canary",
                          f"service {deploy.service!r} has no SLI with `version_label`: the "
                          "gate judges a canary against the stable version")  # fmt: skip
    created = False
    async with _lock(request.app):
        found = await deps.store.watches.latest_of_commit(
            deploy.service, deploy.environment, deploy.sha
        )
        if found is None:
            body = await request.read()
            await journal(request, CD, Parsed("deploy", deploy.id, data, deploy), body, now)
            found, created = deploy, True
    watch, verdict, _, _, _ = await deps.store.deploy_summary(found.id)
    phase = watch.phase if watch else Phase.DEPLOYED
    results: list[dict[str, Any]] = (verdict or {}).get("results") or []
    return web.json_response({
        "verdict": VERDICTS.get(phase, "observing"),
        "phase": str(phase),
        "reason": watch.reason if watch else None,
        "deploy": found.id,
        "sha": found.sha,
        "created": created,
        "culprit_sli": (verdict or {}).get("culprit_sli"),
        "results": [{k: r.get(k) for k in NUMBERS} for r in results],
    })  # fmt: skip


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/gates/argo-rollouts", post_gate)]
