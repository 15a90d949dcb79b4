"""Killed right after GitHub acted: `rearguard serve` runs as a process with a TOML config against a
real Prometheus and the GitHub and Slack stand-ins, GitHub makes the change (a revert PR, a bug
issue, the comment on a confirmed culprit's spec issue) and its answer never arrives, the
process is SIGKILLed, and people act before it restarts.
The restarted server finds what GitHub made instead of making it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import AUTH
from tests.prometheus_server import PrometheusServer
from tests.serve_rig_github import Server, serve_env, until, write_config

pytestmark = pytest.mark.prometheus

REPO = "acme/restart"
BODY = "Drop payment retries.\n\nAgent-Session: sess-r\nAgent-Name: codex\n"


@pytest.fixture
async def run_of(
    tmp_path: Path, prometheus: PrometheusServer
) -> AsyncIterator[Callable[[str], Run]]:
    """A `Run` for a service, over stand-ins that live for the test."""
    github = FakeGitHub(tmp_path / "github", repo=REPO)
    await github.start()
    slack = FakeSlack()
    await slack.start()
    runs: list[Run] = []

    def make(service: str) -> Run:
        runs.append(Run(tmp_path, service, prometheus, github, slack))
        return runs[-1]

    yield make
    for run in runs:
        run.server.stop()
    await slack.close()
    await github.close()


class Run:
    """One server, its stand-ins and the deploy that regressed."""

    def __init__(self, tmp: Path, service: str, prometheus: PrometheusServer,
                 github: FakeGitHub, slack: FakeSlack) -> None:  # fmt: skip
        config = write_config(tmp, service, REPO, prometheus=prometheus.url, github=github.url,
                              slack=slack.url)  # fmt: skip
        self.server = Server(config, serve_env(github.token, slack.token), tmp / "server.log")
        self.service, self.github, self.slack = service, github, slack
        self.deploy_id = ""

    async def regress_until(
        self,
        session: aiohttp.ClientSession,
        traffic: SampleApp,
        made: asyncio.Event | None,
        body: str = BODY,
    ) -> FakePR:
        """Merge the culprit, deploy it into a 5% error ratio, and SIGKILL the server once GitHub
        has made the held change (None: leave it running); the culprit."""
        initial = self.github.head_sha()
        pr = self.github.merge_pr("Drop payment retries", body, {"app/pay.py": "retries = 0\n"},
                                  author="octo-dev")  # fmt: skip
        self.server.start()
        await self.server.wait_up(session)
        await self.server.deliver_pr(session, self.github, pr.number)
        traffic.configure(self.service, error_ratio=0.05)
        self.deploy_id = await self.server.post_deploy(
            session, self.service, self.github.head_sha(), initial
        )
        if made is None:
            return pr
        try:
            await asyncio.wait_for(made.wait(), 60)
        except TimeoutError:
            raise AssertionError(f"GitHub was never asked:\n{self.server.tail()}") from None
        self.server.kill()
        return pr

    async def restart(self, session: aiohttp.ClientSession) -> Any:
        """Start the server again; the deploy view once its Watch is final."""
        self.server.start()
        await self.server.wait_up(session)
        return await self.server.wait_final(session, self.deploy_id)

    async def incident(self, session: aiohttp.ClientSession) -> Any:
        view = await self.server.get(session, f"/v1/deploys/{self.deploy_id}")
        return await self.server.get(session, f"/v1/incidents/{view['incident_id']}")

    def reverts(self) -> list[FakePR]:
        return [p for p in self.github.created_pulls() if p.title.startswith("Revert")]


def _action(incident: Any, kind: str) -> Any:
    return next(a for a in incident["actions"] if a["kind"] == kind)


@pytest.mark.parametrize(
    ("person", "service"), [("merges", "e2e-gh-merged"), ("closes", "e2e-gh-closed")]
)
async def test_revert_pr_merged_or_closed_while_rearguard_was_down_is_the_one_revert(
    run_of: Callable[[str], Run], traffic: SampleApp, person: str, service: str
) -> None:
    """Killed right after GitHub opened the revert PR, which a person then merges (or closes
    unmerged) before the restart: exactly one revert PR exists for the incident afterwards; a
    merged one is waited on as deployed-to-be (reverted), a closed one is respected (escalated)."""
    run = run_of(service)
    github, slack = run.github, run.slack
    made = github.hold_answer("POST /graphql")  # revertPullRequest: the revert PR is opened
    try:
        async with aiohttp.ClientSession() as session:
            await run.regress_until(session, traffic, made)
            (revert,) = run.reverts()
            if person == "merges":
                github.merge_branch(revert)
            else:
                revert.state = "closed"
            view = await run.restart(session)
            incident = await run.incident(session)
            if person == "merges":  # and CD deploys it: the Watch verifies the recovery
                traffic.configure(service, error_ratio=0.005)
                carrier = await run.server.post_deploy(
                    session, service, github.head_sha(), view["sha"]
                )
                recovered = await until(
                    lambda: run.incident(session),
                    lambda i: i["phase"] in {"recovered", "escalated"},
                    what="the revert's deploy verified",
                )
    finally:
        run.server.stop()
        traffic.configure(service, error_ratio=0.005)
    assert run.reverts() == [revert], [p.title for p in github.created_pulls()]
    action = _action(incident, "revert")
    if person == "merges":
        assert view["phase"] == "reverted", view["reason"]
        assert "revert opened" in view["reason"]
        assert (action["status"], action["url"]) == ("completed", revert.html_url)
        assert recovered["phase"] == "recovered", recovered["timeline"][-1]
        (round_,) = recovered["recovery"]["rounds"]
        assert round_["deploy_id"] == carrier
    else:
        assert view["phase"] == "escalated", view["reason"]
        assert f"revert PR #{revert.number}" in view["reason"]
        assert "closed unmerged" in view["reason"]
        assert action["status"] == "skipped", action
        (round_,) = incident["recovery"]["rounds"]
        assert round_["outcome"] == "closed"
    opening = [m for m in slack.messages if m.thread_ts is None]
    assert len(opening) == 1, [m.text for m in opening]


async def test_bug_issue_opened_while_rearguard_was_killed_is_found_after_the_restart(
    run_of: Callable[[str], Run], traffic: SampleApp
) -> None:
    """Killed right after GitHub opened the fix step's bug issue: the restart finds that issue
    (a plain issue, which GitHub lists without a `pull_request` key) and opens no second one."""
    service = "e2e-gh-issue"
    run = run_of(service)
    github = run.github
    made = github.hold_answer(f"POST /repos/{REPO}/issues")
    try:
        async with aiohttp.ClientSession() as session:
            await run.regress_until(session, traffic, made)
            assert len(github.issues) == 1
            view = await run.restart(session)
            incident = await until(
                lambda: run.incident(session),
                lambda i: _action(i, "fix")["status"] != "pending",
                what="the fix step done",
            )
    finally:
        run.server.stop()
        traffic.configure(service, error_ratio=0.005)
    assert view["phase"] == "reverted", view
    (issue,) = github.issues
    fix = _action(incident, "fix")
    assert (fix["status"], fix["url"]) == ("completed", issue.html_url), fix["error"]
    assert len(run.reverts()) == 1


async def test_spec_comment_made_while_rearguard_was_killed_is_not_made_again(
    run_of: Callable[[str], Run], traffic: SampleApp
) -> None:
    """A person confirms the incident; GitHub makes the comment on the culprit's spec issue
    (`Spec: acme/restart#42`) and its answer never arrives; SIGKILLed and restarted, Rearguard
    finds the comment by its marker: exactly one comment on #42, naming the revert PR."""
    service = "e2e-gh-spec"
    run = run_of(service)
    github = run.github
    spec = github.add_issue(42, "Spec: faster payments")
    made = github.hold_answer(f"POST /repos/{REPO}/issues/42/comments")
    try:
        async with aiohttp.ClientSession() as session:
            await run.regress_until(session, traffic, None, body=f"{BODY}Spec: {REPO}#42\n")
            incident = await until(
                lambda: run.incident(session),
                lambda i: (
                    i.get("phase") == "reverted"
                    and any(a["kind"] == "fix" and a["status"] != "pending" for a in i["actions"])
                ),
                what="the revert and the fix step done",
            )
            assert spec.comments == []  # nobody confirmed it yet
            async with session.post(
                f"{run.server.url}/v1/incidents/{incident['id']}/feedback",
                json={"kind": "confirmed", "actor": "ana"}, headers=AUTH,
            ) as response:  # fmt: skip
                assert response.status == 201, await response.text()
            try:
                await asyncio.wait_for(made.wait(), 60)
            except TimeoutError:
                raise AssertionError(f"no spec comment:\n{run.server.tail()}") from None
            run.server.kill()
            assert len(spec.comments) == 1
            run.server.start()
            await run.server.wait_up(session)
            incident = await until(
                lambda: run.incident(session),
                lambda i: any(a["kind"] == "spec" and a["status"] == "completed"
                              for a in i["actions"]),
                what="the spec comment action completed",
            )  # fmt: skip
    finally:
        run.server.stop()
        traffic.configure(service, error_ratio=0.005)
    (comment,) = spec.comments
    (revert,) = run.reverts()
    assert revert.html_url in comment
    assert "confirmed by a person" in comment
    assert (_action(incident, "spec")["detail"] or {}).get("reused") is True
