"""GitHub as it really misbehaves, on the path a deployment takes: the app exactly as `serve`
builds it from a TOML config (githubkit and slack_sdk made from it, pointed at the stand-ins), the
culprit learned from a signed `pull_request` webhook, the deploy from the CD hook, a real
Prometheus seeing the regression. The clock is the wall clock, jumped by the test where the loop
waits a minute or more. Each test has its own service."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from attribution.records import WatchState
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.config import load_settings
from loop.watch.deps import WatchDeps
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import AUTH, STEP, deliver_pr, post_deploy, wait_final
from tests.prometheus_server import PrometheusServer
from tests.serve_rig_github import JumpClock, serve_env, until, write_config

pytestmark = pytest.mark.prometheus

REPO = "acme/edge"
BODY = "Faster charges.\n\nAgent-Session: sess-edge\nAgent-Name: claude-code\n"


@dataclass
class Loop:
    """The app as `serve` builds it, its stand-ins and its clock."""

    client: TestClient[Any, Any]
    github: FakeGitHub
    slack: FakeSlack
    clock: JumpClock
    service: str

    @property
    def deps(self) -> WatchDeps:
        deps: WatchDeps = self.client.app[DEPS]
        return deps

    async def watch(self, deploy_id: str) -> WatchState:
        state = await self.deps.store.watches.watch(deploy_id)
        assert state is not None
        return state

    async def incident(self, deploy_id: str) -> Any:
        view = await (await self.client.get(f"/v1/deploys/{deploy_id}", headers=AUTH)).json()
        incident = f"/v1/incidents/{view['incident_id']}"
        return await (await self.client.get(incident, headers=AUTH)).json()

    def reverts(self) -> list[FakePR]:
        return [p for p in self.github.created_pulls() if p.title.startswith("Revert")]


Start = Callable[[str], AbstractAsyncContextManager[Loop]]


@pytest.fixture
async def start(tmp_path: Path, prometheus: PrometheusServer) -> AsyncIterator[Start]:
    """Build the app from a config file for one service, as `rearguard serve` does, and serve
    it for the `async with` block (started and stopped in the test's own task, as `serve` does
    both in one: githubkit keeps its connection pool in a context variable)."""
    github = FakeGitHub(tmp_path / "github", repo=REPO)
    await github.start()
    slack = FakeSlack()
    await slack.start()

    @asynccontextmanager
    async def serve(service: str) -> AsyncIterator[Loop]:
        config = write_config(tmp_path, service, REPO, prometheus=prometheus.url,
                              github=github.url, slack=slack.url)  # fmt: skip
        settings = load_settings(config, serve_env(github.token, slack.token))
        clock = JumpClock()
        async with TestClient(TestServer(build_app(settings, clock=clock))) as client:
            yield Loop(client, github, slack, clock, service)

    yield serve
    await slack.close()
    await github.close()


async def _deploy_regression(
    loop: Loop, traffic: SampleApp, files: dict[str, str], *, author: str = "octo-dev"
) -> str:
    """Merge the culprit, deliver its webhook, deploy it into a 5% error ratio; the deploy id."""
    initial = loop.github.head_sha()
    pr = loop.github.merge_pr("Faster charges", BODY, files, author=author)
    await deliver_pr(loop.client, loop.github, pr.number)
    traffic.configure(loop.service, error_ratio=0.05)
    return await post_deploy(loop.client, loop.service, loop.github.head_sha(), initial,
                             time.time())  # fmt: skip


async def test_secondary_rate_limit_without_retry_after_retries_the_revert_a_minute_later(
    start: Start, traffic: SampleApp
) -> None:
    """GitHub answering the revert call 429 with no retry-after: the Watch is due again a minute
    later (no step sleeps it), the revert PR is opened then, and the incident is reverted."""
    async with start("e2e-gh-limit") as loop:
        loop.github.rate_limit_next(None, status=429, match="POST /graphql")
        try:
            deploy_id = await _deploy_regression(loop, traffic, {"app/charge.py": "fast = 1\n"})
            parked = await until(
                lambda: loop.watch(deploy_id),
                lambda w: w.phase in {"escalated", "reverted"} or "retrying" in (w.reason or ""),
                what="the revert refused and retried",
            )
            assert parked.phase == "rolling_back", parked
            assert parked.next_due - loop.clock.now() >= 59, parked
            assert loop.reverts() == []
            loop.clock.jump(60)
            view = await wait_final(loop.client, deploy_id)
        finally:
            traffic.configure(loop.service, error_ratio=0.005)
        incident = await loop.incident(deploy_id)
    assert view["phase"] == "reverted", view
    (revert,) = loop.reverts()
    action = next(a for a in incident["actions"] if a["kind"] == "revert")
    assert (action["status"], action["attempts"]) == ("completed", 2)
    assert action["url"] == revert.html_url
    assert loop.github.requests.count("POST /graphql") == 2


async def test_a_bot_written_culprit_gets_a_bug_issue_assigned_to_nobody_naming_its_author(
    start: Start, traffic: SampleApp
) -> None:
    """The culprit opened by `devin-ai-integration[bot]` (GitHub refuses bots as assignees): the
    fix step opens the bug issue assigned to nobody, and the issue says who wrote the PR."""
    bot = "devin-ai-integration[bot]"
    async with start("e2e-gh-bot") as loop:
        try:
            files = {"app/pay.py": "pay = 1\n"}
            deploy_id = await _deploy_regression(loop, traffic, files, author=bot)
            view = await wait_final(loop.client, deploy_id)
        finally:
            traffic.configure(loop.service, error_ratio=0.005)
        incident = await loop.incident(deploy_id)
    assert view["phase"] == "reverted", view
    fix = next(a for a in incident["actions"] if a["kind"] == "fix")
    assert fix["status"] == "completed", fix["error"]
    (issue,) = loop.github.issues
    assert issue.assignees == []
    assert f"written by @{bot}, a bot account" in issue.body
    assert fix["url"] == issue.html_url


async def _jump_while_held(loop: Loop, deploy_id: str) -> list[float]:
    """While the regressed Watch holds its incident for the change range, jump the clock to each
    next try; the waits jumped, once the Watch has moved on."""
    waits: list[float] = []
    while True:
        state = await until(
            lambda: loop.watch(deploy_id),
            lambda w: (
                w.phase not in {"deployed", "observing"} or w.next_due - loop.clock.now() > 2 * STEP
            ),
            what="the Watch held or moved on",
        )
        if state.phase not in {"deployed", "observing"}:
            return waits
        assert "the incident waits for the change range" in (state.reason or ""), state
        waits.append(state.next_due - loop.clock.now())
        loop.clock.jump(waits[-1])


async def test_github_503_eight_times_from_the_deploy_on_then_the_culprit_is_reverted(
    start: Start, traffic: SampleApp
) -> None:
    """GitHub answering 503 to the first eight calls from the deploy on: the Watch observes and
    finds the regression meanwhile, the change range is read again after growing delays, and
    the culprit's revert PR is opened once GitHub recovers."""
    async with start("e2e-gh-range") as loop:
        initial = loop.github.head_sha()
        pr = loop.github.merge_pr("Faster charges", BODY, {"app/cart.py": "fast = 1\n"})
        await deliver_pr(loop.client, loop.github, pr.number)
        # The range's reads, not the commit status the Watch posts meanwhile (it would take some).
        loop.github.fail_next(8, 503, match="/compare/")
        traffic.configure(loop.service, error_ratio=0.05)
        try:
            deploy_id = await post_deploy(loop.client, loop.service, loop.github.head_sha(),
                                          initial, time.time())  # fmt: skip
            waits = await _jump_while_held(loop, deploy_id)
            view = await wait_final(loop.client, deploy_id)
        finally:
            traffic.configure(loop.service, error_ratio=0.005)
        incident = await loop.incident(deploy_id)
    assert view["phase"] == "reverted", view["reason"]
    assert [s["number"] for s in incident["suspects"]] == [pr.number]
    (revert,) = loop.reverts()
    assert f"Revert #{pr.number}" in revert.title
    assert len(waits) == 2, waits  # a try 30 s after the first, the next 60 s after that
    assert waits[1] > waits[0], waits
    assert loop.github.requests.count(f"GET /repos/{REPO}/compare/{initial}...{view['sha']}") == 9


