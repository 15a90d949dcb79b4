"""`make bench-ingest`: how fast Rearguard takes deliveries, and whether its Watches keep time.

`rearguard serve` runs as its own process (`bench.ingest.server`) with 50 Watches at a 1 s step
against a real Prometheus scraping the sample app (as `make bench-loop` has them). A load
generator, another process (`bench.ingest.load`), offers signed GitHub `pull_request` merges at
rising rates, `STAGE_SECONDS` each, up the ladder until a stage no longer holds (p99 at or over
1 s, or any delivery not answered 202); then merges (at the highest rate that held, or at 90% of
the best rate every delivery was answered at, if that is higher) until 100,000 deliveries have
been offered in all (`FILL_MAX_SECONDS` at most), when the server's RSS is read;
then CD-hook deploys at rising rates the same way (each deploy is a Watch of its own, judged
once). Everything is on loopback, bounded in count and time.

A Watch evaluation is on time when it started within one step of being due: for every Watch and
every point of its 1 s grid inside a stage, an evaluation began in [due, due + 1 s). The share is
read from the store's observations after the server stops.

The same run measures the unbatched baseline: the code at `BENCH_BASELINE_REF` (before group
commit; one transaction or more per delivery), extracted with `git archive`, under the same
ladder. The machine is shared and noisy: compare the two by their ratios and medians, not by
absolute figures. Writes bench/results/ingest.json and prints a table.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from bench.ingest.server import UnknownCommits, Variant, baseline_tree, watched_names
from bench.loop.run import percentile, service
from tests.fakes.sample_app import SampleApp
from tests.prometheus_server import PrometheusServer

SCALE = float(os.environ.get("BENCH_SCALE", "1"))  # 0.1 for a quick check of the bench itself
STAGE_SECONDS = max(2.0, 8.0 * SCALE)
CONTROL_SECONDS = max(3.0, 10.0 * SCALE)


def _rates(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(r) for r in os.environ.get(name, default).split(",") if r)


PR_RATES = _rates("BENCH_PR_RATES", "100,250,500,750,1000,1500,2000,3000")
DEPLOY_RATES = _rates("BENCH_DEPLOY_RATES", "25,50,100,250,500,1000")
TARGET = round(100_000 * SCALE)
FILL_MAX_SECONDS = 300.0 * SCALE
BASELINE_REF = os.environ.get("BENCH_BASELINE_REF", "35d0205")  # "" to measure no baseline
STEP = 1.0
P99_BAR = 1.0
RESULTS = Path(__file__).resolve().parent.parent / "results" / "ingest.json"


async def _offer(url: str, kind: str, rate: float, seconds: float, first: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest.load", url, kind, str(rate), str(seconds), str(first),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    latencies = result.pop("latencies")
    for q in (0.5, 0.9, 0.99):
        result[f"p{round(q * 100)}_seconds"] = percentile(latencies, q) if latencies else None
    result["max_seconds"] = max(latencies, default=None)
    p99 = result["p99_seconds"]
    result["held"] = result["answered"] == result["offered"] and p99 is not None and p99 < P99_BAR
    return result


async def _ladder(variant: Variant, kind: str, rates: tuple[int, ...], first: int,
                  stages: list[dict[str, Any]]) -> int:  # fmt: skip
    """Offer `kind` at each rate until a stage does not hold; the highest rate that held."""
    best = 0
    for rate in rates:
        stage = await _offer(variant.url, kind, rate, STAGE_SECONDS, first + sum(
            s["offered"] for s in stages))  # fmt: skip
        stages.append(stage)
        print(f"  {variant.name} {kind} {rate}/s: p99 {stage['p99_seconds']}, "
              f"{stage['answered']}/{stage['offered']} answered", file=sys.stderr)  # fmt: skip
        if not stage["held"]:
            break
        best = rate
    return best


async def run_variant(variant: Variant) -> dict[str, Any]:
    """The whole ladder on one server; its stages, RSS and Watch timeliness."""
    await variant.start()
    stages: list[dict[str, Any]] = []
    try:
        started = time.time()
        await asyncio.sleep(CONTROL_SECONDS)
        control = {"kind": "none", "rate": 0, "offered": 0, "answered": 0,
                   "started_at": started, "offered_until": time.time()}  # fmt: skip
        first = 1_000_000
        best_pr = await _ladder(variant, "pr", PR_RATES, first, stages)
        offered = sum(s["offered"] for s in stages)
        if offered < TARGET:
            # As fast as every delivery was still answered (if not within 1 s): the fill is
            # there to reach 100,000 deliveries for the RSS reading, in bounded time.
            kept = [s["answered_rate"] for s in stages if s["answered"] == s["offered"]]
            rate = max(best_pr, round(0.9 * max(kept, default=0))) or PR_RATES[0]
            seconds = min((TARGET - offered) / rate, FILL_MAX_SECONDS)
            fill = await _offer(variant.url, "pr", rate, seconds, first + offered)
            stages.append(fill | {"fill": True})
        offered = sum(s["offered"] for s in stages)
        rss = variant.rss_mb()
        best_deploy = await _ladder(variant, "deploy", DEPLOY_RATES, first, stages)
    finally:
        variant.stop()
    timely = on_time(variant.store, variant.watches, [control, *stages])
    for stage, share in zip([control, *stages], timely, strict=True):
        stage.update(share)
    prs = [s for s in stages if s["kind"] == "pr"]
    return {
        "webhooks_per_second_p99_under_1s": best_pr,
        "deploys_per_second_p99_under_1s": best_deploy,
        "watch_evaluations_on_time_share": _share(prs),
        "watch_evaluations_on_time_share_during_deploys": _share(
            [s for s in stages if s["kind"] == "deploy"]
        ),
        "watch_evaluations_on_time_share_without_load": _share([control]),
        "rss_mb_after_100k_deliveries": rss if offered >= 100_000 else None,
        "rss_mb": rss,
        "deliveries_offered_at_rss": offered,
        "stages": [control, *stages],
    }


def _share(stages: list[dict[str, Any]]) -> float | None:
    due = sum(s["evaluations_due"] for s in stages)
    return sum(s["evaluations_on_time"] for s in stages) / due if due else None


def on_time(store: Path, watches: list[str], stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: the Watch grid points due inside it and how many had an evaluation begin
    within one step; a Watch counts only while it was observing."""
    with duckdb.connect(str(store), read_only=True) as con:
        ran = con.execute(
            "SELECT deploy_id, list(DISTINCT epoch(observed_at) ORDER BY epoch(observed_at)) "
            "FROM observations WHERE list_contains(?, deploy_id) GROUP BY deploy_id",
            [watches],
        ).fetchall()
        since = dict(con.execute(
            "SELECT id, epoch(finished_at) FROM deploys WHERE list_contains(?, id)", [watches]
        ).fetchall())  # fmt: skip
        left = dict(con.execute(
            "SELECT deploy_id, min(epoch(changed_at)) FROM transitions "
            "WHERE list_contains(?, deploy_id) AND to_phase NOT IN ('deployed', 'observing') "
            "GROUP BY deploy_id", [watches],
        ).fetchall())  # fmt: skip
    evaluations: dict[str, list[float]] = dict(ran)
    out = []
    for stage in stages:
        start, end = stage["started_at"], stage["offered_until"]
        due = timely = 0
        worst = 0.0
        for deploy in watches:
            times = evaluations.get(deploy, [])
            until = min(end, left.get(deploy, end))
            k = max(1, int((start - since[deploy]) // STEP) + 1)
            while (point := since[deploy] + k * STEP) + STEP <= until:
                due += 1
                began = [t for t in times if point <= t < point + STEP]
                timely += bool(began)
                later = [t - point for t in times if t >= point]
                worst = max(worst, min(later, default=until - point))
                k += 1
        out.append({"evaluations_due": due, "evaluations_on_time": timely,
                    "evaluation_lateness_max_seconds": worst})  # fmt: skip
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def compare(batched: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """Batched over baseline: the best rates, and the median latency at each rate both ran."""
    if baseline is None:
        return {}
    out: dict[str, Any] = {}
    for key in ("webhooks_per_second_p99_under_1s", "deploys_per_second_p99_under_1s"):
        out[key] = _ratio(batched[key], baseline[key])
    for kind in ("pr", "deploy"):
        mine = {s["rate"]: s for s in batched["stages"] if s["kind"] == kind and "fill" not in s}
        theirs = {s["rate"]: s for s in baseline["stages"] if s["kind"] == kind and "fill" not in s}
        out[f"{kind}_p50_latency_baseline_over_batched"] = {
            rate: _ratio(theirs[rate]["p50_seconds"], mine[rate]["p50_seconds"])
            for rate in sorted(set(mine) & set(theirs))
        }
    return out


LOAD_AT_START = os.getloadavg()


async def run(workdir: Path) -> dict[str, Any]:
    sample = SampleApp(seed=9)
    sample.start_in_thread()
    for name in [*watched_names(), "bench-cd"]:
        sample.configure(name, rate=40.0, error_ratio=0.005)
    (workdir / "prometheus").mkdir()
    prometheus = PrometheusServer([urlsplit(sample.url).netloc], workdir=workdir / "prometheus")
    github = UnknownCommits()
    try:
        prometheus.start()
        await github.start()
        await asyncio.sleep(22)  # a 20 s baseline of history, scraped every second
        urls = (prometheus.url, github.url, "http://127.0.0.1:9/api/")
        tokens = {"GITHUB_TOKEN": "ghp_bench_stand_in"}
        batched = await run_variant(
            Variant("batched", workdir / "batched", urls=urls, tokens=tokens, code=None)
        )
        tree = baseline_tree(BASELINE_REF, workdir / "baseline-code") if BASELINE_REF else None
        baseline = None
        if tree is not None:
            variant = Variant("baseline", workdir / "baseline", urls=urls, tokens=tokens, code=tree)
            baseline = await run_variant(variant)
    finally:
        await github.close()
        prometheus.stop()
        sample.stop()
    summary = {k: v for k, v in batched.items() if k != "stages"}
    summary["targets"] = {
        "webhooks_per_second_p99_under_1s >= 1000": batched["webhooks_per_second_p99_under_1s"]
        >= 1000,
        "every Watch evaluation within one step (share == 1)": (
            batched["watch_evaluations_on_time_share"] == 1.0
        ),
        "rss_mb_after_100k_deliveries < 400": (batched["rss_mb_after_100k_deliveries"] or 1e9)
        < 400,
    }
    return {
        "config": {
            "scale": SCALE,
            "stage_seconds": STAGE_SECONDS,
            "pr_rates": PR_RATES,
            "deploy_rates": DEPLOY_RATES,
            "target_deliveries": TARGET,
            "watches": 50,
            "step_seconds": STEP,
            "metrics_source": "real Prometheus (Debian 2.42), 1 s scrape",
            "baseline_ref": BASELINE_REF,
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": os.getloadavg(),
            "watched_service": service("bench-w00", watch="1800s", baseline="20s"),
        },
        "summary": summary,
        "batched": batched,
        "baseline": baseline,
        "batched_over_baseline": compare(batched, baseline),
    }


def _print(result: dict[str, Any]) -> None:
    runs = [(n, result[n]) for n in ("batched", "baseline") if result[n] is not None]
    loads = [f"{x:.1f}" for x in result["config"]["load_average_at_start"]]
    out = [f"bench-ingest (load average at start {', '.join(loads)})",
           f"{'':8}{'kind':7}{'rate/s':>7}{'p50 s':>8}{'p99 s':>8}{'max s':>8}"
           f"{'answered/s':>11}{'errors':>7}{'on time':>9}"]  # fmt: skip
    for name, data in runs:
        for s in data["stages"]:
            share = s["evaluations_on_time"] / s["evaluations_due"] if s["evaluations_due"] else 0
            kind = s["kind"] + ("+" if s.get("fill") else "")
            out.append(f"{name:8}{kind:7}{s['rate']:>7}{_f(s.get('p50_seconds'))}"
                       f"{_f(s.get('p99_seconds'))}{_f(s.get('max_seconds'))}"
                       f"{s.get('answered_rate', 0):>11.0f}"
                       f"{s['offered'] - s['answered']:>7}{share:>9.1%}")  # fmt: skip
        out.append(
            f"{name:8}best webhooks/s {data['webhooks_per_second_p99_under_1s']}, "
            f"deploys/s {data['deploys_per_second_p99_under_1s']}, RSS "
            f"{data['rss_mb']:.0f} MB after {data['deliveries_offered_at_rss']} deliveries"
        )
    out.extend(f"target {k}: {'met' if v else 'MISSED'}"
               for k, v in result["summary"]["targets"].items())  # fmt: skip
    print("\n".join(out))


def _f(value: float | None) -> str:
    return f"{value:8.3f}" if value is not None else f"{'-':>8}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-ingest-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
