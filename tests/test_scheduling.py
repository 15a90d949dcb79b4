"""When a Watch is advanced: on the deploy's step grid, and by the server's scheduler as soon as
it is due rather than at its next tick."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from attribution.records import Deploy
from loop.clock import WallClock
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.scheduler import Scheduler
from loop.watch.steps import next_step_due
from tests.embedded import STEP, make_rig
from tests.waiting import wait_for_async


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(100.0, 130.0, id="at-the-deploy-first-step-end"),
        pytest.param(95.0, 130.0, id="before-the-deploy"),
        pytest.param(130.0, 160.0, id="on-a-boundary-the-next-one"),
        pytest.param(130.4, 160.0, id="late-evaluation-does-not-drift"),
        pytest.param(159.99, 160.0, id="just-before-a-boundary"),
        pytest.param(100.0 + 30 * 7 + 1e-12, 100.0 + 30 * 8, id="float-noise-on-a-boundary"),
    ],
)
def test_next_step_is_the_next_boundary_of_the_deploys_grid(now: float, expected: float) -> None:
    assert next_step_due(100.0, 30.0, now) == pytest.approx(expected)


class CountingScheduler(Scheduler):
    """The server's scheduler, counting the times it has looked for due Watches."""

    def __init__(self, deps: WatchDeps, tick: float) -> None:
        super().__init__(deps, tick)
        self.dispatches = 0

    async def dispatch(self) -> float:
        wait = await super().dispatch()
        self.dispatches += 1
        return wait

    async def has_looked(self) -> bool:
        """Whether a first dispatch has finished (so the scheduler now sleeps up to a tick)."""
        return self.dispatches > 0


async def test_scheduler_evaluates_a_watch_when_due_not_a_tick_later(tmp_path: Path) -> None:
    """A 60 s tick, a deploy whose first step ends in half a second: the Watch is started at
    once (woken by the deploy) and evaluated when its step is due, not a minute later."""
    rig = await make_rig(tmp_path)
    deps = replace(rig.deps, clock=WallClock())
    scheduler = CountingScheduler(deps, tick=60.0)
    task = asyncio.create_task(scheduler.run_forever())
    try:
        # The scheduler has looked, found nothing, and sleeps a tick: only a wake-up can help.
        await wait_for_async(scheduler.has_looked, within=20, what="the scheduler's first look")
        planned = rig.repo.deploys[0]
        deploy = Deploy(
            id="deploy-1", service="checkout", environment="production", sha=planned.sha,
            finished_at=time.time() - STEP + 0.5, source="test", repo=rig.repo.repo,
            previous_sha=planned.previous_sha,
        )  # fmt: skip
        await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, time.time())
        scheduler.wake()
        await wait_for_async(
            lambda: deps.store.watches.observation_count(deploy.id),
            within=20,  # well inside the 60 s tick
            what="the Watch to be evaluated when due",
        )
        state = await deps.store.watches.watch(deploy.id)
        assert state is not None
        assert state.phase == Phase.OBSERVING
        assert state.next_due == pytest.approx(deploy.finished_at + 2 * STEP)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await deps.store.close()
