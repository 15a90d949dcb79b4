"""`ReportLane`: the observing check of each new Watch, shown on GitHub beside the Watches, not
inside their steps.

A Watch that awaited its observing report in its `deployed -> observing` step held its own task
until GitHub answered, and the scheduler starts no step of a Watch whose task runs: 1,000 deploys
at once made 1,000 reports at once, and their first evaluations waited behind them (in `make
bench-scale` at N = 1,000 the first minute's lag p99 was 13 s, every later minute's 0.2 s).
GitHub also asks for requests made serially, not concurrently, to stay clear of its secondary
rate limits. So the lane runs at most `IN_FLIGHT` reports at once, first come first served, each
in a task of its own that the Watch does not wait for.

A Watch's verdict report `settle`s its observing one first: one not yet started is dropped (the
verdict says more), one under way is waited for, so an in-progress check never lands after the
verdict. A report lost to a stop before it ran is not made again (as before, a stop between
the move and its report lost it too): the verdict is still shown when the Watch ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

IN_FLIGHT = 4
"""Reports running at once: few, as GitHub asks, and enough that a slow answer does not hold
up the rest (1,000 observing reports at GitHub's ~0.3 s per call take about two minutes)."""

Report = Callable[[], Awaitable[None]]


class ReportLane:
    """Reports by key (the Watch's deploy id), at most `in_flight` running; one per app."""

    def __init__(self, in_flight: int = IN_FLIGHT) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, not {in_flight}")
        self._slots = asyncio.Semaphore(in_flight)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: set[str] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def submit(self, key: str, report: Report) -> None:
        """Run `report` when a slot is free; a key already waiting or running is left as is."""
        if key in self._tasks:
            return
        task = asyncio.create_task(self._run(key, report), name=f"report {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._done(key, done))

    async def _run(self, key: str, report: Report) -> None:
        async with self._slots:
            self._started.add(key)
            try:
                await report()
            except Exception:
                log.exception("report %s failed", key)

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
            self._started.discard(key)

    async def settle(self, key: str) -> None:
        """Before `key`'s next report: drop its waiting one, or wait for the one under way."""
        task = self._tasks.get(key)
        if task is None:
            return
        if key not in self._started:
            task.cancel()
        await asyncio.wait([task])  # its outcome is its own: logged, or cancelled just now

    async def drain(self) -> None:
        """Wait until every report submitted so far (and any they submit) has run."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is waiting or running (a stop), and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
