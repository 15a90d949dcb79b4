"""The pure rules of `observer.scrape_interval` and the coverage rule of `observer.observe`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loop.config import ConfigError, load_settings
from observer.observe import Windows, covered
from observer.scrape_interval import (
    effective_step,
    interval_query,
    plan_step,
    promql_duration,
    selectors,
    smallest_step,
    snap,
    step_too_short,
)
from observer.slis import Sli, SliKind
from observer.verdict import SliResult, Status

RATIO = Sli("errors", SliKind.RATIO, bad="sum(increase(e[$step]))", total="sum(increase(r[$step]))")
GAUGE = Sli("memory", SliKind.GAUGE, query="sum(m)")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('sum(increase(x{a="b"}[$step]))', ['x{a="b"}']),
        ("sum(rate(x[5m])) / sum(rate(y[1m]))", ["x", "y"]),
        ("sum(increase(x[1m])) - sum(increase(x[1m]))", ["x"]),  # once
        ('rate({__name__="z",job="j"}[1m])', ['{__name__="z",job="j"}']),
        ("max_over_time((sum(x))[5m:1m])", []),  # a subquery is no selector
        ("sum(process_resident_memory_bytes)", []),  # no range: nothing to learn from
        ("sum by (route) (increase(x[2m]))", ["x"]),
    ],
)
def test_selectors_under_ranges(query: str, expected: list[str]) -> None:
    """The vector selectors under range brackets are found, each once, subqueries left out."""
    assert selectors(query) == expected


def test_interval_query_divides_the_span_by_the_samples_in_it() -> None:
    """The learning query is the median of (last - last before the window) / samples in it."""
    assert interval_query('x{a="b"}') == (
        'quantile(0.5, (timestamp(x{a="b"}) - timestamp(x{a="b"} offset 600s)) '
        '/ count_over_time(x{a="b"}[599999ms]))'
    )


@pytest.mark.parametrize(
    ("learnt", "expected"),
    [(15.0004, 15.0), (14.9, 15.0), (59.5, 60.0), (0.999, 1.0), (0.25, 0.25), (22.5, 22.5)],
)
def test_snap(learnt: float, expected: float) -> None:
    """Jitter within 1% of a whole second is that second; other intervals stay as learnt."""
    assert snap(learnt) == expected


@pytest.mark.parametrize(
    ("step", "interval", "expected"),
    [
        (15, None, 15),  # unknown: as configured
        (15, 15, 15),
        (15, 30, 30),
        (15, 60, 60),
        (45, 30, 60),  # not a whole multiple: the next one
        (60, 15, 60),
        (1, 1, 1),
        (16, 15, 30),
    ],
)
def test_effective_step(step: float, interval: float | None, expected: float) -> None:
    """The step is the next whole multiple of the interval at or above the configured one."""
    assert effective_step(step, interval) == expected


def test_smallest_step_is_one_interval() -> None:
    """One interval per step suffices: the range of step plus one interval holds two samples."""
    assert smallest_step(30.0) == 30.0


@pytest.mark.parametrize(
    ("step", "interval", "message"),
    [
        (15, 15, None),
        (30, 15, None),
        (15, None, None),
        (
            15,
            60,
            "SLI 'errors': the step of 15s is shorter than the scrape interval found, 60s; "
            "the smallest step that works is 60s (this SLI is evaluated every 60s)",
        ),
        (
            45,
            30,
            "SLI 'errors': the step of 45s is not a whole multiple of the scrape interval found, "
            "30s; the smallest step that works is 30s (this SLI is evaluated every 60s)",
        ),
    ],
)
def test_step_too_short_names_sli_interval_and_smallest_step(
    step: float, interval: float | None, message: str | None
) -> None:
    """The message `serve` logs and `rearguard check` prints, or None when the step fits."""
    assert step_too_short("errors", step, interval) == message


@pytest.mark.parametrize(
    ("sli", "step", "interval", "plan"),
    [
        (RATIO, 15, 15, (15, 29.999, 15 / 29.999, False)),
        (RATIO, 15, 60, (60, 119.999, 60 / 119.999, True)),
        (RATIO, 30, 15, (30, 44.999, 30 / 44.999, False)),
        (RATIO, 15, None, (15, 15, 1.0, False)),
        (GAUGE, 15, 60, (60, 60, 1.0, True)),  # no counts to scale
    ],
)
def test_plan_step(
    sli: Sli, step: float, interval: float | None, plan: tuple[float, float, float, bool]
) -> None:
    """Ratio ranges reach one interval back (less a millisecond); counts are scaled back."""
    got = plan_step(sli, step, interval)
    assert (got.step, got.range, got.widened) == (plan[0], plan[1], plan[3])
    assert got.scale == pytest.approx(plan[2])


def test_queries_substitute_the_range() -> None:
    """`$step` becomes the plan's range, in milliseconds when not whole."""
    assert RATIO.queries(15.0, 29.999)["total"] == "sum(increase(r[29999ms]))"
    assert RATIO.queries(15.0)["total"] == "sum(increase(r[15s]))"
    assert promql_duration(120) == "120s"


