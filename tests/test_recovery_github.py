"""The loop against the GitHub and Slack stand-ins (githubkit and slack_sdk pointed at them) on a
manual clock: GitHub failing and rate limiting, a revert deployed through a `deployment_status`
webhook and verified, and a revert PR closed unmerged by a person."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from attribution.store import Store
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.clock import ManualClock
from loop.config import Settings, settings_from
from loop.watch.deps import WatchDeps
from loop.watch.phases import Phase
from loop.watch.retry import INLINE_WAIT
from loop.watch.scheduler import run_due
from loop.watch.steps import advance
from observer.simulated import SimulatedSource
from rollback.github import GitHubForge
from rollback.slack import SlackNotifier
from tests.embedded import BAD, TOTAL, Metrics
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.slack import FakeSlack
from tests.loop_rig import (
    API_TOKEN,
    AUTH,
    SLACK_CHANNEL,
    WEBHOOK_SECRET,
    deliver_pr,
    post_deploy,
    sign,
)

pytestmark = pytest.mark.shared_samples  # the world's webhooks are GitHub's real samples
ENV = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
STEP = 30.0


def _settings(store: Path) -> Settings:
    service = {
        "repo": "acme/checkout", "step": "30s", "watch": "10m", "baseline": "10m",
        "slis": {"http_errors": {"bad": BAD.replace("30s", "$step"),
                                 "total": TOTAL.replace("30s", "$step")}},
    }  # fmt: skip
    return settings_from(
        {"server": {"store": str(store), "public_url": "http://rearguard.test"},
         "slack": {"channel": SLACK_CHANNEL}, "services": {"checkout": service}},
        ENV, "test",
    )  # fmt: skip


class Sleeps:
    """The forge's injected sleep: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class World:
    """The app with its stand-ins, a manual clock and the deploy that regressed."""

    tmp: Path
    github: FakeGitHub
    slack: FakeSlack
    clock: ManualClock
    metrics: Metrics
    sleeps: Sleeps
    closing: AsyncExitStack
    """Closes every server and client the world starts, however the test or its setup ends."""
    client: TestClient[Any, Any] = field(init=False)
    deploy_id: str = ""

    @property
    def deps(self) -> WatchDeps:
        deps: WatchDeps = self.client.app[DEPS]
        return deps

    async def tick(self) -> None:
        await run_due(self.deps, tick=STEP)
        await self.clock.sleep(STEP)

    async def phase(self, deploy_id: str | None = None) -> str:
        state = await self.deps.store.watches.watch(deploy_id or self.deploy_id)
        assert state is not None
        return state.phase

    async def run_until(self, phases: set[str], deploy_id: str | None = None) -> str:
        for _ in range(200):
            if (phase := await self.phase(deploy_id)) in phases:
                return phase
            await self.tick()
        raise AssertionError(f"never reached {phases}")

    async def incident(self) -> Any:
        incident = await self.deps.store.incidents.incident_for_deploy(self.deploy_id)
        assert incident is not None
        response = await self.client.get(f"/v1/incidents/{incident.id}", headers=AUTH)
        return await response.json()

    async def webhook(self, event: str, payload: Any, delivery: str) -> None:
        body = json.dumps(payload).encode()
        response = await self.client.post("/v1/webhooks/github", data=body, headers={
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})  # fmt: skip
        assert response.status == 202, await response.text()


