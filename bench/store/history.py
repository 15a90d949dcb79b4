"""A year of synthetic history for `make bench-store`, written through the store's own write path.

50 services (`svc-00`..`svc-49`, each its repository `acme/svc-NN`, one environment) deploy
1,000 times each over a year (50,000 deploys); each deploy carries four PRs merged since the
previous one (200,000), written by agents (Claude Code, Codex, Copilot, Cursor, Devin, with their
models, sessions, specs, tokens and cost), by people, or by nobody the markers name; each Watch
evaluated four SLIs ten times (2,000,000 observations) and ended healthy, inconclusive or, for
2,000 deploys, regressed: an incident with the deploy's PRs as ranked suspects, a revert round
carried by the service's next deploy, its times, actions, model usage and the feedback the loop
and people gave. Every PR and deploy is also a journaled delivery. Culprits lean on some agents
and code areas more than others, so the reports have something to find.

Rows go in chunks of deploys, oldest first, one transaction each: PRs and their opening times
through the journal's own bulk writes (`PullRequestQueries.write_prs`,
`EvidenceQueries.write_opened`), everything else through the store's bulk history path
(`store.history`, DuckDB's appender), and each PR's CI and review summary rebuilt from its runs
and reviews as ingest rebuilds it (`store_reports.write_pr_loop`). Seeded: the same shape and
seed give the same store. `GENERATOR_VERSION` names this layout; change it whenever the rows
change, so a cached store (`bench.store.cache`) is rebuilt.
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb

from attribution.records import AgentIdentity, MergedPR
from attribution.store import Store
from attribution.store_evidence import EvidenceQueries
from attribution.store_history import HistoryQueries
from attribution.store_prs import PullRequestQueries
from attribution.store_reports import write_pr_loop
from loop.api.ingest import deploy_id_for

GENERATOR_VERSION = 2
START = 1_764_547_200.0  # 2025-12-01T00:00:00Z
YEAR = 365 * 86_400.0
ENVIRONMENT = "production"
SLIS = ("http_errors", "latency_p99", "cpu", "queue_depth")
AREAS = ("api", "billing", "auth", "db", "ui", "jobs", "search", "notify")
AGENTS = (  # name, model, share of agent PRs, how much likelier than a person to break things
    ("claude-code", "claude-sonnet-4-6", 0.35, 1.0),
    ("codex", "gpt-5-codex", 0.25, 1.3),
    ("copilot-swe-agent", "gpt-5", 0.2, 1.6),
    ("cursor", "claude-opus-4-5", 0.12, 0.8),
    ("devin", "devin-2", 0.08, 2.2),
)
RISKY_AREAS = {"db": 2.5, "auth": 1.8, "billing": 1.5}
EVALUATION_STEP = 60.0  # seconds between a Watch's evaluations


@dataclass(frozen=True, slots=True)
class Shape:
    """How much history: the issue's figures at scale 1."""

    services: int = 50
    deploys: int = 50_000
    prs_per_deploy: int = 4
    evaluations: int = 10
    incidents: int = 2_000
    seed: int = 20261202

    @classmethod
    def scaled(cls, scale: float) -> Shape:
        """Every count times `scale` (services and the per-deploy figures stay)."""
        base = cls()
        return cls(
            deploys=max(base.services * 2, round(base.deploys * scale)),
            incidents=max(1, round(base.incidents * scale)),
        )

    @property
    def key(self) -> str:
        """What a cached store built from this shape is named by."""
        return (
            f"v{GENERATOR_VERSION}-s{self.services}-d{self.deploys}-p{self.prs_per_deploy}"
            f"-e{self.evaluations}-i{self.incidents}-r{self.seed}"
        )


@dataclass(slots=True)
class _Chunk:
    prs: list[MergedPR] = field(default_factory=list)
    opened: list[tuple[str, int, float]] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class _Deploy:
    service: int
    index: int
    finished_at: float


def _sha(service: int, index: int) -> str:
    return f"{service:08x}{index:032x}"


