"""A Watch wired to the embedded parts: the demo's real git repository (local-git Forge), a
simulated metrics source driven by the test, a real DuckDB store and the console notifier.

Used by the Watch tests to step a deploy through its phases without any network.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path

from attribution.identity import identify
from attribution.records import Deploy
from attribution.store import Store
from loop.clock import ManualClock
from loop.config import Settings, settings_from
from loop.demo.repo import DemoRepo, build_demo_repo
from loop.watch.deps import WatchDeps
from loop.watch.phases import ACTIVE, Phase
from loop.watch.scheduler import run_due
from loop.watch.steps import advance
from observer.simulated import SimulatedSource
from observer.sources import SourceUnavailable
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge

BAD = 'sum(increase(errors_total{service="checkout"}[30s]))'
TOTAL = 'sum(increase(requests_total{service="checkout"}[30s]))'
STEP = 30.0


def settings(store: Path, mode: str = "propose") -> Settings:
    return settings_from(
        {
            "server": {"store": str(store)},
            "policy": {"mode": mode},
            "services": {
                "checkout": {
                    "repo": "acme/checkout",
                    "step": "30s",
                    "watch": "10m",
                    "baseline": "10m",
                    "slis": {
                        "http_errors": {
                            "bad": BAD.replace("30s", "$step"),
                            "total": TOTAL.replace("30s", "$step"),
                        }
                    },
                },
            },
        },
        {},
        "test",
    )


@dataclass
class Metrics:
    """Per-step counts the test sets: 600 requests a step and an error ratio from a given time."""

    ratio_before: float = 0.005
    ratio_after: float = 0.005
    change_at: float = float("inf")
    recover_at: float = float("inf")
    down_from: float = float("inf")
    down_until: float = float("-inf")
    clock: ManualClock | None = None
    calls: list[float] = field(default_factory=list)

    def _check(self) -> None:
        now = self.clock.now() if self.clock else 0.0
        if self.down_from <= now < self.down_until:
            raise SourceUnavailable("Prometheus at http://prometheus:9090 is unreachable")

    def total(self, t: float, step: float) -> float:
        self._check()
        return 600.0

    def bad(self, t: float, step: float) -> float:
        self._check()
        changed = self.change_at < t <= self.recover_at
        return 600.0 * (self.ratio_after if changed else self.ratio_before)


@dataclass
class Rig:
    """Everything one Watch test needs, built over a tmp path."""

    repo: DemoRepo
    deps: WatchDeps
    metrics: Metrics
    clock: ManualClock
    out: io.StringIO
    store_path: Path

    async def deploy(self, index: int) -> Deploy:
        """Record demo deploy `index` (1-based) at the current time."""
        planned = self.repo.deploys[index - 1]
        deploy = Deploy(
            id=f"deploy-{index}",
            service="checkout",
            environment="production",
            sha=planned.sha,
            finished_at=self.clock.now(),
            source="test",
            repo=self.repo.repo,
            previous_sha=planned.previous_sha,
        )
        await self.deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, self.clock.now())
        return deploy

    async def run(self, deploy_id: str) -> str:
        """Run the scheduler tick by tick until the Watch is final; its phase."""
        for _ in range(100):
            await run_due(self.deps, tick=STEP)
            state = await self.deps.store.watches.watch(deploy_id)
            assert state is not None
            if state.phase not in {str(p) for p in ACTIVE}:
                return state.phase
            await self.clock.sleep(STEP)
        raise AssertionError("watch did not finish")

    async def step_until(self, deploy_id: str, phase: Phase) -> None:
        """Take single transitions (waiting while observing) until the Watch is in `phase`."""
        for _ in range(100):
            state = await self.deps.store.watches.watch(deploy_id)
            assert state is not None
            if state.phase == phase:
                return
            if state.next_due > self.clock.now():
                await self.clock.sleep(state.next_due - self.clock.now())
            await advance(self.deps, deploy_id)
        raise AssertionError(f"watch never reached {phase}")


async def make_rig(tmp_path: Path, mode: str = "propose", store: Store | None = None) -> Rig:
    """A rig over the demo repository, its PRs recorded as webhooks would record them."""
    repo_path = tmp_path / "repo"
    repo = build_demo_repo(repo_path) if not repo_path.exists() else None
    assert repo is not None
    store_path = tmp_path / "store.duckdb"
    store = store or await Store.open(store_path)
    clock = ManualClock(max(pr.merged_at for pr in repo.prs) + 600)
    for pr in repo.prs:
        await store.prs.record_pr(replace(pr, identity=identify(pr.author, pr.body)), clock.now())
    metrics = Metrics(clock=clock)
    source = SimulatedSource({BAD: metrics.bad, TOTAL: metrics.total})
    out = io.StringIO()
    deps = WatchDeps(
        settings(store_path, mode),
        store,
        source,
        LocalGitForge(repo.path),
        ConsoleNotifier(out, "#deploys"),
        clock,
    )
    return Rig(repo, deps, metrics, clock, out, store_path)
