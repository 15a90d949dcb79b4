"""A restart in the middle of 300 Watches (issue 14): the baselines are not queried again, and
every Watch evaluates again within one step of the server being back.

`rearguard serve` (its own process, the real command) watches 300 services of a sample app that a
real Prometheus scrapes every second, two ratio SLIs each at a 5 s step, its Prometheus queries
going through a logging proxy (`tests.scale_rig.QueryLog`). Once every Watch has read its
baselines complete (and so kept them in the store), the server is killed (SIGKILL: nothing is
flushed on the way out) and started again on the same store.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import aiohttp
import pytest

from tests.scale_rig import (
    Fleet,
    Logged,
    evaluations,
    fleet,
    post_deploys,
    rounds,
    served,
    service_of,
    services,
    wait_history,
)
from tests.serve_rig_ingest import Server, wait_up
from tests.waiting import wait_for_async

pytestmark = pytest.mark.prometheus

WATCHES = 300
STEP = 5.0
BASELINE = 20.0
LATE = 6.0  # `[prometheus] late_samples`: a baseline is final once read this long after its end
NAMES = [f"restart-{i:03d}" for i in range(WATCHES)]


async def test_a_restart_reads_the_baselines_back_and_resumes_within_a_step(
    tmp_path: Path,
) -> None:
    async with fleet(NAMES, tmp_path, scrape_interval=1) as rig:
        await _restart(rig, tmp_path)


async def _restart(rig: Fleet, tmp_path: Path) -> None:
    log = rig.log
    assert log is not None
    await wait_history(rig, BASELINE + 2)
    tables = services(NAMES, step=f"{STEP:g}s", watch="600s", baseline=f"{BASELINE:g}s")
    server, store = served(rig, tmp_path, tables,
                           {"scrape_interval": "1s", "late_samples": f"{LATE:g}s"})  # fmt: skip
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server)
            deployed = time.time()
            await post_deploys(session, server.url, NAMES, deployed)

        def before(entry: Logged) -> bool:
            """A read of the window before the deploy: alone (its range ends at the deploy) or
            with the watch in one query (it starts before the deploy and ends after it); a read
            of the watch alone starts at a step after the deploy."""
            return entry.start < deployed - 1e-3

        async def kept_all() -> bool:
            """Every service's baseline read complete, and two evaluations after that read. The
            Watch judges a read final by its own clock, taken before it queries, so the read seen
            here at `deployed + LATE` may still count as early there: the next evaluation then
            reads it again and keeps it with its transition, which is written before the one
            after that queries (a Watch evaluates again only once its last move is written)."""
            return kept_progress()[1] >= set(NAMES)

        def kept_progress() -> tuple[set[str], set[str]]:
            """Services whose baseline read is final, and those of them evaluated twice since."""
            final: dict[str, float] = {}
            for e in log.entries:
                if before(e) and e.at >= deployed + LATE:
                    final.setdefault(service_of(e.query), e.at)
            after = [e for e in log.entries
                     if e.at >= final.get(service_of(e.query), math.inf) + STEP / 2]  # fmt: skip
            return set(final), {name for name, n in rounds(after, STEP / 2).items() if n >= 2}

        def kept_detail() -> str:
            final, twice = kept_progress()
            return (
                f"{len(final)} of {WATCHES} read their baselines final, {len(twice)} "
                f"evaluated twice since; {len(log.entries)} range queries\n{_not_http(server)}"
            )

        await wait_for_async(kept_all, within=120, what="every Watch keeping its baselines",
                             interval=0.5, detail=kept_detail)  # fmt: skip
        server.kill()
        killed, mark = time.time(), len(log.entries)
        server.start()
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server)
        back = time.time()

        def resumed(evaluations: int) -> set[str]:
            """Services whose Watch has queried in `evaluations` evaluations since the restart."""
            done = rounds(log.entries[mark:], STEP / 2)
            return {name for name, n in done.items() if n >= evaluations}

        async def all_resumed() -> bool:  # and the first evaluation since then written
            return resumed(2) >= set(NAMES)

        def progress() -> str:
            return f"{len(resumed(1))}, {len(resumed(2))} of {WATCHES}\n{server.tail()}"

        await wait_for_async(all_resumed, within=4 * STEP, what="every Watch resuming",
                             detail=progress)  # fmt: skip
        again = [e for e in log.entries[mark:] if before(e)]
        assert not again, f"{len(again)} baseline queries after the restart, e.g. {again[0]}"
    finally:
        server.stop()
    # Each Watch's first evaluation after the restart came within one step of the server
    # being back (those overdue at once, the others at their own time).
    first: dict[str, float] = {}
    for deploy_id, _, observed_at, _ in evaluations(store):
        if observed_at >= killed:
            first.setdefault(deploy_id, observed_at)
    assert len(first) == WATCHES
    late = sorted(at - back for at in first.values())
    assert late[-1] <= STEP + 1.0, f"the last Watch resumed {late[-1]:.1f}s after the restart"


def _not_http(server: Server) -> str:
    """The end of the server's log without its HTTP client's request lines (one per call)."""
    lines = server.log.read_text(errors="replace").splitlines()
    return "\n".join([line for line in lines if "httpx HTTP Request" not in line][-30:])
