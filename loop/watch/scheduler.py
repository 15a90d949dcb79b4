"""The scheduler: advances every due Watch, and keeps going whatever one of them does.

A Watch that raises is logged with its deploy id, pushed back by one tick and retried; the loop
itself never dies of one bad deploy.

Two drivers share that rule. `run_due` steps every due Watch round by round (tests and the demo,
on a manual clock). `Scheduler` is the server's: each due Watch is advanced in a task of its own,
so one Watch waiting on GitHub never holds up another's evaluation, and the scheduler sleeps
until the earliest `next_due` (at most a tick), woken early when a Watch finishes a transition
or a deploy arrives; a Watch is advanced as soon as it is due, not up to a tick later.

Both also run the learning sweep (`loop.watch.learn.learn`: spec comments and lessons PRs of
confirmed incidents): `run_due` after the Watches, `Scheduler` in a task of its own beside them,
one sweep at a time and at most one a tick, so GitHub being slow for a lessons PR never holds up
a Watch.

Neither driver caps how many Watches run at once: a Watch spends its step waiting on
Prometheus, GitHub or Slack, and a shared cap is one that slow Watches fill while the due ones
wait behind them (ten Watches whose queries hung until their timeout once held up an unrelated
service's revert by a minute). What bounds the work is per Watch: one task per Watch at a time,
and at most `QUERIES_PER_WATCH` of its queries in flight (`observer.sources.BoundedSource`),
each with the source's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from opentelemetry import trace

from attribution.records import WatchState
from loop.watch.deps import WatchDeps
from loop.watch.learn import learn
from loop.watch.phases import ACTIVE, WAITING, Phase, allowed
from loop.watch.steps import advance
from loop.watch.transitions import Transition, apply
from observer.sources import BoundedSource

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rearguard.loop")

MAX_ROUNDS = 20
"""Transitions one tick may take per Watch (regressed -> rolling_back -> reverted is three)."""

QUERIES_PER_WATCH = 8
"""Queries one Watch step runs at once: one SLI's windows (the watch, the baseline before the
deploy, a day and a week earlier) times its two queries (bad, total) go out together."""

DISPATCH_GAP = 0.1
"""Seconds from one dispatch to the next at least. Every finished step wakes the scheduler (its
next transition may be due at once), and each dispatch reads the watches table, about a
millisecond and a half of the store's one writer thread whatever it finds: at 1,000 Watches on a
15 s step, 67 reads a second took a fifth of that thread. Woken sooner, the scheduler looks once
the gap has passed, so a transition due at once starts at most this much later."""

_PHASES = [str(p) for p in (*ACTIVE, *WAITING)]


async def _advance_traced(deps: WatchDeps, deploy_id: str, seen: WatchState | None) -> Phase | None:
    with tracer.start_as_current_span("watch.advance") as span:
        span.set_attribute("deployment.id", deploy_id)
        phase = await advance(deps, deploy_id, seen=seen)
        span.set_attribute("rearguard.phase", str(phase))
        return phase


async def _advance_once(
    deps: WatchDeps, deploy_id: str, tick: float, seen: WatchState | None = None
) -> None:
    """One transition, its queries bounded by a limit of its own; on an error, the Watch is
    logged and pushed back by one tick. `seen`: the Watch as the due query just read it."""
    try:
        own = replace(deps, source=BoundedSource(deps.source, QUERIES_PER_WATCH))
        await _advance_traced(own, deploy_id, seen)
    except Exception:
        log.exception("watch %s failed; retrying in %.0fs", deploy_id, tick)
        state = await deps.store.watches.watch(deploy_id)
        if state is None or not allowed(Phase(state.phase), Phase(state.phase)):
            return
        phase = Phase(state.phase)
        again = Transition(deploy_id, phase, phase, "internal error; see the logs",
                           deps.clock.now() + tick, version=state.version)  # fmt: skip
        await apply(deps, again)


async def run_due(deps: WatchDeps, *, tick: float = 5.0) -> int:
    """Advance every Watch that is due now, repeatedly while transitions stay due; the count."""
    taken = 0
    for _ in range(MAX_ROUNDS):
        due = await deps.store.watches.due_watches(_PHASES, deps.clock.now())
        if not due:
            break
        await asyncio.gather(*(_advance_once(deps, w.deploy_id, tick, w) for w in due))
        taken += len(due)
    await deps.reports.drain()  # on a manual clock, what a step set off is done when it returns
    await _learn_once(deps)
    return taken


async def _learn_once(deps: WatchDeps) -> None:
    try:
        await learn(deps)
    except Exception:
        log.exception("the learning sweep failed; retrying on the next one")


class Scheduler:
    """The server's background scheduler on the wall clock; `wake()` makes it look again now."""

    def __init__(self, deps: WatchDeps, tick: float) -> None:
        self._deps = deps
        self._tick = tick
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._learning: asyncio.Task[None] | None = None
        self._learnt_at = float("-inf")

    def wake(self) -> None:
        """Something changed (a deploy arrived, a Watch moved on): look for due Watches now."""
        self._wake.set()

    @property
    def running(self) -> frozenset[str]:
        """Deploy ids whose Watch is being advanced right now."""
        return frozenset(self._running)

    async def dispatch(self) -> float:
        """Start a task for every due Watch not already running; seconds until the next is due
        (at most a tick, which also bounds how late a Watch woken from outside is seen)."""
        now = self._deps.clock.now()
        upcoming = await self._deps.store.watches.due_watches(_PHASES, now, with_next=True)
        wait = self._tick
        for w in upcoming:
            if w.next_due > now:
                wait = min(wait, w.next_due - now)
            elif w.deploy_id not in self._running:
                self._running[w.deploy_id] = asyncio.create_task(self._drive(w))
        idle = self._learning is None or self._learning.done()
        if idle and now - self._learnt_at >= self._tick:  # at most a sweep a tick
            self._learnt_at = now
            self._learning = asyncio.create_task(_learn_once(self._deps))
        return max(wait, 0.0)

    async def _drive(self, due: WatchState) -> None:
        try:
            await _advance_once(self._deps, due.deploy_id, self._tick, due)
        except Exception:
            log.exception("watch %s: could not record its failure", due.deploy_id)
        finally:
            self._running.pop(due.deploy_id, None)
            self._wake.set()  # its next transition may be due at once (regressed -> rolling_back)

    async def run_forever(self) -> None:
        """Dispatch, then sleep until the next Watch is due or something wakes us; until
        cancelled, when the Watches being advanced are cancelled too (each resumes on restart
        from its last written transition)."""
        last = float("-inf")
        try:
            while True:
                gap = last + DISPATCH_GAP - time.monotonic()
                if gap > 0:  # woken again at once: look when the gap has passed, not now
                    await asyncio.sleep(gap)
                self._wake.clear()
                last = time.monotonic()
                try:
                    wait = await self.dispatch()
                except Exception:
                    log.exception("scheduler dispatch failed; continuing")
                    wait = self._tick
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            tasks = list(self._running.values())
            if self._learning is not None:
                tasks.append(self._learning)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._deps.reports.close()


async def run_forever(deps: WatchDeps, tick: float) -> None:
    """The background task: advance Watches as they fall due; until cancelled."""
    await Scheduler(deps, tick).run_forever()
