"""A year of delivery history for one service, written through the store's own write path (the
calls ingest and the Watch make: deploys, merged PRs and their opening times, the PRs each deploy
carried, `regressed` transitions that open incidents, revert rounds and their recovery), so the
reports read rows shaped exactly as production writes them.

The history is regular, so a test knows every figure: each ISO week from `START` has two deploys
of one PR each, opened `LEAD_OPEN` seconds before its deploy; every `FAIL_EVERY`th week the first
deploy regresses, a revert PR (`Revert "..."`) is opened `TO_REVERT` seconds after detection, the
week's second deploy carries it, and recovery is verified `TO_RESTORE` seconds after the failed
deploy finished. Agents, models, specs and areas vary with the PR's number; every failed deploy's
revert is labelled `recovered`, and every other incident then `wrong_pr` by a person.
"""

from __future__ import annotations

from attribution.diffs import FileChange
from attribution.records import AgentIdentity, Deploy, Incident, MergedPR, RevertRound, Suspect
from attribution.store import Store
from attribution.watch_rows import OpenIncident

START = 1_762_128_000.0  # Monday 2025-11-03 00:00 UTC, the start of ISO week 2025-W45
WEEK = 7 * 86400.0
WEEKS = 52
FAIL_EVERY = 4
LEAD_OPEN = 2 * 86400.0
TO_DETECT = 600.0
TO_REVERT = 300.0
TO_RESTORE = 5400.0


def _pr(repo: str, number: int, merged_at: float, title: str) -> MergedPR:
    sha = f"{number:040x}"
    return MergedPR(
        repo=repo, number=number, title=title, author="claude", url=f"https://github.com/{repo}/pull/{number}",
        merge_sha=sha, head_sha=sha, base_ref="main", merged_at=merged_at, body="",
        identity=AgentIdentity("agent", ("claude", "codex")[number % 2],
                               model="claude-opus" if number % 3 else None,
                               spec=f"SPEC-{number % 5}", tokens=1000 * number, cost_usd=0.5),
        files=(f"src/{('pay', 'cart', 'auth')[number % 3]}/x.py", "README.md"),
    )  # fmt: skip


async def _ship(store: Store, service: str, repo: str, pr: MergedPR, at: float) -> Deploy:
    """A PR opened, merged an hour before `at`, and deployed at `at`."""
    await store.prs.record_pr(pr, at)
    await store.evidence.record_opened_at(repo, pr.number, at - LEAD_OPEN)
    if pr.number % 5 == 0:  # its files fetched: they, not the webhook's paths, give its areas
        moved = FileChange("lib/core/deep/y.py", "renamed", 3, 1, previous_path="old/z.py")
        await store.evidence.record_pr_files(repo, pr.number, [moved, FileChange("top.py")])
    deploy = Deploy(f"dep-{pr.number}", service, "production", pr.merge_sha, at, "cd", repo=repo)
    await store.watches.record_deploy(deploy, "deployed", at)
    await store.prs.set_deploy_prs(deploy.id, repo, [pr.number])
    return deploy


async def _fail(store: Store, deploy: Deploy, number: int) -> Incident:
    detected = deploy.finished_at + TO_DETECT
    await store.watches.transition(deploy.id, "deployed", "observing", now=deploy.finished_at,
                                   next_due=detected, reason="watching")  # fmt: skip
    incident = Incident(
        id=f"inc-{deploy.id}", deploy_id=deploy.id, service=deploy.service,
        environment=deploy.environment, sli="errors", opened_at=detected, verdict={},
        ambiguous=False, confidence=0.9, revert_unit=(number,), reason="errors up",
        suspects=(Suspect(str(deploy.repo), number, 0.9, "only change"),),
    )  # fmt: skip
    await store.watches.transition(deploy.id, "observing", "regressed", now=detected,
                                   next_due=detected, reason="errors up",
                                   rows=[OpenIncident(incident)])  # fmt: skip
    return incident


async def build_year(store: Store, service: str = "checkout", repo: str = "acme/checkout") -> None:
    """`WEEKS` weeks of history of `service` from `START` (see the module docstring)."""
    number = 0
    for week in range(WEEKS):
        at = START + week * WEEK + 86400.0  # Tuesday
        number += 1
        first = await _ship(store, service, repo, _pr(repo, number, at - 3600, "Change"), at)
        number += 1
        if week % FAIL_EVERY:
            await _ship(store, service, repo, _pr(repo, number, at, "Change"), at + 86400.0)
            continue
        incident = await _fail(store, first, number - 1)
        detected = incident.opened_at
        r = RevertRound(incident.id, 1, (number - 1,), f"revert-{incident.id}", detected, "top")
        await store.rounds.ensure_round(r)
        await store.rounds.revert_opened(incident, first.finished_at, detected + TO_REVERT)
        revert_at = first.finished_at + 3600.0
        title = 'Revert "Change"'
        revert = await _ship(store, service, repo, _pr(repo, number, revert_at - 60, title),
                             revert_at)  # fmt: skip
        await store.rounds.link_round_deploy(
            r, revert.id, first.id, phase="regressed", now=revert_at, due=revert_at,
            reason="carried",
        )  # fmt: skip
        restored = first.finished_at + TO_RESTORE
        await store.rounds.settle_round(
            r, "recovered", now=restored, note="healthy", recovered_at=restored,
            feedback=[(f"recovered-{incident.id}", "recovered", number - 1)],
        )  # fmt: skip
        if week % (2 * FAIL_EVERY):  # every other incident, a person says it was another PR
            await store.incidents.record_feedback(
                f"wrong-{incident.id}", incident.id, "wrong_pr", actor="ann", source="api",
                now=restored + 60, pr_number=number - 1,
            )  # fmt: skip
