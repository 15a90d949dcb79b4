"""`make bench-loop`: onset to revert PR and to the first Slack message, on real parts.

A real Prometheus scrapes the sample app every second; the service's step is 1 s; the GitHub and
Slack stand-ins answer each call after a latency drawn uniformly from `STANDIN_LATENCY` (seeded),
served from a thread and loop of their own as remote services would be (`bench.loop.standins`).
Time is compressed 15-fold, a 1 s step standing for a 15 s one: the 120-step baseline and watch are
the defaults' 30 minutes, and the detector's blip is one step (`BENCH_BLIP`, seconds; the
production `max_blip` of 2 minutes, 8 steps at 15 s, is `BENCH_BLIP=8`). Each incident is one
service whose error ratio goes from 0.5% to 2.5% at 150 simulated requests/s at the moment its
deploy is posted (the onset). The real app (over loopback, its scheduler on the wall clock)
detects, attributes, opens the revert PR (GraphQL on the GitHub stand-in, over a real git
repository) and posts to Slack. Stage times come from Rearguard's own OpenTelemetry spans, read
back with an in-memory exporter: `watch.advance` (one Watch step) and inside it `watch.evaluate`
(the detector), `prometheus.fetch` (its queries, run together), `attribution.rank`, `github.*`,
`slack.send` and `store.call`; each span's exclusive time (its duration less its children's) goes
to its stage, and the time outside any Watch step is waiting for evidence (the next step, the next
scrape). Own stages are the loop, attribution and the store (a store span is the caller's whole
wait: the writer queue, reported apart, and DuckDB's work).

Writes bench/results/loop.json and prints a table. Needs the shared fixtures (the stand-ins build
GitHub payloads over real samples) and a `prometheus` binary (`make prometheus`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientSession, web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.loop.standins import StandIns
from loop.api.app import build_app
from loop.config import settings_from
from loop.telemetry import install_tracing
from observer.detect import DetectorSettings
from observer.prometheus import PrometheusSource
from rollback.github import GitHubForge
from rollback.slack import SlackNotifier
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import API_TOKEN, AUTH, WEBHOOK_SECRET, sign
from tests.prometheus_server import PrometheusServer

INCIDENTS = int(os.environ.get("BENCH_INCIDENTS", "20"))
WAVE = 5  # incidents started together; waves follow each other
RATE = 150.0
BASE_RATIO, BAD_RATIO = 0.005, 0.025
STEP = 1.0
BASELINE = 120.0  # seconds: 120 steps, like the default 30 min baseline at a 15 s step
STANDIN_LATENCY = (0.1, 0.3)  # seconds per GitHub or Slack call, uniform, seeded
BLIP = float(os.environ.get("BENCH_BLIP", str(STEP)))  # seconds; 15 s at a 15 s step is one step
SEED = 5
CHANNEL = "C0BENCH"
OWN = ("loop", "attribution", "store")
EXTERNAL = ("prometheus", "github", "slack")
RESULTS = Path(__file__).resolve().parent.parent / "results" / "loop.json"


def service(name: str, *, watch: str = "120s", baseline: str = "120s") -> dict[str, Any]:
    """A service of the sample app at a 1 s step (its config table). At a 1 s scrape a 1 s
    `increase` holds one sample and is empty: each step reads the 2 s window halved, so the
    steps' sum is the true count (each event lands in two windows)."""
    sel = f'service="{name}"'
    return {
        "repo": "acme/shop", "step": "1s", "watch": watch, "baseline": baseline,
        "slis": {"http_errors": {
            "bad": f'sum(increase(http_requests_total{{{sel},code=~"5.."}}[2s])) / 2',
            "total": f"sum(increase(http_requests_total{{{sel}}}[2s])) / 2",
            "min_events": 100}},
    }  # fmt: skip


