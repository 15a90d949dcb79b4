"""The scraped half of `make bench-detection` measures what it says: a tiny scenario at a 15 s
scrape, backfilled by the harness into a real Prometheus and read back through PrometheusSource,
gives the counts the harness drew."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench.detection.scraped import (
    deploy_time,
    example_service,
    fetch_all,
    served,
    sli_for,
    windows_for,
)
from bench.detection.scraped_scenarios import BASELINE, WATCH, scenario_set, scrape
from observer.observe import SliData, fetch_points
from observer.prometheus import PrometheusSource
from observer.slis import Sli, SliKind

pytestmark = pytest.mark.prometheus

SCRAPE = 15


def test_backfilled_scrapes_read_back_as_the_drawn_per_step_counts(tmp_path: Path) -> None:
    """Per 15 s step, the counters' increase is the drawn requests; the example config's query at
    a 60 s step, on the plan Rearguard makes for a 15 s scrape (`observer.scrape_interval`), is
    exactly the increase from the last sample of the step before to the step's last sample."""
    service, example = example_service()
    deployed_at = deploy_time(time.time())
    (scenario,) = scenario_set(7, SCRAPE, {"step": 1})
    kept = scrape(scenario, deployed_at, SCRAPE, 7)
    sli = sli_for(example, scenario.name)
    windows = replace(windows_for(service, deployed_at), step=60.0)
    with served([(scenario, kept)], tmp_path) as server:
        raw = Sli(
            "raw", SliKind.GAUGE, query=f'sum(http_requests_total{{service="{scenario.name}"}})'
        )
        first = deployed_at - BASELINE + scenario.offset

        async def read() -> tuple[tuple[tuple[float, float, float], ...], SliData | str]:
            async with PrometheusSource(server.url) as source:
                points = await fetch_points(source, raw, [first, first + WATCH], SCRAPE)
            (data,) = await fetch_all(server.url, [sli], windows)
            return points, data

        points, data = asyncio.run(read())
    drawn = {t: req for t, req, _ in kept.now}
    assert len(points) == WATCH // SCRAPE + 1
    assert [p[1] for p in points] == [drawn[int(p[0])] for p in points]
    per_step = [b[1] - a[1] for a, b in itertools.pairwise(points)]
    expected = scenario.rps * SCRAPE * len(per_step)  # Poisson: within 5 sigma of the rate
    assert abs(sum(per_step) - expected) < 5 * math.sqrt(expected)
    assert min(per_step) >= 0
    assert isinstance(data, SliData)
    assert len(data.watch) == WATCH // 60
    for t, bad, total in data.watch:
        before = [(req, err) for ts, req, err in kept.now if ts <= t - 60][-1]
        last = [(req, err) for ts, req, err in kept.now if ts <= t][-1]
        assert total == pytest.approx(last[0] - before[0], rel=1e-3)
        assert bad == pytest.approx(last[1] - before[1], rel=1e-3, abs=1e-3)
