"""`rearguard demo`: the whole loop on embedded defaults, with no server, key or account.

A real git repository with PRs written by simulated agent sessions is deployed three times; the
second deploy carries a PR that raises the 5xx ratio tenfold. The same Watch, detector,
attribution, store and rollback code as the server runs it; only the edges are embedded:
simulated metrics (`SimulatedSource`), the local-git `Forge` and the console `Notifier`. Time is a
`ManualClock`, so half an hour of watching takes a moment. The fix step runs the template Fixer
(a bug issue written under the repository's `.git/rearguard/issues/`), or, when
`ANTHROPIC_API_KEY` is set, the Anthropic Fixer (a draft fix branch in the demo repository).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from attribution.identity import identify
from attribution.records import Deploy
from attribution.store import Store
from loop.api.views import incident_view, pr_view
from loop.clock import ManualClock
from loop.config import Settings, settings_from
from loop.demo.repo import DemoRepo, build_demo_repo
from loop.demo.revert import deploy_the_revert
from loop.watch.deps import WatchDeps, build_fixer
from loop.watch.phases import ACTIVE, Phase
from loop.watch.scheduler import run_due
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge
from rollback.notify import Delivery, Notice, Reply, Upload, WarningNotice
from rollback.slack import message_payload, reply_payload, warning_payload

SERVICE = "checkout"
STEP = 30.0
RATE = 20.0  # requests per second
BASE_ERRORS = 0.005
BAD_ERRORS = 0.05
SLOW = 0.02
BAD = f'sum(increase(http_requests_total{{service="{SERVICE}",code=~"5.."}}[30s]))'
TOTAL = f'sum(increase(http_requests_total{{service="{SERVICE}"}}[30s]))'
SLOW_Q = (
    f'sum(increase(http_request_duration_seconds_count{{service="{SERVICE}"}}[30s])) - '
    f'sum(increase(http_request_duration_seconds_bucket{{service="{SERVICE}",le="0.5"}}[30s]))'
)


def demo_settings(store: Path, env: Mapping[str, str] | None = None) -> Settings:
    """The demo's config, validated by the same code as a TOML file (`env`: only the Anthropic
    key is read from it)."""
    step = "$step"
    return settings_from(
        {
            "server": {"store": str(store)},
            "policy": {"mode": "propose", "action_bar": 0.8},
            "services": {
                SERVICE: {
                    "repo": "acme/checkout",
                    "environments": ["production"],
                    "paths": ["checkout/**"],
                    "step": "30s",
                    "watch": "10m",
                    "baseline": "15m",
                    "slis": {
                        "http_errors": {
                            "kind": "ratio",
                            "bad": BAD.replace("30s", step),
                            "total": TOTAL.replace("30s", step),
                            "tolerance": 0.2,
                        },
                        "slow_requests": {
                            "kind": "ratio",
                            "bad": SLOW_Q.replace("30s", step),
                            "total": TOTAL.replace("30s", step),
                            "tolerance": 0.2,
                            "critical": False,
                        },
                    },
                }
            },
        },
        {k: v for k, v in (env or {}).items() if k == "ANTHROPIC_API_KEY"},
        "demo",
    )


@dataclass
class Traffic:
    """Simulated request counts per step: deterministic noise, an error ratio that can change."""

    seed: int = 7
    changes: list[tuple[float, float]] = field(default_factory=list)

    def error_ratio(self, t: float) -> float:
        ratio = BASE_ERRORS
        for since, value in self.changes:
            if t >= since:
                ratio = value
        return ratio

    def _rng(self, t: float, what: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}:{what}:{t:.3f}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - simulation

    def total(self, t: float, step: float) -> float:
        return float(round(self._rng(t, "total").gauss(RATE * step, (RATE * step) ** 0.5)))

    def _binomial(self, n: float, p: float, rng: random.Random) -> float:
        mean, sd = n * p, (n * p * (1 - p)) ** 0.5
        return float(max(0, round(rng.gauss(mean, sd))))

    def bad(self, t: float, step: float) -> float:
        return self._binomial(self.total(t, step), self.error_ratio(t), self._rng(t, "bad"))

    def slow(self, t: float, step: float) -> float:
        return self._binomial(self.total(t, step), SLOW, self._rng(t, "slow"))


class CapturingNotifier:
    """Delivers through the console notifier and keeps each payload for `--json`."""

    def __init__(self, inner: ConsoleNotifier, channel: str) -> None:
        self._inner = inner
        self._channel = channel
        self.payloads: list[dict[str, Any]] = []

    async def send(self, notice: Notice) -> Delivery:
        self.payloads.append(message_payload(notice, self._channel))
        return await self._inner.send(notice)

    async def warn(self, warning: WarningNotice) -> Delivery:
        self.payloads.append(warning_payload(warning, self._channel))
        return await self._inner.warn(warning)

    async def reply(self, thread: Delivery, reply: Reply) -> Delivery:
        self.payloads.append(reply_payload(reply, thread.channel, thread.ts))
        return await self._inner.reply(thread, reply)

    async def upload(self, thread: Delivery, upload: Upload) -> str:
        return await self._inner.upload(thread, upload)


Say = Callable[[str], None]


def _clock_text(t: float, start: float) -> str:
    minutes, seconds = divmod(int(t - start), 60)
    return f"T+{minutes:02d}:{seconds:02d}"


async def run_demo(
    workdir: Path, out: TextIO, as_json: bool, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run the demo in `workdir`; print the timeline to `out` (or JSON); return the document."""
    repo = build_demo_repo(workdir / "checkout")
    store_path = workdir / "rearguard.duckdb"
    settings = demo_settings(store_path, env)
    store = await Store.open(store_path)
    traffic = Traffic()
    source = SimulatedSource(
        {
            BAD: traffic.bad,
            TOTAL: traffic.total,
            SLOW_Q: traffic.slow,
        }
    )
    stream = io.StringIO() if as_json else out
    notifier = CapturingNotifier(ConsoleNotifier(stream, "#checkout-deploys"), "#checkout-deploys")
    start = max(pr.merged_at for pr in repo.prs) + 600
    clock = ManualClock(start)
    deps = WatchDeps(settings, store, source, LocalGitForge(repo.path), notifier, clock,
                     fixer=build_fixer(settings))  # fmt: skip

    def say(line: str) -> None:
        if not as_json:
            print(line, file=out)

    say(f"Rearguard demo: repository {repo.path} ({repo.repo}), store {store_path}")
    try:
        for pr in repo.prs:
            ident = identify(pr.author, pr.body, labels=pr.labels, repo=pr.repo)
            await store.prs.record_pr(replace(pr, identity=ident), clock.now())
            who = f"{ident.name} session {ident.session}" if ident.is_agent else f"{ident.name}"
            say(f"  recorded PR #{pr.number} {pr.title!r} by {who}")
        for index in range(1, len(repo.deploys) + 1):
            await _deploy(deps, repo, traffic, index, say)
        await deploy_the_revert(
            deps, repo, service=SERVICE, step=STEP, say=say,
            restore=lambda t: traffic.changes.append((t, BASE_ERRORS)),
        )  # fmt: skip
        document = await _document(store, repo, store_path, notifier.payloads)
    finally:
        await store.close()
    if as_json:
        print(json.dumps(document, indent=2), file=out)
    else:
        say(_summary(document))
    return document


