"""The scheduler: advances every due Watch, and keeps going whatever one of them does.

A Watch that raises is logged with its deploy id, pushed back by one tick and retried; the loop
itself never dies of one bad deploy.
"""

from __future__ import annotations

import asyncio
import logging

from opentelemetry import trace

from loop.deps import WatchDeps
from loop.phases import ACTIVE, WAITING
from loop.watch import advance

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rearguard.loop")

MAX_ROUNDS = 20
"""Transitions one tick may take per Watch (regressed -> rolling_back -> reverted is three)."""


async def _advance_traced(deps: WatchDeps, deploy_id: str) -> None:
    with tracer.start_as_current_span("watch.advance") as span:
        span.set_attribute("deployment.id", deploy_id)
        phase = await advance(deps, deploy_id)
        span.set_attribute("rearguard.phase", str(phase))


async def run_due(deps: WatchDeps, *, concurrency: int = 8, tick: float = 5.0) -> int:
    """Advance every Watch that is due now, repeatedly while transitions stay due; the count."""
    gate = asyncio.Semaphore(concurrency)
    taken = 0

    async def one(deploy_id: str) -> None:
        async with gate:
            try:
                await _advance_traced(deps, deploy_id)
            except Exception:
                log.exception("watch %s failed; retrying in %.0fs", deploy_id, tick)
                phase = await _phase(deps, deploy_id)
                now = deps.clock.now()
                await deps.store.transition(
                    deploy_id, phase, phase, now=now, next_due=now + tick,
                    reason="internal error; see the logs",
                )  # fmt: skip

    for _ in range(MAX_ROUNDS):
        due = await deps.store.due_watches([str(p) for p in (*ACTIVE, *WAITING)], deps.clock.now())
        if not due:
            break
        await asyncio.gather(*(one(w.deploy_id) for w in due))
        taken += len(due)
    return taken


async def _phase(deps: WatchDeps, deploy_id: str) -> str:
    state = await deps.store.watch(deploy_id)
    return state.phase if state else ""


async def run_forever(deps: WatchDeps, tick: float) -> None:
    """The background task: run what is due, then sleep one tick; until cancelled."""
    while True:
        try:
            await run_due(deps, tick=tick)
        except Exception:
            log.exception("scheduler tick failed; continuing")
        await deps.clock.sleep(tick)
