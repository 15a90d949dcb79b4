"""Samples that reach Prometheus late are counted by the next evaluation (issue 14).

A sample app whose every sample reaches a real Prometheus `DELAY` seconds after its timestamp
(as through a remote-write or agent hop), scraped every second; one ratio SLI watched at a 5 s
step. Three evaluations run side by side at each step on the wall clock, through the production
`evaluate`: one that reads everything afresh (what the Watch did before it kept anything), one
that keeps its memory with `late` above the delay (the steps still within it are read again),
and one whose `late` is below the delay (a step read once is final too soon). The first two
must agree at every step; the third must lose the late samples, or this test could not fail.

The three read a moment apart, and a scrape landing between two reads of the step still filling
would make them differ with no fault in either: so the sample app is frozen while they read
(Prometheus then takes nothing new) and thawed after, the late samples arriving then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from loop.watch.pace import CountingSource
from observer.observe import Windows, evaluate
from observer.prometheus import PrometheusSource
from observer.slis import Sli, SliKind
from observer.verdict import Verdict
from observer.watch_memory import SliMemory
from tests.fakes.sample_app import SampleApp
from tests.prometheus_server import PrometheusServer
from tests.same import same
from tests.waiting import wait_for_async

pytestmark = pytest.mark.prometheus

DELAY = 3.0  # seconds from a sample's timestamp to its scrape
LATE = 4 * DELAY  # the kept memory's `late`: well past the delay, on a loaded machine too
STEP = 5.0
BASELINE = 20.0
WATCH = 30.0
SERVICE = "late"
SLI = Sli(
    name="errors",
    kind=SliKind.RATIO,
    bad=f'sum(increase(http_requests_total{{service="{SERVICE}",code="500"}}[$step]))',
    total=f'sum(increase(http_requests_total{{service="{SERVICE}"}}[$step]))',
    scrape_interval=1.0,
    min_events=50,
)


@pytest.fixture(scope="module")
def delayed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SampleApp, PrometheusServer]]:
    app = SampleApp(seed=7, delay=DELAY)
    app.configure(SERVICE, rate=50.0, error_ratio=0.02)
    app.start_in_thread()
    server = PrometheusServer(
        [urlsplit(app.url).netloc], workdir=tmp_path_factory.mktemp("late-prometheus")
    )
    server.start()
    yield app, server
    server.stop()
    app.stop()


def _json(verdict: Verdict) -> list[dict[str, Any]]:
    return [r.to_json() for r in verdict.results]


def _differing(one: Verdict, other: Verdict) -> list[tuple[str, Any, Any]]:
    """The result fields where two one-SLI verdicts differ: (field, one's, other's)."""
    a, b = _json(one)[0], _json(other)[0]
    return [(key, a[key], b.get(key)) for key in a if not same(a[key], b.get(key))]


async def _until(at: float) -> None:
    async def reached() -> bool:
        return time.time() >= at

    await wait_for_async(reached, within=at - time.time() + 5, what=f"the clock at {at}")


async def _frozen(app: SampleApp) -> None:
    """Freeze the app and wait until Prometheus has ingested all it was served before."""
    app.freeze()

    async def scraped() -> bool:
        return app.held_scrapes >= 1

    await wait_for_async(scraped, within=10, what="a scrape of the frozen sample app")


async def test_a_late_sample_is_counted_by_the_next_evaluation(
    delayed: tuple[SampleApp, PrometheusServer], tmp_path: Path
) -> None:
    app, server = delayed
    async with PrometheusSource(server.url) as prometheus:
        # The baseline's history first: BASELINE seconds of samples, scraped (late) by now.
        async def history() -> bool:
            at = time.time()
            series = await prometheus.query_range(f'http_requests_total{{service="{SERVICE}"}}',
                                                  at, at, 1.0)  # fmt: skip
            return bool(series)

        await wait_for_async(history, within=30, what="the first delayed samples")
        deployed = time.time() + BASELINE + DELAY
        windows = Windows(deployed, BASELINE, WATCH, STEP, ())
        fresh, kept, hasty = (CountingSource(prometheus) for _ in range(3))
        memory: dict[str, SliMemory] = {}
        too_soon: dict[str, SliMemory] = {}
        latest: list[tuple[float, float]] = []  # (grid time, total there) as first read
        differed = 0
        for k in range(1, round(WATCH / STEP) + 1):
            now = deployed + k * STEP + 0.3  # just after the step ends: its last samples are late
            await _until(now)
            await _frozen(app)
            try:
                full, carried, lost = await asyncio.gather(
                    evaluate(fresh, [SLI], windows, now),
                    evaluate(kept, [SLI], windows, now, memory=memory, late=LATE),
                    evaluate(hasty, [SLI], windows, now, memory=too_soon, late=0.1),
                )
            finally:
                app.thaw()
            assert same(_json(carried), _json(full)), (k, _differing(carried, full))
            differed += not same(_json(lost), _json(full))
            points = memory["errors"].growing["watch"]
            if latest:  # the step that was the latest at the last evaluation
                t, first = latest[-1]
                again = next(p[2] for p in points if abs(p[0] - t) < 1e-6)
                assert again > first, f"step {t - deployed:.0f}s: {first} then {again}"
            latest.append((points[-1][0], points[-1][2]))
        # Reading once, when a step has just ended, misses the samples still on their way.
        assert differed > 0
        # Two queries an evaluation (bad, total), whether everything is read afresh or only the
        # steps not yet settled: the baseline before the deploy (BASELINE a whole number of
        # steps) is read in the same range query as the watch, again while it may still grow.
        evaluations = round(WATCH / STEP)
        assert fresh.queries == 2 * evaluations
        assert kept.queries == 2 * evaluations
