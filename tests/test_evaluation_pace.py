"""How late each evaluation was, and the steps a late one left out: decided by a pure function,
counted by the scheduler for every observing Watch, rendered by the app's metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loop.api.metrics import OwnMetrics
from loop.watch.pace import skipped_steps
from loop.watch.phases import Phase
from loop.watch.scheduler import run_due
from loop.watch.steps import step_offset
from tests.embedded import STEP, make_rig


@pytest.mark.parametrize(
    ("lag", "step", "skipped"),
    [
        pytest.param(0.0, 15.0, 0, id="on-time"),
        pytest.param(14.9, 15.0, 0, id="late-within-the-step"),
        pytest.param(15.0, 15.0, 1, id="a-whole-step-late"),
        pytest.param(15.0 - 1e-12, 15.0, 1, id="float-noise-at-a-step"),
        pytest.param(47.0, 15.0, 3, id="three-steps-and-more"),
        pytest.param(-0.5, 15.0, 0, id="early-is-not-late"),
        pytest.param(10.0, 0.0, 0, id="no-step-no-grid"),
    ],
)
def test_skipped_steps_are_the_whole_steps_of_lag(lag: float, step: float, skipped: int) -> None:
    assert skipped_steps(lag, step) == skipped


async def test_a_late_evaluation_is_counted_with_the_steps_it_skipped(tmp_path: Path) -> None:
    """A Watch evaluated 95 s after it was due at a 30 s step: one evaluation, 95 s of lag and
    three skipped steps in /metrics' series; the one on time after it adds no lag."""
    rig = await make_rig(tmp_path)
    metrics = OwnMetrics()
    deps = replace(rig.deps, pace=metrics)
    try:
        deploy = await rig.deploy(1)
        await run_due(deps, tick=STEP)  # deployed -> observing: not an evaluation
        state = await deps.store.watches.watch(deploy.id)
        assert state is not None
        assert state.phase == Phase.OBSERVING
        assert state.next_due == pytest.approx(
            deploy.finished_at + step_offset(deploy.id, STEP) + STEP
        )
        await rig.clock.sleep(state.next_due - rig.clock.now() + 95.0)
        await run_due(deps, tick=STEP)
        late = _samples((await metrics.render(deps.store)).decode())
        state = await deps.store.watches.watch(deploy.id)
        assert state is not None
        await rig.clock.sleep(state.next_due - rig.clock.now())
        await run_due(deps, tick=STEP)
        after = _samples((await metrics.render(deps.store)).decode())
    finally:
        metrics.shutdown()
        await deps.store.close()
    assert late["rearguard_evaluations_total"] == 1
    assert late["rearguard_evaluation_lag_seconds_sum"] == pytest.approx(95.0)
    assert late['rearguard_evaluation_lag_seconds_bucket{le="60"}'] == 0
    assert late['rearguard_evaluation_lag_seconds_bucket{le="120"}'] == 1
    assert late["rearguard_evaluations_skipped_total"] == 3
    assert late["rearguard_queries_per_evaluation_sum"] > 0
    assert after["rearguard_evaluations_total"] == 2
    assert after["rearguard_evaluation_lag_seconds_sum"] == pytest.approx(95.0)
    assert after["rearguard_evaluations_skipped_total"] == 3


def _samples(text: str) -> dict[str, float]:
    return {
        f'{s.name}{{le="{s.labels["le"]}"}}' if "le" in s.labels else s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("rearguard_evaluation", "rearguard_queries"))
    }