async def _deploy(
    deps: WatchDeps,
    repo: DemoRepo,
    traffic: Traffic,
    index: int,
    say: Say,
) -> None:
    clock = deps.clock
    assert isinstance(clock, ManualClock)
    planned = repo.deploys[index - 1]
    sha, previous, numbers = planned.sha, planned.previous_sha, planned.pr_numbers
    if repo.culprit_number in numbers:  # what the culprit's code does to production
        traffic.changes.append((clock.now(), BAD_ERRORS))
    deploy = Deploy(
        id=f"demo-deploy-{index}",
        service=SERVICE,
        environment="production",
        sha=sha,
        finished_at=clock.now(),
        source="demo",
        repo=repo.repo,
        previous_sha=previous,
    )
    await deps.store.watches.record_deploy(deploy, Phase.DEPLOYED, clock.now())
    t0 = clock.now()
    say(
        f"\n{_clock_text(t0, t0)} deploy {index}: {sha[:10]} to production, PRs "
        + ", ".join(f"#{n}" for n in numbers)
    )
    seen = 0
    for _ in range(200):
        await run_due(deps, tick=STEP)
        timeline = await deps.store.watches.timeline(deploy.id)
        for row in timeline[seen:]:
            say(
                f"  {_clock_text(row['at'], t0)} {row['from'] or '-'} -> {row['to']}: "
                f"{row['reason']}"
            )
        seen = len(timeline)
        watch = await deps.store.watches.watch(deploy.id)
        if watch is None or watch.phase not in {str(p) for p in ACTIVE}:
            incident = await deps.store.incidents.incident_for_deploy(deploy.id)
            for action in await deps.store.incidents.actions(incident.id) if incident else []:
                say(f"  {_clock_text(clock.now(), t0)} action {action.kind} {action.id}: "
                    f"{action.status} {action.url or action.error or ''}".rstrip())  # fmt: skip
            break
        await clock.sleep(STEP)
    await clock.sleep(1800)  # the next deploy comes half an hour later


