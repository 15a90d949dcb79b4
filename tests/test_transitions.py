"""The Watch's transitions in one place: the table of moves, and the compare-and-set that lets
only one of two concurrent steps move a Watch (the other writes and opens nothing)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from loop.watch.phases import MOVES, Phase, allowed
from loop.watch.steps import advance
from loop.watch.transitions import InvalidMove, Transition, apply
from tests.embedded import make_rig


def _revert_branches(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "branch", "--list", "rearguard/*"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.split()


FINAL = (Phase.HEALTHY, Phase.INCONCLUSIVE, Phase.RECOVERED, Phase.ESCALATED)


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        (Phase.DEPLOYED, Phase.OBSERVING, True),
        (Phase.DEPLOYED, Phase.REGRESSED, False),
        (Phase.OBSERVING, Phase.OBSERVING, True),
        (Phase.OBSERVING, Phase.REGRESSED, True),
        (Phase.OBSERVING, Phase.ROLLING_BACK, False),
        (Phase.REGRESSED, Phase.ROLLING_BACK, True),
        (Phase.REGRESSED, Phase.REVERTED, False),
        (Phase.ROLLING_BACK, Phase.REVERTED, True),
        (Phase.ROLLING_BACK, Phase.RECOVERED, False),
        (Phase.REVERTED, Phase.ROLLING_BACK, True),
        (Phase.REVERTED, Phase.RECOVERED, True),
        (Phase.HEALTHY, Phase.OBSERVING, False),
        (Phase.ESCALATED, Phase.ESCALATED, False),
    ],
)
def test_moves_table(source: Phase, target: Phase, ok: bool) -> None:
    """The table allows the lifecycle's moves and nothing else."""
    assert allowed(source, target) is ok


def test_every_phase_has_a_row_and_final_phases_go_nowhere() -> None:
    """Each phase is in the table; the final ones allow no move at all."""
    assert set(MOVES) == set(Phase)
    for phase in FINAL:
        assert MOVES[phase] == frozenset()


async def test_a_move_outside_the_table_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """`apply` raises on a move the table forbids, and the Watch stays where it was."""
    rig = await make_rig(tmp_path)
    deploy = await rig.deploy(2)
    with pytest.raises(InvalidMove, match="deployed -> reverted"):
        await apply(rig.deps, Transition(deploy.id, Phase.DEPLOYED, Phase.REVERTED, "bug", 0.0))
    state = await rig.deps.store.watches.watch(deploy.id)
    assert state is not None
    assert state.phase == Phase.DEPLOYED
    await rig.deps.store.close()


async def test_two_steps_from_observing_write_one_evaluation_and_one_incident(
    tmp_path: Path,
) -> None:
    """Two concurrent evaluations of a regressed Watch: one opens the incident, the other is
    refused and keeps no observation of its own."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    await rig.step_until(deploy.id, Phase.OBSERVING)
    await rig.clock.sleep(600)
    before = await rig.deps.store.watches.observation_count(deploy.id)
    results = await asyncio.gather(advance(rig.deps, deploy.id), advance(rig.deps, deploy.id))
    assert sorted(results, key=str) == [None, Phase.REGRESSED]
    assert await rig.deps.store.watches.observation_count(deploy.id) == before + 1
    assert len(await rig.deps.store.incidents.recent()) == 1
    await rig.deps.store.close()


async def test_two_steps_from_rolling_back_open_one_revert_and_one_notice(tmp_path: Path) -> None:
    """Two concurrent steps of a Watch in `rolling_back`: one claims it and acts, the other is
    refused and opens nothing (one revert branch, one notice)."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    await rig.step_until(deploy.id, Phase.ROLLING_BACK)
    results = await asyncio.gather(advance(rig.deps, deploy.id), advance(rig.deps, deploy.id))
    assert sorted(results, key=str) == [None, Phase.REVERTED]
    assert len(_revert_branches(rig.repo.path)) == 1
    assert rig.out.getvalue().count("[notify ") == 1
    timeline = await rig.deps.store.watches.timeline(deploy.id)
    assert [t["to"] for t in timeline].count(Phase.REVERTED) == 1
    await rig.deps.store.close()
