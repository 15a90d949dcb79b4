"""The Watch stepped through its phases on embedded parts: simulated metrics, the demo's real git
repository behind the local-git Forge, a DuckDB file and the console notifier."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from attribution.store import Store
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.steps import step_offset
from rollback.console import ConsoleNotifier
from rollback.forge import PullRef, RevertRequest
from rollback.localgit import LocalGitForge
from tests.embedded import Rig, make_rig


def _branches(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "branch", "--list", "rearguard/*", "--format=%(refname:short)"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.split()


def _notices(rig: Rig) -> int:
    return rig.out.getvalue().count("[notify ")


async def test_regression_names_the_culprit_and_reverts_it(tmp_path: Path) -> None:
    """A 0.5% -> 5% error ratio after the culprit's deploy opens one revert of that PR."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    assert await rig.run(deploy.id) == Phase.REVERTED
    incident = await rig.deps.store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    assert incident.sli == "http_errors"
    assert incident.revert_unit == (rig.repo.culprit_number,)
    assert incident.suspects[0].number == rig.repo.culprit_number
    results = incident.verdict["results"]
    assert isinstance(results, list)
    verdict = results[0]
    assert verdict["baseline_value"] == 0.005
    assert verdict["watch_value"] == 0.05
    assert verdict["statistic"] >= verdict["threshold"]
    actions = {str(a.kind): a for a in await rig.deps.store.incidents.actions(incident.id)}
    assert actions["revert"].status == "completed"
    assert actions["notify"].status == "completed"
    assert _branches(rig.repo.path) == [f"rearguard/revert-{incident.id}"]
    assert _notices(rig) == 1
    text = rig.out.getvalue()
    for needle in ("#103", "cx-2b81d0c4", "http_errors"):
        assert needle in text
    assert f"rearguard/revert-{incident.id}" in text
    await rig.deps.store.close()


async def test_regression_is_called_within_three_steps(tmp_path: Path) -> None:
    """A tenfold error ratio at 600 requests a step is called by the third step (at the Watch's
    offset in it): the first two could still be a burst that ends (a tenth of the watch, below
    the 2-minute `max_blip`)."""
    rig = await make_rig(tmp_path)
    start = rig.clock.now()
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, start
    deploy = await rig.deploy(2)
    await rig.step_until(deploy.id, Phase.REGRESSED)
    incident = await rig.deps.store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    assert incident.opened_at - start <= step_offset(deploy.id, 30) + 3 * 30
    assert await rig.deps.store.incidents.actions(incident.id) == []  # nothing done before the plan
    await rig.deps.store.close()


async def test_healthy_deploy_opens_nothing(tmp_path: Path) -> None:
    """Unchanged metrics end the watch healthy with no incident, branch or notice."""
    rig = await make_rig(tmp_path)
    deploy = await rig.deploy(1)
    assert await rig.run(deploy.id) == Phase.HEALTHY
    assert await rig.deps.store.incidents.incident_for_deploy(deploy.id) is None
    assert _branches(rig.repo.path) == []
    assert _notices(rig) == 0
    await rig.deps.store.close()


async def test_metrics_outage_at_the_end_is_inconclusive(tmp_path: Path) -> None:
    """Prometheus down from mid-watch to the end gives inconclusive with the reason, no revert."""
    rig = await make_rig(tmp_path)
    now = rig.clock.now()
    rig.metrics.down_from, rig.metrics.down_until = now + 300, now + 10_000
    deploy = await rig.deploy(2)
    assert await rig.run(deploy.id) == Phase.INCONCLUSIVE
    state = await rig.deps.store.watches.watch(deploy.id)
    assert state is not None
    assert "unreachable" in str(state.reason)
    assert _branches(rig.repo.path) == []
    await rig.deps.store.close()


async def test_outage_mid_watch_does_not_cause_a_regression(tmp_path: Path) -> None:
    """Two minutes of errors from the source, then data again: the verdict rests on the data."""
    rig = await make_rig(tmp_path)
    now = rig.clock.now()
    rig.metrics.down_from, rig.metrics.down_until = now + 120, now + 240
    deploy = await rig.deploy(1)
    assert await rig.run(deploy.id) == Phase.HEALTHY
    await rig.deps.store.close()


