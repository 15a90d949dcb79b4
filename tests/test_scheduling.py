"""When a Watch is advanced: on the deploy's step grid, and by the server's scheduler as soon as
it is due rather than at its next tick."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from attribution.records import Deploy
from loop.clock import WallClock
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.scheduler import DISPATCH_GAP, Scheduler
from loop.watch.steps import next_step_due, step_offset
from tests.embedded import STEP, make_rig
from tests.waiting import wait_for_async


@pytest.mark.parametrize(
    ("deployed", "now", "offset", "expected"),
    [
        pytest.param(100.0, 100.0, 0.0, 130.0, id="at-the-deploy-first-step-end"),
        pytest.param(100.0, 95.0, 0.0, 130.0, id="before-the-deploy"),
        pytest.param(100.0, 130.0, 0.0, 160.0, id="on-a-boundary-the-next-one"),
        pytest.param(100.0, 130.4, 0.0, 160.0, id="late-evaluation-does-not-drift"),
        pytest.param(100.0, 159.99, 0.0, 160.0, id="just-before-a-boundary"),
        pytest.param(100.0, 310.0 + 1e-12, 0.0, 340.0, id="float-noise-on-a-boundary"),
        pytest.param(100.0, 100.0, 12.0, 142.0, id="offset-first-step"),
        pytest.param(100.0, 130.0, 12.0, 142.0, id="offset-past-the-plain-boundary-not-its-own"),
        pytest.param(100.0, 142.0, 12.0, 172.0, id="offset-on-its-boundary-the-next-one"),
        pytest.param(100.0, 143.5, 12.0, 172.0, id="offset-late-evaluation-does-not-drift"),
        pytest.param(100.0, 171.99, 12.0, 172.0, id="offset-just-before-its-boundary"),
        pytest.param(100.0, 262.0 - 1e-12, 12.0, 292.0, id="offset-float-noise-on-a-boundary"),
        # The clock woken at a next_due read back from the store (to the microsecond):
        pytest.param(
            1.7e9,
            1.7e9 + 44.2416424 - 4e-7,
            14.2416424,
            1.7e9 + 74.2416424,
            id="unix-time-a-fraction-of-a-microsecond-before-its-point",
        ),
    ],
)
def test_next_step_is_the_next_point_of_the_watchs_grid(
    deployed: float, now: float, offset: float, expected: float
) -> None:
    assert next_step_due(deployed, 30.0, now, offset) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("deploy_id", "step"),
    [("deploy-1", 30.0), ("dep_0123456789abcdef", 15.0), ("x", 1.0), ("", 15.0)],
)
def test_a_deploys_offset_is_stable_and_inside_its_step(deploy_id: str, step: float) -> None:
    """The same id gives the same offset in every process (no salted `hash()`), in [0, step)."""
    offset = step_offset(deploy_id, step)
    digest = hashlib.sha256(deploy_id.encode()).digest()
    assert offset == int.from_bytes(digest[:8], "big") / 2**64 * step
    assert 0.0 <= offset < step


def test_watches_deployed_together_spread_over_the_step() -> None:
    """A thousand services deployed at the same instant evaluate spread over the 15 s step: each
    fifteenth of it holds about a fifteenth of them, none more than twice that."""
    offsets = [step_offset(f"dep_{i:016x}", 15.0) for i in range(1000)]
    per_second = Counter(math.floor(o) for o in offsets)
    assert sorted(per_second) == list(range(15))
    assert max(per_second.values()) < 2 * 1000 / 15
    assert min(per_second.values()) > 1000 / 15 / 2


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
    """A 60 s tick, a deploy whose first step (at its offset) ends in half a second: the Watch is
    started at once (woken by the deploy) and evaluated when its step is due, not a minute
    later."""
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
            finished_at=time.time() - step_offset("deploy-1", STEP) - STEP + 0.5, source="test",
            repo=rig.repo.repo,
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
        assert state.next_due == pytest.approx(
            deploy.finished_at + step_offset(deploy.id, STEP) + 2 * STEP
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await deps.store.close()


async def test_a_watch_evaluates_at_its_offset_to_the_end_of_its_watch(tmp_path: Path) -> None:
    """Stepped when due on a manual clock, a Watch evaluates at `deploy + offset + k * step`
    through its last, which is at its offset past the watch's end (never before it)."""
    rig = await make_rig(tmp_path)
    try:
        deploy = await rig.deploy(1)
        await rig.step_until(deploy.id, Phase.HEALTHY)
        seen = await rig.deps.store.watches.observations(deploy.id, latest_only=False)
    finally:
        await rig.deps.store.close()
    service = rig.deps.settings.service("checkout")
    assert service is not None
    offset = step_offset(deploy.id, STEP)
    assert offset > 0  # the test says nothing if the offset were 0
    times = sorted({row["observed_at"] for row in seen})
    steps = round(service.watch / STEP)
    expected = [deploy.finished_at + offset + k * STEP for k in range(1, steps + 1)]
    assert times == pytest.approx(expected)
    assert times[-1] >= deploy.finished_at + service.watch


async def test_watches_due_a_moment_apart_are_looked_for_once_per_gap(tmp_path: Path) -> None:
    """The scheduler wakes when the next Watch is due and when a step finishes; 200 Watches due
    20 ms apart (deploys of a service the config does not watch: each moves to inconclusive at
    once) are advanced by a look every `DISPATCH_GAP` at most, not one each."""
    rig = await make_rig(tmp_path)
    deps = replace(rig.deps, clock=WallClock())
    scheduler = CountingScheduler(deps, tick=60.0)
    now = time.time() + 1
    for i in range(200):
        deploy = Deploy(f"gone-{i}", "not-watched", "production", f"{i:040x}", now, "test")
        await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, now + 0.02 * i)
    task = asyncio.create_task(scheduler.run_forever())

    async def all_ended() -> bool:
        rows = await deps.store.fetch("SELECT count(*) FROM watches WHERE phase = 'inconclusive'")
        return bool(rows[0][0] == 200)

    try:
        await wait_for_async(all_ended, within=30, what="every Watch advanced to inconclusive")
        ended = time.time()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await deps.store.close()
    assert scheduler.dispatches <= (ended - now) / DISPATCH_GAP + 3  # 4 s of Watches: ~40
    assert scheduler.dispatches < 200  # without the gap: one look per due Watch and per step
