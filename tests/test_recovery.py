"""Recovery on embedded parts: the revert merged by a person in the demo's real git repository,
a deploy carrying it, and the SLI judged against the incident's pre-regression baseline."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from attribution.records import Deploy
from loop.api.views import incident_view
from loop.watch.phases import Phase
from loop.watch.scheduler import run_due
from tests.embedded import STEP, Rig, make_rig

GIT_ENV = {
    "GIT_AUTHOR_NAME": "A Person",
    "GIT_AUTHOR_EMAIL": "person@example.com",
    "GIT_COMMITTER_NAME": "A Person",
    "GIT_COMMITTER_EMAIL": "person@example.com",
    "PATH": "/usr/bin:/bin",
}


def merge_revert(repo: Path, branch: str) -> str:
    """Merge a revert branch into main as a person would; the new main sha."""
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "checkout", "-q", "main"], check=True, env=GIT_ENV)
    subprocess.run([*git, "merge", "-q", "--no-ff", "-m", f"Merge branch '{branch}'", branch],
                   check=True, env=GIT_ENV)  # fmt: skip
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, env=GIT_ENV,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


async def deploy_revert(rig: Rig, incident_round_key: str, previous: str, name: str) -> Deploy:
    """Merge the round's revert branch and deploy main; the carrying deploy."""
    sha = merge_revert(rig.repo.path, f"rearguard/{incident_round_key}")
    deploy = Deploy(
        id=name, service="checkout", environment="production", sha=sha,
        finished_at=rig.clock.now(), source="test", repo=rig.repo.repo, previous_sha=previous,
    )  # fmt: skip
    await rig.deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, rig.clock.now())
    return deploy


async def run_until(rig: Rig, deploy_id: str, phases: set[str]) -> str:
    """Tick the scheduler (every Watch) until `deploy_id`'s Watch is in one of `phases`."""
    for _ in range(100):
        await run_due(rig.deps, tick=STEP)
        state = await rig.deps.store.watches.watch(deploy_id)
        assert state is not None
        if state.phase in phases:
            return state.phase
        await rig.clock.sleep(STEP)
    raise AssertionError(f"{deploy_id} never reached {phases}")


async def regress(rig: Rig, index: int) -> tuple[Deploy, str]:
    """Deploy `index` with a tenfold error ratio until its revert is opened; (deploy, incident)."""
    rig.metrics.ratio_after, rig.metrics.change_at = 0.05, rig.clock.now()
    deploy = await rig.deploy(index)
    assert await rig.run(deploy.id) == Phase.REVERTED
    incident = await rig.deps.store.incidents.incident_for_deploy(deploy.id)
    assert incident is not None
    await rig.clock.sleep(600)  # a person reviews and merges the revert ten minutes later
    return deploy, incident.id


async def test_deployed_revert_that_restores_the_sli_is_recovered(tmp_path: Path) -> None:
    """The revert merged and deployed, errors back at 0.5%: recovered, with time to restore."""
    rig = await make_rig(tmp_path)
    bad, incident_id = await regress(rig, 2)
    rig.metrics.recover_at = rig.clock.now()
    carrier = await deploy_revert(rig, f"revert-{incident_id}", bad.sha, "deploy-revert")
    assert await run_until(rig, bad.id, {"recovered", "escalated"}) == Phase.RECOVERED
    incident = await rig.deps.store.incidents.incident(incident_id)
    assert incident is not None
    view = await incident_view(rig.deps.store, incident)
    (first,) = view["recovery"]["rounds"]
    assert first["deploy_id"] == carrier.id
    assert first["outcome"] == "recovered"
    recovered_at = view["recovery"]["recovered_at"]
    assert carrier.finished_at < recovered_at < carrier.finished_at + 600  # before the window ends
    assert view["time_to_restore_seconds"] == recovered_at - bad.finished_at
    assert view["time_to_revert_seconds"] == (
        view["recovery"]["revert_opened_at"] - view["opened_at"]
    )
    feedback = await rig.deps.store.fetch(
        "SELECT kind, pr_number, actor, source FROM feedback WHERE incident_id = ?", [incident_id]
    )
    assert feedback == [("recovered", rig.repo.culprit_number, "rearguard", "loop")]
    text = rig.out.getvalue()
    assert text.count("[notify ") == 1  # one thread: the outcome is a reply in it
    assert "[reply #deploys" in text
    assert "RECOVERED after reverting #103" in text
    assert "time to restore" in text
    await rig.deps.store.close()


async def test_revert_that_leaves_the_sli_regressed_escalates(tmp_path: Path) -> None:
    """The only suspect reverted and deployed, errors still 5%: not_recovered, then escalated."""
    rig = await make_rig(tmp_path)
    bad, incident_id = await regress(rig, 2)
    await deploy_revert(rig, f"revert-{incident_id}", bad.sha, "deploy-revert")
    assert await run_until(rig, bad.id, {"recovered", "escalated"}) == Phase.ESCALATED
    rounds = await rig.deps.store.rounds.of_incident(incident_id)
    assert [(r.prs, r.outcome) for r in rounds] == [((rig.repo.culprit_number,), "not_recovered")]
    assert "still regressed" in str(rounds[0].note)
    feedback = await rig.deps.store.fetch(
        "SELECT kind, pr_number FROM feedback WHERE incident_id = ?", [incident_id]
    )
    assert feedback == [("not_recovered", rig.repo.culprit_number)]
    state = await rig.deps.store.watches.watch(bad.id)
    assert state is not None
    assert "no suspect is left" in str(state.reason)
    assert "no suspect is left" in rig.out.getvalue()
    await rig.deps.store.close()


async def test_revert_that_does_not_help_sends_the_loop_to_the_next_suspect(
    tmp_path: Path,
) -> None:
    """Three PRs, bar 0.3: #106 reverted to no avail, then #104, whose revert restores health."""
    rig = await make_rig(tmp_path)
    # No human gates: the PRs then rank by size alone (#106, #104, #105), and no revert is gated.
    settings = replace(rig.deps.settings, action_bar=0.3, human_gates=())
    rig.deps = replace(rig.deps, settings=settings)
    bad, incident_id = await regress(rig, 3)
    first = await deploy_revert(rig, f"revert-{incident_id}", bad.sha, "deploy-revert-1")
    for _ in range(50):  # until the second round's revert is opened
        await run_due(rig.deps, tick=STEP)
        rounds = await rig.deps.store.rounds.of_incident(incident_id)
        state = await rig.deps.store.watches.watch(bad.id)
        assert state is not None
        if len(rounds) == 2 and state.phase == Phase.REVERTED:
            break
        await rig.clock.sleep(STEP)
    assert [r.prs for r in rounds] == [(106,), (104,)]
    assert rounds[0].outcome == "not_recovered"
    assert rounds[0].deploy_id == first.id
    await rig.clock.sleep(300)
    rig.metrics.recover_at = rig.clock.now()
    await deploy_revert(rig, f"revert-{incident_id}-r2", first.sha, "deploy-revert-2")
    assert await run_until(rig, bad.id, {"recovered", "escalated"}) == Phase.RECOVERED
    rounds = await rig.deps.store.rounds.of_incident(incident_id)
    assert [r.outcome for r in rounds] == ["not_recovered", "recovered"]
    text = rig.out.getvalue()
    assert "reverting #106 did not restore health; next suspect #104" in text
    assert "RECOVERED after reverting #104" in text
    await rig.deps.store.close()