async def test_restart_after_incident_written_makes_one_revert_and_one_notice(
    tmp_path: Path,
) -> None:
    """A crash after the incident row, before any action, resumes to exactly one of each."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    await rig.step_until(deploy.id, Phase.REGRESSED)
    await rig.deps.store.close()  # the process dies here: nothing but the store survives

    store = await Store.open(rig.store_path)
    deps = WatchDeps(
        rig.deps.settings, store, rig.deps.source, LocalGitForge(rig.repo.path),
        ConsoleNotifier(rig.out, "#deploys"), rig.clock,
    )  # fmt: skip
    resumed = Rig(rig.repo, deps, rig.metrics, rig.clock, rig.out, rig.store_path)
    assert await resumed.run(deploy.id) == Phase.REVERTED
    assert len(_branches(rig.repo.path)) == 1
    assert _notices(rig) == 1
    incident = await store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    actions = await store.incidents.actions(incident.id)
    assert {a.kind for a in actions} == {"revert", "notify", "upload", "reply", "fix"}
    assert all(a.attempts == 1 for a in actions)
    await store.close()


async def test_pending_action_is_retried_without_duplicates(tmp_path: Path) -> None:
    """An action left pending by a crash mid-call is resumed; the forge reuses its branch."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    await rig.step_until(deploy.id, Phase.REGRESSED)
    incident = await rig.deps.store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    # The crash came after the forge made the branch but before the row was completed.
    await rig.deps.store.incidents.begin_action(f"revert-{incident.id}", incident.id, "revert", 0.0)

    culprit = rig.repo.culprit
    await rig.deps.forge.open_revert(RevertRequest(
        repo=rig.repo.repo, key=f"revert-{incident.id}", base_branch="main",
        prs=(PullRef(culprit.number, culprit.merge_sha, culprit.title),), title="t", body="b",
        labels=(),
    ))  # fmt: skip
    assert await rig.run(deploy.id) == Phase.REVERTED
    actions = {str(a.kind): a for a in await rig.deps.store.incidents.actions(incident.id)}
    assert (actions["revert"].detail or {}).get("reused") is True
    assert len(_branches(rig.repo.path)) == 1
    await rig.deps.store.close()


async def test_observe_mode_notifies_and_reverts_nothing(tmp_path: Path) -> None:
    """In observe mode a regression is escalated with a notice and no revert branch."""
    rig = await make_rig(tmp_path, mode="observe")
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    assert await rig.run(deploy.id) == Phase.ESCALATED
    assert _branches(rig.repo.path) == []
    assert _notices(rig) == 1
    assert "observe mode" in rig.out.getvalue()
    await rig.deps.store.close()


async def test_ambiguous_deploy_reverts_the_whole_range(tmp_path: Path) -> None:
    """Three PRs and no evidence between them: ambiguous, and all three are reverted."""
    rig = await make_rig(tmp_path)
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(3)
    assert await rig.run(deploy.id) == Phase.REVERTED
    incident = await rig.deps.store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    assert incident.ambiguous
    assert sorted(incident.revert_unit) == [104, 105, 106]
    assert "the whole deploy range" in rig.out.getvalue()
    await rig.deps.store.close()


async def test_revert_that_conflicts_escalates_and_says_so(tmp_path: Path) -> None:
    """When the revert does not apply, the Watch escalates and the notice says it failed."""
    rig = await make_rig(tmp_path)
    # A later commit rewrites the culprit's lines, so reverting #103 conflicts.
    payment = rig.repo.path / "checkout" / "payment.py"
    payment.write_text('"""Payments moved to the billing service."""\n')
    await asyncio.to_thread(
        subprocess.run,
        ["git", "-C", str(rig.repo.path), "commit", "-qam", "later change"],
        check=True,
        env={
            "GIT_AUTHOR_NAME": "a",
            "GIT_AUTHOR_EMAIL": "a@b",
            "GIT_COMMITTER_NAME": "a",
            "GIT_COMMITTER_EMAIL": "a@b",
            "PATH": "/usr/bin:/bin",
        },
    )
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(2)
    assert await rig.run(deploy.id) == Phase.ESCALATED
    state = await rig.deps.store.watches.watch(deploy.id)
    assert state is not None
    assert "conflict" in str(state.reason).lower()
    assert "revert FAILED" in rig.out.getvalue()
    assert _branches(rig.repo.path) == []
    await rig.deps.store.close()
