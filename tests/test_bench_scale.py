"""`make bench-scale` measures what it says: its arithmetic over crafted /proc texts, store runs,
query logs and histograms, and a tiny run end to end on a real Prometheus and a served Rearguard."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.scale.measure import (
    LoggedQuery,
    WatchRun,
    cores,
    cpu_seconds,
    due_times,
    histogram_quantile,
    lags,
    logged_queries,
    queries_per_evaluation,
    status_mb,
    steps_evaluated,
)
from bench.scale.run import SUMMARY_KEYS, analyse, scale_service, targets
from tests.shared_fixtures import REPO_ROOT

STAT = "4242 (python3 -m loop) S 1 4242 4242 0 -1 4194304 9 0 0 0 250 50 30 20 20 0 5 0 99 1 2"
STATUS = "Name:\tpython3\nVmHWM:\t  307200 kB\nVmRSS:\t  204800 kB\nThreads:\t5\n"


def test_cpu_time_is_user_and_system_time_of_the_process_and_its_children() -> None:
    """Fields 14-17 of /proc/PID/stat in clock ticks, a command name with spaces before them."""
    assert cpu_seconds(STAT, 100) == pytest.approx((250 + 50 + 30 + 20) / 100)


@pytest.mark.parametrize(("key", "mb"), [("VmRSS", 200.0), ("VmHWM", 300.0)])
def test_memory_figures_are_read_in_mb(key: str, mb: float) -> None:
    """A kB line of /proc/PID/status, in MB."""
    assert status_mb(STATUS, key) == mb


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 10, 0.5),  # samples at 0 and 10: 5 CPU seconds over 10 s
        (1, 10, 0.6),  # the first sample inside is at 5: 3 s over 5 s
        (0, 4, None),  # one sample inside: no figure
    ],
)
def test_cores_are_cpu_time_over_wall_time_between_the_samples_inside(
    start: float, end: float, expected: float | None
) -> None:
    """Only the samples inside the span count; start-up before it is left out."""
    samples = [(0.0, 100.0), (5.0, 102.0), (10.0, 105.0)]
    assert cores(samples, start, end) == (None if expected is None else pytest.approx(expected))


# Deployed at 1000, 15 s step: on time, on time, 2 s late, and 15.5 s late (its due point 1060 is
# the next grid point after the late one; the next, 1075, is then evaluated at once).
RUN = WatchRun("d1", "bench-s0000", 1000.0, 1000.5, (1015.2, 1030.1, 1047.0, 1075.5))


def test_an_evaluation_is_due_on_the_grid_point_after_the_one_before() -> None:
    """Lag is the begin minus the due time Rearguard's rule set, late ones included."""
    assert due_times(RUN, 15, 600) == [1015.0, 1030.0, 1045.0, 1060.0]
    assert lags(RUN, 15, 600) == pytest.approx([0.2, 0.1, 2.0, 15.5])


def test_the_first_evaluation_is_due_when_observing_began_if_later_and_none_after_the_watch() -> (
    None
):
    """A Watch that started observing late is due at once; after the watch's end, right away."""
    late = WatchRun("d2", "bench-s0001", 1000.0, 1020.0, (1020.3, 1030.2, 1031.0))
    assert due_times(late, 15, 30) == pytest.approx([1020.0, 1030.0, 1030.2])


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (1000, 1100, (4, 5)),  # 1015, 1030, 1045, 1075 evaluated; 1060 pushed past
        (1000, 1050, (2, 2)),  # 1045 has no whole step left before the end
        (1040, 1100, (2, 3)),  # 1045, 1060, 1075
    ],
)
def test_a_step_is_evaluated_when_an_evaluation_began_within_the_step_after_it(
    start: float, end: float, expected: tuple[int, int]
) -> None:
    """Grid points due in the span with a whole step to go, and those an evaluation covered."""
    assert steps_evaluated(RUN, 15, 600, start, end) == expected


def test_queries_belong_to_the_evaluation_they_followed() -> None:
    """Queries before the first evaluation and after the last one begun are not counted."""
    assert queries_per_evaluation([10, 25, 40], [5, 11, 12, 26, 27, 28, 41]) == [2, 3]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 1.0), (0.7, 1.5), (0.99, 2.0)],  # the +Inf bucket answers its lower bound
)
def test_histogram_quantiles_interpolate_inside_the_bucket(q: float, expected: float) -> None:
    """As PromQL's histogram_quantile does."""
    buckets = [(1.0, 50.0), (2.0, 90.0), (float("inf"), 100.0)]
    assert histogram_quantile(buckets, q) == pytest.approx(expected)


