"""The GitHub and Slack stand-ins of `make bench-loop`, served from a thread of their own.

In production GitHub and Slack are other machines. Served on Rearguard's own event loop, the
stand-ins' work (GitHub's git commands run synchronously on its loop) would stall Rearguard's
coroutines, and that stall would land in Rearguard's spans as its own time. On their own thread
and loop, a stand-in call costs Rearguard only the wait for its answer, as a remote one does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

T = TypeVar("T")


class StandIns:
    """FakeGitHub and FakeSlack on a daemon thread's loop; each answer held `latency` seconds
    (low, high: drawn uniformly per call, seeded)."""

    def __init__(self, workdir: Path, repo: str, latency: tuple[float, float], seed: int) -> None:
        self._workdir, self._repo, self._latency, self._seed = workdir, repo, latency, seed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stand-ins",
                                        daemon=True)  # fmt: skip
        self.github: FakeGitHub
        self.slack: FakeSlack

    async def start(self) -> None:
        self._thread.start()
        await self._on_loop(self._start())

    async def _start(self) -> None:
        self.github = FakeGitHub(self._workdir, repo=self._repo)
        self.slack = FakeSlack()
        await self.github.start()
        await self.slack.start()
        self.github.delay(*self._latency, seed=self._seed)
        self.slack.delay(*self._latency, seed=self._seed + 1)

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a stand-in's plain method (git work) on its own thread, between its requests."""

        async def run() -> T:
            return fn(*args)

        return await self._on_loop(run())

    async def close(self) -> None:
        if not self._thread.is_alive():
            return
        await self._on_loop(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        await self.github.close()
        await self.slack.close()
