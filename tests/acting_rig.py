"""A Watch wired to the stand-ins with the production clients: `GitHubForge` on `FakeGitHub`,
`SlackNotifier` on `FakeSlack`, optionally `AnthropicFixer` on `FakeAnthropic`; simulated
metrics on a manual clock and a real DuckDB store. Used by the acting tests (issue 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from attribution.identity import identify
from attribution.records import Deploy, MergedPR
from attribution.store import Store
from loop.clock import ManualClock
from loop.config import settings_from
from loop.watch.deps import WatchDeps
from loop.watch.phases import ACTIVE, Phase
from loop.watch.scheduler import run_due
from loop.watch.steps import advance
from observer.simulated import SimulatedSource
from rollback.fixer import Fixer, TemplateFixer
from rollback.github import GitHubForge
from rollback.slack import SlackNotifier
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.slack import FakeSlack

TOKEN = "ghp_ActingRigToken0123456789"
CHANNEL = "C0ROLLBACK"


BAD = 'sum(increase(errors_total{service="shop"}[30s]))'
TOTAL = 'sum(increase(requests_total{service="shop"}[30s]))'
STEP = 30.0
AGENT_BODY = (
    "Make charges faster.\n\nAgent-Session: cx-7f3a\nAgent-Name: codex\nAgent-Model: gpt-5\n"
    "Spec: acme/app#42\n"
)


class Sleeps:
    """An injected sleep: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Traffic:
    """600 requests a step; the error ratio rises after `change_at`."""

    change_at: float = float("inf")
    before: float = 0.005
    after: float = 0.08

    def total(self, t: float, step: float) -> float:
        return 600.0

    def bad(self, t: float, step: float) -> float:
        return 600.0 * (self.after if t > self.change_at else self.before)


@dataclass
class ActingRig:
    github: FakeGitHub
    slack: FakeSlack
    store: Store
    deps: WatchDeps
    clock: ManualClock
    traffic: Traffic
    sleeps: Sleeps
    culprit: FakePR
    deploy: Deploy
    extra: dict[str, Any] = field(default_factory=dict)

    async def run_until(self, phase: str) -> None:
        """Take single transitions until the Watch is in `phase` (waiting while observing)."""
        for _ in range(100):
            state = await self.store.watches.watch(self.deploy.id)
            assert state is not None
            if state.phase == phase:
                return
            if state.next_due > self.clock.now():
                await self.clock.sleep(state.next_due - self.clock.now())
            await advance(self.deps, self.deploy.id)
        raise AssertionError(f"watch never reached {phase}")

    async def close_clients(self) -> None:
        """Close the GitHub and Slack clients' connections (safe to call twice)."""
        for client in (self.deps.notifier, self.deps.forge):
            if isinstance(client, SlackNotifier | GitHubForge):
                await client.aclose()

    async def restarted(self) -> ActingRig:
        """The same store and stand-ins with new clients, as after a process restart."""
        forge = GitHubForge(self.github.url, TOKEN, timeout=5.0, sleep=self.sleeps)
        notifier = SlackNotifier(self.slack.token, CHANNEL, base_url=self.slack.url)
        deps = replace(self.deps, forge=forge, notifier=notifier)
        return replace(self, deps=deps)

    async def run(self) -> str:
        """Run the scheduler step by step until the Watch is final; its phase."""
        for _ in range(100):
            await run_due(self.deps, tick=STEP)
            state = await self.store.watches.watch(self.deploy.id)
            assert state is not None
            if state.phase not in {str(p) for p in ACTIVE}:
                return state.phase
            await self.clock.sleep(STEP)
        raise AssertionError("watch did not finish")


def _merged(pr: FakePR, repo: str) -> MergedPR:
    merged_at = datetime.fromisoformat(str(pr.merged_at).replace("Z", "+00:00")).timestamp()
    return MergedPR(
        repo=repo, number=pr.number, title=pr.title, author=pr.author, url=pr.html_url,
        merge_sha=pr.merge_sha or "", head_sha=pr.head_sha, base_ref="main",
        merged_at=merged_at, body=pr.body, identity=identify(pr.author, pr.body, repo=repo),
        labels=tuple(pr.labels), files=tuple(pr.files), node_id=pr.node_id,
    )  # fmt: skip


async def make_acting_rig(
    tmp_path: Path,
    github: FakeGitHub,
    slack: FakeSlack,
    *,
    mode: str = "act",
    culprit_files: Mapping[str, str] | None = None,
    fixer: Fixer | None = None,
    store: Store | None = None,
    forge_attempts: int = 4,
    learned: Literal["record", "webhook", "commit"] = "record",
    author: str = "octo-dev",
    other_prs: int = 0,
) -> ActingRig:
    """A commit, then the culprit PR merged on top; one deploy of it. `learned` says how
    Rearguard knows the culprit: "record" (on record with its files), "webhook" (on record
    without files, as a `pull_request` webhook leaves it) or "commit" (not on record: found
    through GitHub's PRs of a commit). `other_prs` PRs (docs only) are merged before the
    culprit, into the same deploy."""
    github.commit({"app/charge.py": "def charge(x):\n    return retry(x)\n"}, "Add charge")
    previous = github.head_sha()
    files = dict(culprit_files or {"app/charge.py": "def charge(x):\n    return x\n"})
    others = [github.merge_pr(f"Reword docs page {i}", "", {f"docs/page{i}.md": f"{i}\n"},
                              author="docs-person") for i in range(other_prs)]  # fmt: skip
    culprit = github.merge_pr("Make charges faster", AGENT_BODY, files, author=author)
    store = store or await Store.open(tmp_path / "store.duckdb")
    clock = ManualClock(2_000_000_000.0)
    slack.clock = clock.now  # Slack stamps each ts with the rig's time, as it would in production
    if learned != "commit":
        for other in others:
            await store.prs.record_pr(_merged(other, github.full_name), clock.now())
        record = _merged(culprit, github.full_name)
        await store.prs.record_pr(record if learned == "record" else replace(record, files=()),
                                  clock.now())  # fmt: skip
    settings = settings_from(
        {
            "server": {"store": str(tmp_path / "store.duckdb"), "public_url": "http://rg.test"},
            "policy": {"mode": mode},
            "services": {"shop": {
                "repo": github.full_name, "step": "30s", "watch": "10m", "baseline": "10m",
                "slis": {"http_errors": {"bad": BAD.replace("30s", "$step"),
                                         "total": TOTAL.replace("30s", "$step")}},
            }},
        },
        {},
        "acting",
    )  # fmt: skip
    traffic = Traffic(change_at=clock.now())
    sleeps = Sleeps()
    forge = GitHubForge(github.url, TOKEN, timeout=5.0, sleep=sleeps, max_attempts=forge_attempts)
    notifier = SlackNotifier(slack.token, CHANNEL, base_url=slack.url, max_retries=1)
    source = SimulatedSource({BAD: traffic.bad, TOTAL: traffic.total})
    deps = WatchDeps(
        settings,
        store,
        source,
        forge,
        notifier,
        clock,
        fixer=fixer or TemplateFixer(),
        max_action_attempts=2,
    )
    deploy = Deploy(id="deploy-1", service="shop", environment="production",
                    sha=github.head_sha(), finished_at=clock.now(), source="test",
                    repo=github.full_name, previous_sha=previous)  # fmt: skip
    await store.watches.record_deploy(deploy, Phase.DEPLOYED, clock.now())
    return ActingRig(github, slack, store, deps, clock, traffic, sleeps, culprit, deploy)