WINDOWS = Windows(deployed_at=0.0, baseline=600.0, watch=600.0, step=60.0)  # ten steps


@pytest.mark.parametrize(
    ("status", "with_data", "end", "expected"),
    [
        (Status.HEALTHY, 10, 600, Status.HEALTHY),
        (Status.HEALTHY, 8, 600, Status.HEALTHY),  # 80% is enough
        (Status.HEALTHY, 7, 600, Status.INCONCLUSIVE),
        (Status.HEALTHY, 4, 300, Status.HEALTHY),  # 4 of the 5 steps so far
        (Status.HEALTHY, 0, 30, Status.HEALTHY),  # no step due yet
        (Status.REGRESSED, 2, 600, Status.REGRESSED),  # only `healthy` needs the evidence
        (Status.INCONCLUSIVE, 10, 600, Status.INCONCLUSIVE),
    ],
)
def test_healthy_needs_most_steps_with_data(
    status: Status, with_data: int, end: float, expected: Status
) -> None:
    """`healthy` on fewer than 80% of the steps so far with data is `inconclusive`."""
    result = covered(SliResult("errors", status, "within"), with_data, WINDOWS, end)
    assert result.status is expected
    if expected is not status:
        assert result.reason == (
            f"only {with_data} of 10 watch steps had data (70%; healthy needs 80%): within"
        )
    assert math.isnan(result.step)


def _config(tmp_path: Path, prometheus: str, sli: str) -> Path:
    path = tmp_path / "rearguard.toml"
    path.write_text(f"""
[prometheus]
url = "http://127.0.0.1:9090"
{prometheus}
[services.s]
repo = "acme/s"
[services.s.slis.errors]
bad = 'sum(increase(e[$step]))'
total = 'sum(increase(r[$step]))'
{sli}
""")
    return path


def test_scrape_interval_overrides_are_read(tmp_path: Path) -> None:
    """`[prometheus] scrape_interval` and an SLI's own are durations; absent, they are None."""
    settings = load_settings(
        _config(tmp_path, 'scrape_interval = "30s"', 'scrape_interval = "1m"'), {}
    )
    service = settings.service("s")
    assert service is not None
    assert (settings.prometheus_scrape_interval, service.slis[0].scrape_interval) == (30.0, 60.0)
    settings = load_settings(_config(tmp_path, "", ""), {})
    service = settings.service("s")
    assert service is not None
    assert (settings.prometheus_scrape_interval, service.slis[0].scrape_interval) == (None, None)


@pytest.mark.parametrize(
    ("prometheus", "sli", "message"),
    [
        ('scrape_interval = "0s"', "", "prometheus.scrape_interval: expected a positive duration"),
        ("", 'scrape_interval = "soon"', "scrape_interval"),
    ],
)
def test_bad_scrape_interval_is_refused(
    tmp_path: Path, prometheus: str, sli: str, message: str
) -> None:
    """A scrape interval that is not a positive duration is refused at load, naming the key."""
    with pytest.raises(ConfigError, match=message):
        load_settings(_config(tmp_path, prometheus, sli), {})