def _stage(name: str) -> str:
    head = name.split(".", 1)[0]
    return {"watch": "loop", "store": "store", "attribution": "attribution"}.get(head, head)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def analyse(spans: list[ReadableSpan], onsets: dict[str, float]) -> list[dict[str, Any]]:
    """Per incident: onset to revert PR and to the first Slack message, and time per stage."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        if s.parent is not None:
            children[s.parent.span_id].append(s)

    def root(s: ReadableSpan) -> ReadableSpan:
        while s.parent is not None and s.parent.span_id in by_id:
            s = by_id[s.parent.span_id]
        return s

    def seconds(s: ReadableSpan) -> float:
        return ((s.end_time or 0) - (s.start_time or 0)) / 1e9

    per_deploy: dict[str, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        top = root(s)
        deploy = (top.attributes or {}).get("deployment.id")
        if top.name == "watch.advance" and isinstance(deploy, str):
            per_deploy[deploy].append(s)
    rows: list[dict[str, Any]] = []
    for deploy, onset in onsets.items():
        mine = per_deploy.get(deploy, [])
        queued = 0.0
        ops: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        reverts = [s for s in mine if s.name == "github.open_revert"]
        slacks = [s for s in mine if s.name == "slack.send"]
        if not reverts or not slacks:
            why = _phases.get(deploy, "not final in time")
            rows.append({"deploy": deploy, "error": f"no revert PR or Slack message; {why}"})
            continue
        revert_at = min((s.end_time or 0) for s in reverts) / 1e9
        regressed = [s for s in mine if s.name == "watch.advance"
                     and (s.attributes or {}).get("rearguard.phase") == "regressed"]  # fmt: skip
        detected_at = min((s.end_time or 0) for s in regressed) / 1e9 if regressed else revert_at
        evaluations = sum(1 for s in mine if s.name == "watch.evaluate"
                          and (s.end_time or 0) / 1e9 <= detected_at)  # fmt: skip
        slack_at = min((s.end_time or 0) for s in slacks) / 1e9
        stages: dict[str, float] = defaultdict(float)
        inside = 0.0
        for s in mine:
            if (s.end_time or 0) / 1e9 > slack_at + 1e-6:
                continue
            exclusive = seconds(s) - sum(seconds(c) for c in children[s.context.span_id])
            stages[_stage(s.name)] += max(exclusive, 0.0)
            wait = (s.attributes or {}).get("rearguard.store.queued_seconds")
            queued += wait if isinstance(wait, float) else 0.0
            if s.name == "store.call":
                op = str((s.attributes or {}).get("rearguard.store.op", "call"))
                run = (s.attributes or {}).get("rearguard.store.run_seconds")
                ops[op][0] += 1
                ops[op][1] += seconds(s)
                ops[op][2] += run if isinstance(run, float) else 0.0
            if s.name == "watch.advance":
                inside += seconds(s)
        calls = {op: {"count": int(v[0]), "seconds": v[1], "run_seconds": v[2]}
                 for op, v in sorted(ops.items())}  # fmt: skip
        stages["waiting for evidence"] = max(slack_at - onset - inside, 0.0)
        rows.append({
            "deploy": deploy,
            "onset_to_revert_pr_seconds": revert_at - onset,
            "onset_to_first_slack_seconds": slack_at - onset,
            "onset_to_revert_pr_steps": (revert_at - onset) / STEP,
            "onset_to_detection_steps": (detected_at - onset) / STEP,
            "detection_to_revert_pr_seconds": revert_at - detected_at,
            "evaluations_to_detection": evaluations,
            "onset_to_first_slack_steps": (slack_at - onset) / STEP,
            "own_stages_seconds": sum(stages[k] for k in OWN),
            "store_queue_seconds": queued,
            "store_calls": calls,
            "stages_seconds": dict(stages),
        })  # fmt: skip
    return rows


async def _post(session: ClientSession, url: str, **kwargs: Any) -> Any:
    async with session.post(url, **kwargs) as response:
        body = await response.json()
        if response.status != 202:
            raise RuntimeError(f"{url}: {response.status} {body}")
        return body


async def _incidents(
    base: str, stand_ins: StandIns, sample: SampleApp, names: list[str]
) -> dict[str, float]:
    """Merge one agent PR per service, then its deploy and the onset together; deploy -> onset."""
    onsets: dict[str, float] = {}
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with ClientSession() as session:
        for wave in range(0, len(names), WAVE):
            batch, pending = names[wave : wave + WAVE], []
            github = stand_ins.github
            for name in batch:
                before = await stand_ins.call(github.head_sha)
                body = f"Change {name}\n\nAgent-Session: s-{name}\nAgent-Name: bench-agent"
                pr = await stand_ins.call(github.merge_pr, f"Change {name}", body,
                                          {f"src/{name}.py": "x = 1\n"})  # fmt: skip
                hook = await stand_ins.call(github.pull_request_closed_webhook, pr.number)
                payload = json.dumps(hook).encode()
                await _post(session, f"{base}/v1/webhooks/github", data=payload, headers={
                    "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": f"d-{name}",
                    "X-Hub-Signature-256": sign(payload),
                    "Content-Type": "application/json"})  # fmt: skip
                pending.append((name, before, await stand_ins.call(github.head_sha)))
            for name, before, after in pending:
                onset = time.time()
                sample.configure(name, rate=RATE, error_ratio=BAD_RATIO)
                answer = await _post(session, f"{base}/v1/deploys", headers=auth, json={
                    "service": name, "environment": "production", "sha": after,
                    "previous_sha": before, "finished_at": onset})  # fmt: skip
                onsets[answer["id"]] = onset
            await _settle(session, base, [d for d in onsets if d not in _done], 90)
    return onsets


_done: set[str] = set()
_phases: dict[str, str] = {}


async def _settle(session: ClientSession, base: str, deploys: list[str], within: float) -> None:
    deadline = time.monotonic() + within
    while deploys and time.monotonic() < deadline:
        for deploy in list(deploys):
            async with session.get(f"{base}/v1/deploys/{deploy}", headers=AUTH) as response:
                view = await response.json()
            if view["phase"] in {"reverted", "escalated", "healthy", "inconclusive"}:
                _phases[deploy] = f"{view['phase']}: {view['reason']}"
                deploys.remove(deploy)
                _done.add(deploy)
        await asyncio.sleep(0.5)


async def run(workdir: Path) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    install_tracing("rearguard-bench", processor=SimpleSpanProcessor(exporter))
    names = [f"bench-{i:02d}" for i in range(INCIDENTS)]
    sample = SampleApp(seed=5)
    sample.start_in_thread()
    (workdir / "prometheus").mkdir()
    prometheus = PrometheusServer([urlsplit(sample.url).netloc], workdir=workdir / "prometheus")
    stand_ins = StandIns(workdir / "github", "acme/shop", STANDIN_LATENCY, SEED)
    try:
        prometheus.start()
        for name in names:
            sample.configure(name, rate=RATE, error_ratio=BASE_RATIO)
        await stand_ins.start()
        github, slack = stand_ins.github, stand_ins.slack
        env = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}
        settings = settings_from({
            "server": {"store": str(workdir / "store.duckdb"), "tick": "0.25s"},
            "prometheus": {"url": prometheus.url, "timeout": "3s"},
            "slack": {"channel": CHANNEL}, "policy": {"mode": "propose"},
            "services": {n: service(n) for n in names}}, env, "bench")  # fmt: skip
        forge = GitHubForge(github.url, github.token, timeout=10)
        notifier = SlackNotifier(slack.token, CHANNEL, base_url=slack.url)
        source = PrometheusSource(prometheus.url, timeout=3)
        detector = DetectorSettings(blip=BLIP)
        app = build_app(settings, clients=(source, forge, notifier), detector=detector)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        # 120 steps of baseline, as the default 30 min is at a 15 s step, scraped every second.
        await asyncio.sleep(BASELINE + 2)
        onsets = await _incidents(base, stand_ins, sample, names)
        await runner.cleanup()
        await forge.aclose()
        await notifier.aclose()
        await source.aclose()
        prs = len(await stand_ins.call(github.created_pulls))
    finally:
        await stand_ins.close()
        prometheus.stop()
        sample.stop()
    return _report(analyse(list(exporter.get_finished_spans()), onsets), prs)


def _report(rows: list[dict[str, Any]], prs: int) -> dict[str, Any]:
    good = [r for r in rows if "error" not in r]
    summary: dict[str, Any] = {"incidents": len(rows), "measured": len(good), "revert_prs": prs}
    for key in ("onset_to_revert_pr", "onset_to_first_slack"):
        for unit in ("seconds", "steps"):
            values = [r[f"{key}_{unit}"] for r in good]
            for q in (0.5, 0.9):
                summary[f"{key}_p{round(q * 100)}_{unit}"] = (
                    percentile(values, q) if values else None
                )
    own = [r["own_stages_seconds"] for r in good]
    summary["own_stages_p50_seconds"] = percentile(own, 0.5) if own else None
    summary["own_stages_p90_seconds"] = percentile(own, 0.9) if own else None
    for key in ("onset_to_detection_steps", "detection_to_revert_pr_seconds",
                "evaluations_to_detection"):  # fmt: skip
        values = [r[key] for r in good]
        summary[f"{key}_p50"] = percentile(values, 0.5) if values else None
        summary[f"{key}_p90"] = percentile(values, 0.9) if values else None
    calls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for r in good:
        for op, v in r["store_calls"].items():
            calls[op][0] += v["count"]
            calls[op][1] += v["seconds"]
            calls[op][2] += v["run_seconds"]
    n = max(len(good), 1)
    summary["store_calls_per_incident"] = {
        op: {"count": v[0] / n, "seconds": v[1] / n, "run_seconds": v[2] / n}
        for op, v in sorted(calls.items(), key=lambda kv: -kv[1][1])
    }
    queue = [r["store_queue_seconds"] for r in good]
    summary["store_queue_p50_seconds"] = percentile(queue, 0.5) if queue else None
    stages = ("waiting for evidence", *EXTERNAL, *OWN)
    totals = {s: sum(r["stages_seconds"].get(s, 0.0) for r in good) for s in stages}
    whole = sum(totals.values()) or 1.0
    summary["stage_share"] = {s: totals[s] / whole for s in stages}
    summary["targets"] = {
        "onset_to_revert_pr_p90_steps <= 8": (summary["onset_to_revert_pr_p90_steps"] or 99) <= 8,
        "own_stages_p90_seconds < 0.5": (summary["own_stages_p90_seconds"] or 99) < 0.5,
    }  # fmt: skip
    config = {
        "incidents": INCIDENTS,
        "rate_rps": RATE,
        "error_ratio": [BASE_RATIO, BAD_RATIO],
        "step_seconds": STEP,
        "standin_latency_seconds": list(STANDIN_LATENCY),
        "standin_seed": SEED,
        "detector_blip_seconds": BLIP,
        "scrape_interval_seconds": 1.0,
        "baseline_seconds": BASELINE,
    }
    return {"config": config, "summary": summary, "incidents": rows}


def _print(result: dict[str, Any]) -> None:
    s = result["summary"]
    head = f"{s['measured']}/{s['incidents']} incidents measured, {s['revert_prs']} revert PRs"
    out = [f"bench-loop: {head}",
           f"{'':28}{'p50 s':>8}{'p90 s':>8}{'p50 steps':>11}{'p90 steps':>11}"]  # fmt: skip
    for key, label in (("onset_to_revert_pr", "onset -> revert PR"),
                       ("onset_to_first_slack", "onset -> first Slack message")):  # fmt: skip
        out.append(f"{label:28}{s[f'{key}_p50_seconds']:8.2f}{s[f'{key}_p90_seconds']:8.2f}"
                   f"{s[f'{key}_p50_steps']:11.1f}{s[f'{key}_p90_steps']:11.1f}")  # fmt: skip
    out.append(
        f"{'own stages (s)':28}{s['own_stages_p50_seconds']:8.3f}{s['own_stages_p90_seconds']:8.3f}"
    )
    out.append(f"{'  of which store queue (s)':28}{s['store_queue_p50_seconds']:8.3f}")
    out.append(f"{'onset -> detection (steps)':28}{s['onset_to_detection_steps_p50']:8.1f}"
               f"{s['onset_to_detection_steps_p90']:8.1f}")  # fmt: skip
    out.append(f"{'evaluations to detection':28}{s['evaluations_to_detection_p50']:8.0f}"
               f"{s['evaluations_to_detection_p90']:8.0f}")  # fmt: skip
    out.append(f"{'detection -> revert PR (s)':28}{s['detection_to_revert_pr_seconds_p50']:8.2f}"
               f"{s['detection_to_revert_pr_seconds_p90']:8.2f}")  # fmt: skip
    out.append("share of onset -> first Slack message, by stage:")
    out.extend(f"  {k:24}{v:7.1%}" for k, v in s["stage_share"].items())
    out.extend(f"target {k}: {'met' if v else 'MISSED'}" for k, v in s["targets"].items())
    print("\n".join(out))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-loop-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