def test_an_empty_histogram_has_no_quantile() -> None:
    """No observations, no figure."""
    assert histogram_quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_the_query_log_gives_each_query_its_time_service_and_path() -> None:
    """Lines outside the span and lines cut short are left out."""
    entry = {"httpRequest": {"path": "/api/v1/query_range"},
             "params": {"query": 'sum(increase(x{service="bench-s0007"}[20s]))'},
             "stats": {"timings": {"execTotalTime": 0.004}},
             "ts": "2026-12-03T08:00:10.5Z"}  # fmt: skip
    early = entry | {"ts": "2026-12-03T07:00:00Z"}
    at = 1796284810.5
    found = logged_queries(
        [json.dumps(entry), json.dumps(early), '{"ts": "2026-12'], at - 1, at + 1
    )
    assert [(q.at, q.service, q.path, q.seconds) for q in found] == [
        (at, "bench-s0007", "/api/v1/query_range", 0.004)
    ]


def test_steady_queries_leave_out_each_watchs_first_two_evaluations() -> None:
    """Per evaluation over the whole span from Prometheus' counters; steady from the log."""
    run = WatchRun("d1", "bench-s0000", 1000.0, 1000.0, (1015.0, 1030.0, 1045.0, 1060.0, 1075.0))
    times = [1015.5] * 12 + [1030.5] * 10 + [1045.5] * 4 + [1060.5] * 4 + [1075.5] * 4
    queries = [LoggedQuery(t, "bench-s0000", "/api/v1/query_range", None) for t in times]
    result = analyse([run], 1000.0, 1090.0, queries, ({}, {"/api/v1/query_range": 34.0}))
    assert result["evaluations"] == 5
    assert result["queries_per_evaluation_all"] == pytest.approx(34 / 5)
    assert result["queries_per_evaluation"] == 4.0  # evaluations 3 and 4 (5's interval is open)
    assert result["queries_per_sli_per_evaluation"] == 2.0
    assert result["queries_per_evaluation_first_two"] == 11.0
    assert result["steps_evaluated_share"] == 1.0


def test_targets_are_judged_at_n_1000_only_when_it_ran() -> None:
    """Met, missed, or not measured."""
    good = {"cpu_cores": 0.5, "lag_p99_s": 1.0, "steps_evaluated_share": 1.0,
            "queries_per_sli_per_evaluation": 2.0, "rss_mb": 400.0}  # fmt: skip
    assert set(targets({"1000": good}).values()) == {"met"}
    assert targets({"1000": good | {"lag_p99_s": 3.0}})["N=1000: lag_p99_s < 3"] == "missed"
    assert set(targets({"100": good}).values()) == {"not measured"}


def test_each_service_has_the_example_configs_two_ratio_slis_over_its_own_series() -> None:
    """The example's queries with the label swapped, at a 15 s step."""
    table = scale_service("bench-s0042")
    assert table["step"] == "15s"
    assert sorted(table["slis"]) == ["http_errors", "slow_requests"]
    queries = [q for sli in table["slis"].values() for q in (sli["bad"], sli["total"])]
    assert all('service="bench-s0042"' in q and "checkout" not in q for q in queries)
    assert all("[$step]" in q for q in queries)


@pytest.mark.prometheus
def test_a_tiny_run_writes_every_figure_for_its_n(tmp_path: Path) -> None:
    """Two deploys on a real Prometheus and a served Rearguard: every step evaluated, queries and
    CPU counted, the summary keyed by N (the shortest baseline and span: two steps each)."""
    results = tmp_path / "scale.json"
    env = os.environ | {"BENCH_SCALE_NS": "2", "BENCH_SCALE_BASELINE": "30",
                        "BENCH_SCALE_MEASURE": "45", "BENCH_SCALE_RESULTS": str(results),
                        "PYTHONPATH": str(REPO_ROOT)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale.run"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(results.read_text())["summary"]
    assert set(summary["2"]) >= set(SUMMARY_KEYS) - {"lag_p99_s_rearguard", "cpu_cores_steady"}
    assert summary["2"]["evaluations"] >= 2  # the step at 15 s, and the one at 30 s if begun
    assert summary["2"]["steps_evaluated_share"] == 1.0
    assert summary["2"]["queries_per_s"] > 0
    assert summary["2"]["cpu_cores"] > 0
    assert summary["2"]["rss_mb"] > 50
    assert 0 <= summary["2"]["lag_p99_s"] < 15


def test_no_step_is_due_after_the_watch_reached_its_verdict() -> None:
    """A Watch escalated at 1040 (a verdict under policy `observe`) evaluates no more: the grid
    points after it are not steps it skipped."""
    run = WatchRun("d1", "bench-s0000", 1000.0, 1000.0, (1015.0, 1030.0), decided_at=1040.0)
    assert steps_evaluated(run, 15, 600, 1000.0, 1200.0) == (2, 2)
    going = replace(run, decided_at=math.inf)
    assert steps_evaluated(going, 15, 600, 1000.0, 1200.0) == (2, 12)  # 1015 ... 1180