async def _app(world: World, aiohttp_client: Any) -> TestClient[Any, Any]:
    """Rearguard's app over loopback with fresh clients (as after a process start)."""
    github, slack, metrics = world.github, world.slack, world.metrics
    source = SimulatedSource({BAD: metrics.bad, TOTAL: metrics.total})
    forge = GitHubForge(github.url, github.token, timeout=5, max_attempts=2,
                        max_retry_after=INLINE_WAIT, sleep=world.sleeps)  # fmt: skip
    world.closing.push_async_callback(forge.aclose)
    notifier = SlackNotifier(slack.token, SLACK_CHANNEL, base_url=slack.url)
    world.closing.push_async_callback(notifier.aclose)
    app = build_app(_settings(world.tmp / "store.duckdb"), clock=world.clock,
                    clients=(source, forge, notifier), scheduler=False)  # fmt: skip
    client: TestClient[Any, Any] = await aiohttp_client(app)
    world.closing.push_async_callback(client.close)
    return client


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any) -> AsyncIterator[World]:
    """One agent PR merged and deployed, its errors tenfold, the Watch stepped to `regressed`."""
    async with AsyncExitStack() as closing:
        github = await closing.enter_async_context(
            FakeGitHub(tmp_path / "github", repo="acme/checkout")
        )
        slack = FakeSlack()
        slack.attach(await aiohttp_server(slack.app))
        clock = ManualClock(datetime.now(tz=UTC).timestamp())
        metrics, sleeps = Metrics(clock=clock), Sleeps()
        w = World(tmp_path, github, slack, clock, metrics, sleeps, closing)
        w.client = await _app(w, aiohttp_client)
        github.add_issue(7, "Spec: a payment client without retries")
        initial = github.head_sha()
        culprit = github.merge_pr(
            "Retry-free payment client", "Agent-Session: s-1\nAgent-Name: bot\nSpec: #7",
            {"src/pay.py": "def pay(): ...\n"},
        )  # fmt: skip
        await deliver_pr(w.client, github, culprit.number)
        metrics.ratio_after, metrics.change_at = 0.05, clock.now()
        w.deploy_id = await post_deploy(
            w.client, "checkout", github.head_sha(), initial, clock.now()
        )
        for _ in range(40):
            state = await w.deps.store.watches.watch(w.deploy_id)
            assert state is not None
            if state.phase == Phase.REGRESSED:
                break
            await clock.sleep(max(state.next_due - clock.now(), 0))
            await advance(w.deps, w.deploy_id)
        assert await w.phase() == Phase.REGRESSED
        yield w


def _opening(world: World) -> list[Any]:
    """Messages that open a conversation (thread replies left out)."""
    return [m for m in world.slack.messages if m.thread_ts is None]


def _revert_action(view: Any) -> Any:
    return next(a for a in view["actions"] if a["kind"] == "revert")


@pytest.mark.parametrize("answer_lost", [False, True])
async def test_github_502_twice_then_201_opens_one_revert_pr(
    world: World, answer_lost: bool
) -> None:
    """Two 502s on creating the PR (made or not behind the error), then 201: exactly one PR."""
    world.github.refuse_graphql_reverts()  # the Git Data path, whose PR create answers 201
    world.github.fail_next(2, 502, match="POST /repos/acme/checkout/pulls", after=answer_lost)
    assert await world.run_until({"reverted", "escalated"}) == Phase.REVERTED
    assert len(world.github.created_pulls()) == 1
    revert = _revert_action(await world.incident())
    assert revert["status"] == "completed"
    assert revert["url"] == world.github.created_pulls()[0].html_url
    assert revert["attempts"] == (1 if answer_lost else 2)
    assert len(_opening(world)) == 1


async def test_secondary_rate_limit_waits_retry_after_outside_the_watch(world: World) -> None:
    """`retry-after: 30` makes the Watch due 30 s later (no 30 s sleep); then it completes."""
    world.github.rate_limit_next(30, secondary=True)
    await run_due(world.deps, tick=STEP)
    state = await world.deps.store.watches.watch(world.deploy_id)
    assert state is not None
    assert state.phase == Phase.ROLLING_BACK
    assert state.next_due - world.clock.now() >= 30
    assert all(wait <= INLINE_WAIT for wait in world.sleeps.waits)
    assert "rate limited" in str(_revert_action(await world.incident())["error"])
    assert world.github.created_pulls() == []
    await world.clock.sleep(30)
    await run_due(world.deps, tick=STEP)
    assert await world.phase() == Phase.REVERTED
    assert len(world.github.created_pulls()) == 1
    assert len(_opening(world)) == 1


