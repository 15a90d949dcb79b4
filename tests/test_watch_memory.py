"""What a Watch keeps between evaluations: reading on from a step replaces what was held there.

Prometheus takes a range query's start to the nearest millisecond and answers its points' times
in whole milliseconds, so when a deploy's time has a fraction of a millisecond (a deploy timed by
`time.time()`), the point read for grid time `t` sits just before or just after `t`. A step read
again must replace its first reading, never sit beside it, and a step folded into the test's
state must not be pushed on it again.
"""

from __future__ import annotations

import pytest

from observer.detect import DEFAULT_SETTINGS
from observer.observe import SliData, Windows, judge
from observer.scrape_interval import StepPlan
from observer.sequential_state import RatioState
from observer.slis import Sli, SliKind
from observer.watch_memory import Point, SliMemory, remember

DEPLOYED = 1_796_300_000.123_456_7  # a deploy timed to the microsecond
STEP = 5.0
# How the point for a grid time comes back: as it was asked, or to the millisecond for a deploy
# whose fraction rounds down (.1234567 -> .123) or up (.7115018 -> .712), as Prometheus does.
ANSWERED = {"exact": 0.0, "rounded down": 0.0, "rounded up": 0.588_045_1}


def _grid(k: int, *, answered: str) -> float:
    t = DEPLOYED + ANSWERED[answered] + k * STEP
    return t if answered == "exact" else round(t * 1000) / 1000


def _deployed(answered: str) -> float:
    return DEPLOYED + ANSWERED[answered]


def _memory(points: list[Point]) -> SliMemory:
    plan = StepPlan(STEP, STEP + 1.0, STEP / (STEP + 1.0), 1.0, STEP)
    memory = SliMemory(plan, (), {}, {}, read_at=DEPLOYED)
    memory.growing["watch"] = list(points)
    return memory


@pytest.mark.parametrize("answered", list(ANSWERED))
@pytest.mark.parametrize(
    ("held", "start", "read", "kept"),
    [
        # held steps (k: bad), first step read again, what is read from there -> what is kept
        ({1: 2.0}, 1, {1: 4.0, 2: 1.0}, {1: 4.0, 2: 1.0}),
        ({1: 2.0, 2: 1.0}, 2, {2: 3.0, 3: 1.0}, {1: 2.0, 2: 3.0, 3: 1.0}),
        ({1: 2.0, 2: 1.0}, 3, {3: 1.0}, {1: 2.0, 2: 1.0, 3: 1.0}),
        ({1: 2.0, 2: 1.0}, 1, {1: 2.5}, {1: 2.5}),  # the read ended earlier: nothing after it
        ({}, 1, {1: 2.0}, {1: 2.0}),
    ],
)
def test_a_step_read_again_replaces_its_first_reading(
    held: dict[int, float],
    start: int,
    read: dict[int, float],
    kept: dict[int, float],
    answered: str,
) -> None:
    memory = _memory([(_grid(k, answered=answered), bad, 100.0) for k, bad in held.items()])
    memory.merge(
        {"watch": tuple((_grid(k, answered=answered), bad, 100.0) for k, bad in read.items())},
        _deployed(answered) + start * STEP,
    )
    got = [(round((t - _deployed(answered)) / STEP), bad) for t, bad, _ in memory.growing["watch"]]
    assert got == list(kept.items())


@pytest.mark.parametrize("answered", list(ANSWERED))
def test_settling_folds_each_step_once_on_either_side_of_the_grid(answered: str) -> None:
    memory = _memory([(_grid(k, answered=answered), 1.0, 100.0) for k in (1, 2, 3)])
    memory.state = RatioState.start(0.01, burst=3)
    deployed = _deployed(answered)
    memory.settle(deployed + 1 * STEP, deployed)
    memory.settle(deployed + 2 * STEP, deployed)
    memory.settle(deployed + 2 * STEP, deployed)  # again: nothing more
    assert memory.state.steps == 2
    carried = memory.carried()
    assert carried is not None
    # What the judge pushes on the carried state: the points it does not hold, only those.
    held = [carried.holds(t) for t, _, _ in memory.growing["watch"]]
    assert held == [True, True, False]


@pytest.mark.parametrize("answered", list(ANSWERED))
@pytest.mark.parametrize("carry", [False, True])
def test_the_last_step_of_the_watch_is_judged_however_its_time_came_back(
    answered: str, carry: bool
) -> None:
    """At the end of the watch the judge takes the points up to `deployed + watch`: the last one,
    answered half a millisecond late, is one of them (with and without a carried state)."""
    sli = Sli("errors", SliKind.RATIO, bad="b", total="t", min_events=1)
    deployed = _deployed(answered)
    points = tuple((_grid(k, answered=answered), float(k), 100.0) for k in (1, 2, 3))
    before = tuple((_grid(k, answered=answered) - 3 * STEP, 1.0, 100.0) for k in (1, 2, 3))
    data = SliData(points, (("before", before),), {"bad": "b", "total": "t"},
                   {"watch": [deployed + STEP, deployed + 3 * STEP]}, "before_after")  # fmt: skip
    windows = Windows(deployed, 3 * STEP, 3 * STEP, STEP)
    carried = None
    if carry:
        plan = StepPlan(STEP, STEP, 1.0, None, STEP)
        memory = remember(
            sli, plan, data.baselines, {}, final_at={"before": deployed}, read_at=deployed,
            horizon=windows.horizon, settings=DEFAULT_SETTINGS,
        )  # fmt: skip
        memory.merge({"watch": points}, deployed)
        memory.settle(deployed + STEP, deployed)
        carried = memory.carried()
    result = judge(sli, data, windows, deployed + 3 * STEP + 0.2, carried=carried)
    assert result.to_json()["watch_bad"] == pytest.approx(1.0 + 2.0 + 3.0)