def _schedule(shape: Shape, rng: random.Random) -> list[_Deploy]:
    """Every deploy's service, index within its service and finish time, oldest first."""
    out: list[_Deploy] = []
    per = shape.deploys // shape.services
    for s in range(shape.services):
        times = sorted(START + rng.random() * YEAR for _ in range(per))
        out += [_Deploy(s, k, t) for k, t in enumerate(times)]
    return sorted(out, key=lambda d: (d.finished_at, d.service))


class HistoryGenerator:
    """Builds the history of `shape` into a store, chunk by chunk."""

    def __init__(self, shape: Shape, chunk: int = 2_000) -> None:
        self.shape = shape
        self.chunk = chunk
        self._rng = random.Random(shape.seed)
        self._schedule = _schedule(shape, self._rng)
        # The deploys that regress: never a service's last (its revert rides on the next).
        last = {d.service: d.index for d in self._schedule}
        candidates = [i for i, d in enumerate(self._schedule) if d.index < last[d.service]]
        self._incidents = set(self._rng.sample(candidates, min(shape.incidents, len(candidates))))
        self._finished = {(d.service, d.index): d.finished_at for d in self._schedule}
        self._next_pr = [1] * shape.services
        self._prev: dict[int, tuple[str, float]] = {}  # service -> its last deploy (sha, finished)
        self._risk: dict[tuple[str, int], float] = {}  # PR -> how likely it is the culprit

    async def build(self, store: Store) -> dict[str, int]:
        """Write the whole history into `store`; rows written per table."""
        totals: dict[str, int] = defaultdict(int)
        for chunk in self._chunks():
            written = await store.writer.tx(functools.partial(self._write, chunk=chunk))
            for table, n in written.items():
                totals[table] += n
        return dict(totals)

    @staticmethod
    def _write(cur: duckdb.DuckDBPyConnection, *, chunk: _Chunk) -> dict[str, int]:
        PullRequestQueries.write_prs(cur, chunk.prs, chunk.last)
        EvidenceQueries.write_opened(cur, chunk.opened)
        written = HistoryQueries.write(cur, chunk.rows)
        numbers: dict[str, list[int]] = defaultdict(list)
        for pr in chunk.prs:
            numbers[pr.repo].append(pr.number)
        for repo, of_repo in numbers.items():
            write_pr_loop(cur, repo, of_repo)
        return written | {"pull_requests": len(chunk.prs), "pr_facts": len(chunk.opened),
                          "pr_loop": len(chunk.prs)}  # fmt: skip

    def _chunks(self) -> Iterator[_Chunk]:
        chunk = _Chunk()
        for i, d in enumerate(self._schedule):
            self._deploy(chunk, d, regressed=i in self._incidents)
            if (i + 1) % self.chunk == 0:
                yield chunk
                chunk = _Chunk()
        if chunk.prs or chunk.rows:
            yield chunk

    # -- one deploy ---------------------------------------------------------------------------

    def _deploy(self, chunk: _Chunk, d: _Deploy, *, regressed: bool) -> None:
        rng, service = self._rng, f"svc-{d.service:02d}"
        repo = f"acme/{service}"
        sha = _sha(d.service, d.index)
        deploy_id = deploy_id_for(service, ENVIRONMENT, sha, d.finished_at)
        prev = self._prev.get(d.service)
        started = d.finished_at - rng.uniform(60, 600)
        since = prev[1] if prev else started - 86_400
        rows = chunk.rows
        rows["deploys"].append({
            "id": deploy_id, "service": service, "environment": ENVIRONMENT, "repo": repo,
            "sha": sha, "previous_sha": prev[0] if prev else None, "started_at": started,
            "finished_at": d.finished_at, "url": f"https://ci.example/{service}/{d.index}",
            "source": "cd", "created_at": d.finished_at,
        })  # fmt: skip
        rows["journal"].append(self._delivery("cd", "deploy", deploy_id, d.finished_at,
                                              {"service": service, "sha": sha}))  # fmt: skip
        numbers = self._prs(chunk, d.service, repo, since, started)
        rows["deploy_prs"] += [{"deploy_id": deploy_id, "repo": repo, "number": n} for n in numbers]
        chunk.last = max(chunk.last, d.finished_at)
        phases = ["deployed", "observing"]
        if regressed:
            phases += ["regressed", "rolling_back", "reverted"]
            phases.append("recovered" if rng.random() < 0.85 else "escalated")
        else:
            phases.append("inconclusive" if rng.random() < 0.03 else "healthy")
        end = d.finished_at + EVALUATION_STEP * self.shape.evaluations
        rows["watches"].append({
            "deploy_id": deploy_id, "phase": phases[-1], "next_due": end, "updated_at": end,
            "reason": f"history: {phases[-1]}", "verdict": {"status": phases[2]},
            "version": len(phases) - 1,
        })  # fmt: skip
        for seq, phase in enumerate(phases):
            rows["transitions"].append({
                "deploy_id": deploy_id, "seq": seq, "from_phase": phases[seq - 1] if seq else None,
                "to_phase": phase, "changed_at": d.finished_at + seq * EVALUATION_STEP,
                "reason": f"history: {phase}",
            })  # fmt: skip
        self._observations(rows, deploy_id, d.finished_at, regressed=regressed)
        if regressed:
            self._incident(chunk, d, deploy_id, numbers, phases[-1])
        self._prev[d.service] = (sha, d.finished_at)

    @staticmethod
    def _delivery(source: str, event: str, key: str, at: float, body: Any) -> dict[str, Any]:
        return {"id": f"{source}:{key}", "source": source, "event": event, "received_at": at,
                "status": "applied", "error": None, "body": body}  # fmt: skip

    def _identity(self, repo: str, number: int, at: float) -> tuple[AgentIdentity, float]:
        """Who wrote a PR, and how much likelier it is to break things."""
        rng = self._rng
        roll = rng.random()
        if roll < 0.55:
            name, model, risk = self._pick_agent()
            session = f"{name}-{repo.split('/')[1]}-{number}"
            tokens = rng.randint(20_000, 900_000)
            return AgentIdentity(
                kind="agent", name=name, session=session, model=model, role="author",
                spec=f"{repo}#{rng.randint(1, 400)}", tokens=tokens,
                cost_usd=round(tokens * 6e-6, 4), source="trailer Agent-Session",
            ), risk  # fmt: skip
        if roll < 0.8:
            return AgentIdentity(kind="human", name=f"dev{rng.randint(1, 60)}",
                                 source="human-only rule"), 1.0  # fmt: skip
        return AgentIdentity(kind="unknown", name=f"dev{rng.randint(1, 60)}"), 1.0

    def _pick_agent(self) -> tuple[str, str, float]:
        roll, acc = self._rng.random(), 0.0
        for name, model, share, risk in AGENTS:
            acc += share
            if roll < acc:
                return name, model, risk
        name, model, _, risk = AGENTS[-1]
        return name, model, risk

    def _prs(self, chunk: _Chunk, s: int, repo: str, since: float, until: float) -> list[int]:
        """The deploy's PRs (merged in (since, until)), their files, CI runs and deliveries."""
        rng, numbers = self._rng, []
        for merged in sorted(rng.uniform(since, until) for _ in range(self.shape.prs_per_deploy)):
            number = self._next_pr[s]
            self._next_pr[s] += 1
            numbers.append(number)
            identity, risk = self._identity(repo, number, merged)
            area = rng.choice(AREAS)
            files = [f"src/{area}/{rng.choice(('handlers', 'models', 'client', 'rules'))}_{i}.py"
                     for i in range(rng.randint(1, 3))]  # fmt: skip
            head = f"{s:08x}{number:024x}{0xBEEF:08x}"
            labels = [f"agent:{identity.name}"] if identity.is_agent else []
            chunk.prs.append(MergedPR(
                repo=repo, number=number, title=f"Change {area} ({number})",
                author=identity.name if identity.kind != "agent" else f"{identity.name}[bot]",
                url=f"https://github.com/{repo}/pull/{number}", merge_sha=f"{number:040x}",
                head_sha=head, base_ref="main", merged_at=merged,
                body=f"Tune {area}.\n\nAgent-Session: {identity.session}\n" if identity.session
                else f"Tune {area}.", identity=identity, labels=tuple(labels),
                files=tuple(files), node_id=f"PR_{s}_{number}",
                head_ref=f"{identity.name}/change-{number}",
            ))  # fmt: skip
            chunk.opened.append((repo, number, merged - rng.expovariate(1 / 86_400)))
            for path in files:
                chunk.rows["pr_files"].append({
                    "repo": repo, "number": number, "path": path, "previous_path": None,
                    "status": "modified", "additions": rng.randint(1, 200),
                    "deletions": rng.randint(0, 80), "ranges": [[10, 40]],
                    "edits": [[10, 5, 10, 31]],
                })  # fmt: skip
            failed = rng.random() < 0.08 * risk  # a failed first run is re-run, and passes
            for attempt in range(1, 3 if failed else 2):
                chunk.rows["ci_runs"].append({
                    "id": f"workflow_run:{s}{number}:{attempt}#{number}", "repo": repo,
                    "number": number, "kind": "workflow_run", "head_sha": head,
                    "attempt": attempt,
                    "conclusion": "failure" if failed and attempt == 1 else "success",
                    "finished_at": merged - 600 + attempt * 200,
                })  # fmt: skip
            for k in range(rng.choice((0, 1, 1, 2, 3))):
                chunk.rows["pr_reviews"].append({
                    "id": (s * 10_000_000 + number) * 10 + k, "repo": repo, "number": number,
                    "state": "changes_requested" if k < 1 and rng.random() < 0.3 else
                    rng.choice(("approved", "commented")),
                    "reviewer": f"dev{rng.randint(1, 60)}", "commit_id": head,
                    "submitted_at": merged - 3_600 + k * 600,
                })  # fmt: skip
            chunk.rows["journal"].append(
                self._delivery(
                    "github", "pull_request", f"{repo}#{number}", merged, {"number": number}
                )
            )
            self._risk[repo, number] = risk * RISKY_AREAS.get(area, 1.0)
        return numbers

    def _observations(self, rows: dict[str, list[dict[str, Any]]], deploy_id: str, at: float,
                      *, regressed: bool) -> None:  # fmt: skip
        rng = self._rng
        for seq in range(1, self.shape.evaluations + 1):
            bad = regressed and seq == self.shape.evaluations
            for sli in SLIS:
                total = rng.uniform(5_000, 50_000)
                rate = rng.uniform(0.001, 0.01) * (4 if bad and sli == "http_errors" else 1)
                rows["observations"].append({
                    "deploy_id": deploy_id, "seq": seq, "observed_at": at + seq * EVALUATION_STEP,
                    "sli": sli, "status": "regressed" if bad and sli == "http_errors" else
                    ("observing" if seq < self.shape.evaluations else "healthy"),
                    "reason": "history", "baseline_value": 0.005, "watch_value": rate,
                    "baseline_bad": total * 0.005, "baseline_total": total,
                    "watch_bad": total * rate, "watch_total": total,
                    "statistic": rng.gauss(0, 1), "threshold": 4.6, "effect": rate - 0.005,
                    "null_value": 0.0075, "mode": "before_after",
                    "onset": EVALUATION_STEP * (seq - 1) + 20 if bad else None,
                    "queries": None, "windows": None,
                })  # fmt: skip

    def _incident(self, chunk: _Chunk, d: _Deploy, deploy_id: str, numbers: list[int],
                  last_phase: str) -> None:  # fmt: skip
        rng, rows = self._rng, chunk.rows
        service = f"svc-{d.service:02d}"
        repo = f"acme/{service}"
        incident = f"inc_{deploy_id[4:]}"
        opened = d.finished_at + EVALUATION_STEP * self.shape.evaluations
        weights = [self._risk.pop((repo, n), 1.0) * rng.random() for n in numbers]
        ranked = [n for _, n in sorted(zip(weights, numbers, strict=True), reverse=True)]
        ambiguous = rng.random() < 0.15
        unit = numbers if ambiguous else ranked[:1]
        rows["incidents"].append({
            "id": incident, "deploy_id": deploy_id, "service": service,
            "environment": ENVIRONMENT, "sli": "http_errors", "opened_at": opened,
            "verdict": {"status": "regressed", "sli": "http_errors"}, "ambiguous": ambiguous,
            "confidence": rng.uniform(0.3, 0.6) if ambiguous else rng.uniform(0.7, 0.99),
            "revert_unit": unit, "reason": "history: error ratio up",
        })  # fmt: skip
        share = 1.0 / len(ranked)
        for rank, n in enumerate(ranked, start=1):
            rows["suspects"].append({"incident_id": incident, "rank": rank, "repo": repo,
                                     "number": n, "probability": share,
                                     "reason": "touched the failing route"})  # fmt: skip
        revert_at = opened + rng.uniform(10, 120)
        for kind in ("revert", "notify"):
            rows["actions"].append({
                "id": f"{kind}:{incident}", "incident_id": incident, "kind": kind,
                "status": "completed", "attempts": 1, "created_at": opened,
                "updated_at": revert_at, "url": f"https://github.com/{repo}/pull/r{incident}"
                if kind == "revert" else None, "detail": None, "error": None,
            })  # fmt: skip
        recovered = last_phase == "recovered"
        carried = self._finished[d.service, d.index + 1]  # the service's next deploy carries it
        rows["revert_rounds"].append({
            "incident_id": incident, "round": 1, "prs": unit, "action_id": f"revert:{incident}",
            "decided_at": opened, "reason": "top suspect" if not ambiguous else "whole range",
            "deploy_id": deploy_id_for(service, ENVIRONMENT, _sha(d.service, d.index + 1), carried),
            "outcome": "recovered" if recovered else "not_recovered",
            "outcome_at": carried + 600, "note": "history",
        })  # fmt: skip
        restore = carried + 600
        rows["incident_times"].append({
            "incident_id": incident, "onset_at": d.finished_at, "detected_at": opened,
            "revert_opened_at": revert_at, "recovered_at": restore if recovered else None,
            "time_to_revert": revert_at - opened,
            "time_to_restore": restore - d.finished_at if recovered else None,
        })  # fmt: skip
        feedback: list[tuple[str, int | None, str, str]] = [
            ("recovered" if recovered else "not_recovered", None, "rearguard", "loop")
        ]
        roll = rng.random()
        if roll < 0.3:
            feedback.append(("confirmed", None, f"oncall{rng.randint(1, 9)}", "slack"))
        elif roll < 0.35:
            feedback.append(("wrong_pr", ranked[0], f"oncall{rng.randint(1, 9)}", "slack"))
        elif roll < 0.38:
            feedback.append(("false_alarm", None, f"oncall{rng.randint(1, 9)}", "slack"))
        for i, (kind, pr, actor, source) in enumerate(feedback):
            rows["feedback"].append({
                "id": f"{source}:{incident}:{i}", "incident_id": incident, "kind": kind,
                "pr_number": pr, "actor": actor, "source": source, "note": None,
                "created_at": restore + i * 600,
            })  # fmt: skip
        for n in range(1, rng.randint(1, 3)):
            tokens_in, tokens_out = rng.randint(5_000, 60_000), rng.randint(500, 8_000)
            rows["llm_usage"].append({
                "id": f"{incident}:{n}", "incident_id": incident, "model": "claude-sonnet-4-6",
                "input_tokens": tokens_in, "output_tokens": tokens_out,
                "cost_usd": round(tokens_in * 3e-6 + tokens_out * 15e-6, 5),
                "created_at": opened + 60 * n,
            })  # fmt: skip