async def test_github_compare_down_for_the_budget_uses_the_prs_on_record_and_says_so(
    start: Start, traffic: SampleApp
) -> None:
    """GitHub's compare failing for the whole budget: the range is given up after growing
    delays, the PRs on record between the two deploys' PRs are used, the culprit is reverted and
    the Slack notice says the range was unresolved."""
    async with start("e2e-gh-records") as loop:
        before = loop.github.merge_pr("Add cart", BODY, {"app/cart.py": "cart = 1\n"})
        await deliver_pr(loop.client, loop.github, before.number)
        pr = loop.github.merge_pr("Faster cart", BODY, {"app/cart.py": "cart = 2\n"})
        await deliver_pr(loop.client, loop.github, pr.number)
        loop.github.fail_next(10_000, 503, match="/compare/")
        traffic.configure(loop.service, error_ratio=0.05)
        try:
            deploy_id = await post_deploy(loop.client, loop.service, loop.github.head_sha(),
                                          before.merge_sha or "", time.time())  # fmt: skip
            waits = await _jump_while_held(loop, deploy_id)
            view = await wait_final(loop.client, deploy_id)
        finally:
            traffic.configure(loop.service, error_ratio=0.005)
        incident = await loop.incident(deploy_id)
    assert view["phase"] == "reverted", view["reason"]
    assert [s["number"] for s in incident["suspects"]] == [pr.number]
    (revert,) = loop.reverts()
    assert f"Revert #{pr.number}" in revert.title
    assert len(waits) == 4, waits  # 5 attempts
    assert waits == sorted(waits), waits  # growing delays
    # The clock jumps past the sample app's data, so early warnings (missing data) may come
    # first; the incident's notice is the one top-level message that is not a warning.
    (opening,) = [
        m for m in loop.slack.messages
        if m.thread_ts is None and not m.text.startswith("Rearguard warning")
    ]  # fmt: skip
    text = opening.text + str(opening.blocks)
    assert "change range unresolved" in text
    assert "gave up after 5 attempts" in text
    assert f"PR(s) on record merged after #{before.number} up to #{pr.number}" in text