async def test_github_down_for_the_budget_fails_says_so_and_restart_does_not_duplicate(
    world: World, aiohttp_client: Any
) -> None:
    """GitHub 502 throughout: `failed` with the reason, Slack says so; a restart adds nothing."""
    world.github.fail_next(10_000, 502)
    assert await world.run_until({"reverted", "escalated"}) == Phase.ESCALATED
    view = await world.incident()
    revert = _revert_action(view)
    assert revert["status"] == "failed"
    assert revert["attempts"] == world.deps.max_action_attempts
    assert "gave up after 5 attempts" in revert["error"]
    assert "HTTP 502" in revert["error"]
    [message] = _opening(world)
    assert "revert FAILED" in message.text
    assert "HTTP 502" in message.text
    store_path = world.deps.settings.store_path
    await world.client.close()  # the process stops; GitHub comes back

    world.github.clear_faults()
    world.client = await _app(world, aiohttp_client)
    for _ in range(5):
        await world.tick()
    assert world.github.created_pulls() == []
    assert len(_opening(world)) == 1
    assert _revert_action(await world.incident()) == revert
    assert store_path.exists()
    assert isinstance(world.deps.store, Store)


def _merge(github: FakeGitHub, pr: FakePR) -> None:
    """A person merges the revert PR on GitHub."""
    github.git("merge", "-q", "--no-ff", "-m",
               f"Merge pull request #{pr.number} from acme/{pr.head_ref}", pr.head_ref)  # fmt: skip
    pr.state, pr.merged, pr.merged_at = "closed", True, github.tick()
    pr.merge_sha = github.head_sha("main")


async def test_revert_deployed_by_deployment_status_is_verified_recovered(world: World) -> None:
    """The revert merged, a `deployment_status` success for it, errors back: recovered."""
    assert await world.run_until({"reverted"}) == Phase.REVERTED
    [revert_pr] = world.github.created_pulls()
    [spec] = [i for i in world.github.issues if i.number == 7]
    await world.clock.sleep(300)
    _merge(world.github, revert_pr)
    await deliver_pr(world.client, world.github, revert_pr.number)
    world.metrics.recover_at = world.clock.now()
    payload = world.github.deployment_status_webhook(world.github.head_sha())
    when = datetime.fromtimestamp(world.clock.now(), tz=UTC).isoformat()
    payload["deployment"] |= {"id": 4242, "created_at": when}
    payload["deployment_status"] |= {"updated_at": when}
    await world.webhook("deployment_status", payload, "deploy-4242")
    assert await world.run_until({"recovered", "escalated"}) == Phase.RECOVERED
    view = await world.incident()
    assert view["phase"] == "recovered"
    assert view["recovery"]["rounds"][0]["deploy_id"] == "gh_4242"
    assert view["time_to_restore_seconds"] > 300
    assert view["time_to_revert_seconds"] >= 0
    (opening,) = _opening(world)
    outcome = [m for m in world.slack.messages if m.thread_ts == opening.ts]
    assert "RECOVERED" in outcome[-1].text  # told in the incident's thread
    await world.tick()  # and another sweep: the spec's issue hears once
    (comment,) = spec.comments
    assert revert_pr.html_url in comment
    assert "confirmed when the revert restored health" in comment


async def test_revert_pr_closed_unmerged_is_respected(world: World) -> None:
    """A person closes the revert PR: the incident records it, escalates, and no PR is reopened."""
    assert await world.run_until({"reverted"}) == Phase.REVERTED
    [revert_pr] = world.github.created_pulls()
    revert_pr.state = "closed"
    payload = world.github.pull_request_closed_webhook(revert_pr.number)
    assert payload["pull_request"]["merged"] is False
    await world.webhook("pull_request", payload, "closed-revert")
    assert await world.run_until({"escalated", "recovered"}) == Phase.ESCALATED
    for _ in range(5):
        await world.tick()
    view = await world.incident()
    [first] = view["recovery"]["rounds"]
    assert first["outcome"] == "closed"
    assert f"revert PR #{revert_pr.number}" in first["note"]
    assert "closed unmerged by @" in first["note"]
    assert len(world.github.created_pulls()) == 1
    assert world.github.open_pulls() == []
    (opening,) = _opening(world)
    outcome = [m for m in world.slack.messages if m.thread_ts == opening.ts]
    assert "opens no other revert" in outcome[-1].text  # told in the incident's thread
