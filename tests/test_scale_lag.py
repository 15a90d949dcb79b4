"""300 Watches observing at once on `rearguard serve` (issue 14): each evaluation within 3 s of
when it was due, and every step evaluated.

Issue 14 asks this of 1,000 Watches; on this 2-core machine one instance saturates its core near
60 evaluations a second (about 450 Watches at a 15 s step; README "Capacity"), so 1,000 is not
met and this test holds the load one instance does hold.

The sample app serves 300 services that a real Prometheus scrapes every 5 s; one deploy of each
is posted at once, two ratio SLIs each at a 15 s step (the defaults'). After three steps of every
Watch the server is stopped and its store read: each evaluation keeps when it was due
(`observations.due_at`) beside when it ran.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import aiohttp
import pytest

from tests.scale_rig import evaluations, fleet, post_deploys, served, services, wait_history
from tests.serve_rig_ingest import wait_up
from tests.waiting import wait_for_async

pytestmark = pytest.mark.prometheus

WATCHES = 300
STEP = 15.0
BASELINE = 30.0  # two steps, the shortest baseline the config takes
STEPS = 3
LAG = 3.0
NAMES = [f"lag-{i:04d}" for i in range(WATCHES)]


def evaluations_total(metrics: str) -> float:
    """`rearguard_evaluations_total` in a `/metrics` page (0 before the first)."""
    for line in metrics.splitlines():
        if line.startswith("rearguard_evaluations_total "):
            return float(line.split()[1])
    return 0.0


async def test_three_hundred_watches_each_evaluate_within_three_seconds_of_due(
    tmp_path: Path,
) -> None:
    async with fleet(NAMES, tmp_path, scrape_interval=5, rate=2.0, logged=False) as rig:
        await wait_history(rig, BASELINE + 5)
        tables = services(NAMES, step=f"{STEP:g}s", watch="600s", baseline=f"{BASELINE:g}s")
        server, store = served(rig, tmp_path, tables, {"scrape_interval": "5s"})
        server.start()
        try:
            async with aiohttp.ClientSession() as session:
                await wait_up(session, server)
                deployed = time.time()
                ids = await post_deploys(session, server.url, NAMES, deployed)

                counted = (STEPS + 1) * WATCHES  # a round more: the STEPS-th are all written

                async def done() -> float:
                    async with session.get(f"{server.url}/metrics") as response:
                        text = await response.text()
                    return evaluations_total(text)

                async def all_done() -> bool:
                    return await done() >= counted

                await wait_for_async(all_done, within=(STEPS + 3) * STEP, interval=1.0,
                                     what=f"{counted} evaluations", detail=server.tail)  # fmt: skip
        finally:
            server.stop()
    kept = evaluations(store)
    by_watch: dict[str, list[tuple[float, float]]] = {}
    for deploy_id, _, observed_at, due_at in kept:
        assert due_at is not None
        by_watch.setdefault(deploy_id, []).append((observed_at, due_at))
    assert set(by_watch) == set(ids.values())
    lags = sorted(at - due for rows in by_watch.values() for at, due in rows)
    assert lags[0] >= -0.01, f"an evaluation ran {-lags[0]:.2f}s before it was due"
    worst = lags[-1]
    p99 = lags[math.ceil(0.99 * len(lags)) - 1]
    assert worst <= LAG, f"evaluation lag p99 {p99:.2f}s, worst {worst:.2f}s (over {LAG}s)"
    # Every step evaluated: consecutive evaluations of a Watch one step apart, none skipped.
    for rows in by_watch.values():
        dues = [due for _, due in rows[:STEPS]]
        assert len(dues) == STEPS
        gaps = [b - a for a, b in itertools.pairwise(dues)]
        assert all(abs(gap - STEP) < 0.5 for gap in gaps), gaps
