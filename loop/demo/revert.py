"""The demo's last act: a person merges Rearguard's revert, CD deploys it, and Rearguard
recognises that deploy and verifies recovery against the baseline from before the regression.

Kept apart from `loop.demo.run` so the demo's steps stay short: this module merges the revert branch
in the demo's git repository, records the deploy as CD would, and runs the same scheduler until
the incident's Watch is final, printing both Watches' transitions.
"""

from __future__ import annotations

from collections.abc import Callable

from attribution.records import Deploy
from loop.clock import ManualClock
from loop.demo.repo import DemoRepo, merge_branch
from loop.watch.deps import WatchDeps
from loop.watch.phases import ACTIVE, WAITING, Phase
from loop.watch.scheduler import run_due

Say = Callable[[str], None]

REVIEW_DELAY = 600.0
"""How long the demo's person takes to review and merge the revert PR, in seconds."""


async def deploy_the_revert(
    deps: WatchDeps,
    repo: DemoRepo,
    *,
    service: str,
    step: float,
    restore: Callable[[float], None],
    say: Say,
) -> None:
    """Merge every opened revert, deploy main, and step until the incidents are final.

    `restore(t)` tells the simulated traffic that the culprit's code is gone from `t` on.
    """
    clock = deps.clock
    assert isinstance(clock, ManualClock)
    incidents = await deps.store.incidents.recent()
    branches = [
        f"rearguard/{r.action_id}"
        for incident in incidents
        for r in await deps.store.rounds.of_incident(incident.id)
        if r.outcome is None
    ]
    if not branches:
        return
    await clock.sleep(REVIEW_DELAY)
    previous = max(await deps.store.watches.deploys(), key=lambda d: d.finished_at)
    t0 = clock.now()
    for branch in branches:
        sha = merge_branch(repo.path, branch, t0)
        say(f"\n{_at(t0, t0)} a person merges {branch} into main ({sha[:10]}); CD deploys it")
    restore(t0)
    deploy = Deploy(
        id=f"demo-deploy-{len(repo.deploys) + 1}", service=service, environment="production",
        sha=sha, finished_at=t0, source="demo", repo=repo.repo, previous_sha=previous.sha,
    )  # fmt: skip
    await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, t0)
    watched = [deploy.id, *(i.deploy_id for i in incidents)]
    seen = {d: len(await deps.store.watches.timeline(d)) for d in watched}
    working = {str(p) for p in (*ACTIVE, *WAITING)}
    for _ in range(200):
        await run_due(deps, tick=step)
        for deploy_id in watched:
            timeline = await deps.store.watches.timeline(deploy_id)
            for row in timeline[seen[deploy_id] :]:
                say(f"  {_at(row['at'], t0)} [{deploy_id}] {row['from'] or '-'} -> {row['to']}: "
                    f"{row['reason']}")  # fmt: skip
            seen[deploy_id] = len(timeline)
        phases = [await deps.store.watches.watch(d) for d in watched]
        if all(w is None or w.phase not in working for w in phases):
            break
        await clock.sleep(step)


def _at(t: float, start: float) -> str:
    minutes, seconds = divmod(int(t - start), 60)
    return f"T+{minutes:02d}:{seconds:02d}"