async def _document(
    store: Store, repo: DemoRepo, store_path: Path, notices: list[dict[str, Any]]
) -> dict[str, Any]:
    incidents = [await incident_view(store, i) for i in await store.incidents.recent()]
    culprits = [
        s["pr"]
        for inc in incidents
        for s in inc["suspects"]
        if s["number"] in inc["revert_unit"] and s["pr"]
    ]
    deploys = []
    for d in sorted(await store.watches.deploys(), key=lambda d: d.finished_at):
        watch = await store.watches.watch(d.id)
        deploys.append(
            {
                "id": d.id,
                "sha": d.sha,
                "phase": watch.phase if watch else None,
                "prs": [p.number for p in await store.prs.deploy_prs(d.id)],
            }
        )
    sessions = await store.prs.agent_sessions()
    return {
        "store": str(store_path),
        "repository": str(repo.path),
        "deploys": deploys,
        "incidents": incidents,
        "culprit_prs": culprits,
        "agent_sessions": sessions,
        "actions": [a for inc in incidents for a in inc["actions"]],
        "fixes": [a for inc in incidents for a in inc["actions"] if a["kind"] == "fix"],
        "notices": notices,
        "all_prs": [pr_view(p) for p in await store.prs.of_repo(repo.repo)],
    }


def _summary(document: dict[str, Any]) -> str:
    lines = ["", "Summary"]
    for d in document["deploys"]:
        lines.append(f"  deploy {d['sha'][:10]} PRs {d['prs']}: {d['phase']}")
    for inc in document["incidents"]:
        lines.append(f"  incident {inc['id']}: {inc['sli']} regressed; {inc['reason']}")
        if inc["time_to_restore_seconds"] is not None:
            lines.append(
                f"    {inc['phase']}: time to revert {inc['time_to_revert_seconds']:.0f}s, "
                f"time to restore {inc['time_to_restore_seconds']:.0f}s "
                "(onset to recovery verified)"
            )
        for pr in document["culprit_prs"]:
            agent = pr["agent"]
            lines.append(
                f"    culprit PR #{pr['number']} {pr['title']!r} by {agent['name']} "
                f"(session {agent['session']}, model {agent['model']})"
            )
        for action in inc["actions"]:
            lines.append(f"    action {action['kind']}: {action['status']} {action['url'] or ''}")
    lines.append(f"  store: {document['store']}")
    example = '"select service, verdict, count(*) from deploys group by all"'
    lines.append(f"  query it: rearguard query --store {document['store']} {example}")
    return "\n".join(lines)


def main(workdir: Path, as_json: bool) -> int:
    """Entry point for the CLI."""
    import asyncio  # noqa: PLC0415 - only the CLI path needs a fresh event loop
    import os  # noqa: PLC0415 - only the CLI path reads the environment

    asyncio.run(run_demo(workdir, sys.stdout, as_json, os.environ))
    return 0
