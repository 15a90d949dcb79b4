"""The scraped half of `make bench-detection`: deploys served by a real Prometheus at 15, 30 and
60 s scrape intervals, judged through Rearguard's own source and evaluation code.

Per interval, every scenario (`scraped_scenarios`) is one `service` label in one Prometheus,
backfilled with `promtool tsdb create-blocks-from openmetrics` (no real-time waiting). The
example config (deploy/rearguard.example.toml) is loaded as a user would load it, and its
`http_errors` SLI is used with `service="checkout"` swapped for the scenario's label: same
queries, step, windows and seasonal baselines. Each watch is fetched once at its end with
`fetch_sli` through `PrometheusSource` (as `rearguard backtest` does) and judged with `judge` and
`decide` once per step, stopping at the first final verdict; steps during a Prometheus outage are
evaluations that did not happen. Judging runs in a process pool.

References, on the counters Prometheus kept (what any detector could see at each step):
- two-sample: a sequential two-proportion z-test of the watch so far against the baseline window
  before the deploy (both estimated), one-sided, at every step, Bonferroni over the watch's steps
  at a total alpha of 0.5% (so its own false-alarm rate is at most the target);
- oracle: the same sequential test against the true pre-deploy ratio (a one-sample z-test).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.detection.scraped_scenarios import (
    BASE_RATIO,
    BASELINE,
    CLEAN_KINDS,
    KINDS,
    REGRESSED_KINDS,
    TRAFFIC_BUCKETS,
    WARNING_KINDS,
    WATCH,
    Scenario,
    Scraped,
    openmetrics,
    scenario_set,
    scrape,
)
from loop.config import ServiceSettings, load_settings
from observer import observe
from observer.detect import decide
from observer.observe import SliData, Windows, fetch_sli, judge
from observer.prometheus import PrometheusSource
from observer.slis import Sli
from observer.verdict import Status
from tests.prometheus_server import PrometheusNotFound, PrometheusServer

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "rearguard.example.toml"
INTERVALS = (15, 30, 60)
ALPHA = 0.005
WARN_WITHIN = 5
"""A warning is on time within this many of the SLI's evaluation steps after the data went: the
step the Watch judges on, widened to the scrape interval where the config's is shorter (at a 60 s
scrape nothing can tell a vanished series from the next scrape sooner than a minute after the
last one, so five 15 s steps would ask for a guess). The share within five configured steps is
kept beside it (`warned_within_5_configured_steps_share`)."""
Decision = tuple[str, int | None]


def example_service() -> tuple[ServiceSettings, Sli]:
    """The example config's `checkout` service and its `http_errors` SLI, loaded as `serve` does."""
    service = load_settings(EXAMPLE, {}).services["checkout"]
    sli = next(s for s in service.slis if s.name == "http_errors")
    return service, sli


def sli_for(sli: Sli, name: str) -> Sli:
    """The example SLI with the scenario's `service` label in place of `checkout`."""
    swap = f'service="{name}"'
    return replace(
        sli,
        bad=sli.bad.replace('service="checkout"', swap),
        total=sli.total.replace('service="checkout"', swap),
    )


def deploy_time(now: float) -> int:
    """One shared deploy time, late enough that the watch has ended, on a whole minute."""
    return int(now) // 3600 * 3600 - 2 * 3600


@contextmanager
def served(pairs: list[tuple[Scenario, Scraped]], workdir: Path) -> Iterator[PrometheusServer]:
    """A Prometheus whose TSDB holds `pairs`' scrapes, backfilled with promtool."""
    source = workdir / "scraped.om"
    with source.open("w") as out:
        out.writelines(openmetrics(pairs))
    server = PrometheusServer([], workdir=workdir)
    promtool = shutil.which("promtool")
    if promtool is None:
        raise PrometheusNotFound("no `promtool` on PATH: it comes with the Debian package")
    command = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source)]
    # Our own binary and paths, no shell: nothing untrusted reaches the command line.
    subprocess.run([*command, str(server.data_dir)], check=True, capture_output=True)  # noqa: S603
    source.unlink()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def windows_for(service: ServiceSettings, deployed_at: int) -> Windows:
    return Windows(
        float(deployed_at), service.baseline, service.watch, service.step, service.seasonal
    )


async def fetch_all(
    url: str, slis: Sequence[Sli], windows: Windows, *, concurrency: int = 8
) -> list[SliData | str]:
    """Each SLI's whole watch and baselines, fetched once at the watch's end, a few at a time;
    a source error is kept as its message. Where the observer plans each SLI's step from its
    data's scrape interval (`observe.step_plan`, det-interval), the plan is made as the Watch
    has it, from the data up to the deploy, and the fetch made on it."""
    gate = asyncio.Semaphore(concurrency)
    end = windows.deployed_at + windows.watch
    plan_step = getattr(observe, "step_plan", None)

    async with PrometheusSource(url, timeout=30.0) as source:

        async def one(sli: Sli) -> SliData | str:
            async with gate:
                try:
                    if plan_step is None:
                        return await fetch_sli(source, sli, windows, end)
                    plan = await plan_step(source, sli, windows.step, windows.deployed_at)
                    return await fetch_sli(source, sli, windows, end, plan)  # type: ignore[call-arg, unused-ignore]
                except Exception as exc:  # noqa: BLE001 - a failed fetch is a result to report
                    return f"{type(exc).__name__}: {exc}"

        return list(await asyncio.gather(*(one(s) for s in slis)))


def walk(job: tuple[Sli, SliData | str, Windows, frozenset[int]]) -> tuple[Decision, int | None]:
    """The Watch's evaluations one step at a time: the final verdict and its step, and the first
    step whose result carries an early warning (`SliResult.warning`; None if never)."""
    sli, data, windows, down = job
    if isinstance(data, str):
        return ("error", None), None
    first_warning: int | None = None
    n = windows.horizon
    for k in range(n):
        if k in down:
            if k == n - 1:
                return ("inconclusive", None), first_warning
            continue
        result = judge(sli, data, windows, windows.deployed_at + (k + 1) * windows.step)
        verdict = decide([sli], [result], k == n - 1)
        if first_warning is None and result.warning:
            first_warning = k
        if verdict.status is not Status.OBSERVING:
            status = str(verdict.status)
            return (status, k if verdict.status is Status.REGRESSED else None), first_warning
    return ("inconclusive", None), first_warning


def _counts_at(samples: list[tuple[int, float, float]], t: float) -> tuple[float, float]:
    last = (0.0, 0.0)
    for ts, req, err in samples:
        if ts > t:
            break
        last = (req, err)
    return last


def references(
    kept: Scraped, deployed_at: int, step: float, horizon: int
) -> tuple[Decision, Decision]:
    """The two-sample and the oracle sequential z-tests on the kept counters (module docstring)."""
    z = statistics.NormalDist().inv_cdf(1 - ALPHA / horizon)
    now = kept.now
    first = next((s for s in now if s[0] >= deployed_at - BASELINE), None)
    at_deploy = _counts_at(now, deployed_at)
    if first is None:
        return ("inconclusive", None), ("inconclusive", None)
    n_b, x_b = at_deploy[0] - first[1], at_deploy[1] - first[2]
    two: Decision = ("healthy", None)
    oracle: Decision = ("healthy", None)
    for k in range(horizon):
        req, err = _counts_at(now, deployed_at + (k + 1) * step)
        n_w, x_w = req - at_deploy[0], err - at_deploy[1]
        if n_w <= 0 or n_b <= 0:
            continue
        pooled = (x_w + x_b) / (n_w + n_b)
        if two[1] is None and 0 < pooled < 1:
            stat = (x_w / n_w - x_b / n_b) / math.sqrt(pooled * (1 - pooled) * (1 / n_w + 1 / n_b))
            if stat > z:
                two = ("regressed", k)
        known = (x_w - n_w * BASE_RATIO) / math.sqrt(n_w * BASE_RATIO * (1 - BASE_RATIO))
        if oracle[1] is None and known > z:
            oracle = ("regressed", k)
    return two, oracle


def run_interval(
    interval: int, seed: int, per_kind: dict[str, int], pool: ProcessPoolExecutor
) -> list[dict[str, Any]]:
    """Every scenario at one scrape interval: backfill, serve, fetch, judge; one row each."""
    service, base_sli = example_service()
    deployed_at = deploy_time(time.time())
    scenarios = scenario_set(seed, interval, per_kind)
    pairs = [(s, scrape(s, deployed_at, interval, seed)) for s in scenarios]
    windows = windows_for(service, deployed_at)
    slis = [sli_for(base_sli, s.name) for s in scenarios]
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-scraped-{interval}s-") as tmp,
        served(pairs, Path(tmp)) as server,
    ):
        fetched = asyncio.run(fetch_all(server.url, slis, windows))
    jobs = [
        (sli, data, windows, _down_steps(s, windows))
        for s, sli, data in zip(scenarios, slis, fetched, strict=True)
    ]
    walked = list(pool.map(walk, jobs, chunksize=8))
    rows = []
    for (s, kept), data, ((status, step), warned) in zip(pairs, fetched, walked, strict=True):
        two, oracle = references(kept, deployed_at, windows.step, windows.horizon)
        plan = None if isinstance(data, str) else data.plan
        rows.append({
            "interval": f"{interval}s", "name": s.name, "kind": s.kind, "truth": s.truth,
            "rps": s.rps, "effect": s.effect, "onset_step": int(s.onset // windows.step),
            "onset_s": s.onset, "step_s": windows.step,
            "evaluation_step_s": windows.step if plan is None else plan.step,
            "rearguard": status, "rearguard_step": step, "warned_step": warned,
            "two_sample": two[0], "two_sample_step": two[1],
            "oracle": oracle[0], "oracle_step": oracle[1], **s.detail,
        })  # fmt: skip
    return rows


def _down_steps(s: Scenario, windows: Windows) -> frozenset[int]:
    """Evaluation steps that fall in a Prometheus outage (the `gap` kind): no query answered."""
    if s.kind != "gap":
        return frozenset()
    step = int(windows.step)
    return frozenset(
        k for k in range(windows.horizon) if s.missing[BASELINE + min((k + 1) * step, WATCH - 1)]
    )


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures over `rows`, against the two-sample reference and the oracle."""
    clean = [r for r in rows if r["kind"] in CLEAN_KINDS]
    regressed = [r for r in rows if r["kind"] in REGRESSED_KINDS]
    warned = [r for r in rows if r["kind"] in WARNING_KINDS]
    out: dict[str, Any] = {
        "deploys": len(rows),
        "verdicts": {
            v: sum(1 for r in rows if r["rearguard"] == v)
            for v in sorted({r["rearguard"] for r in rows})
        },
        "false_rollback_rate_all_clean_kinds": (
            sum(1 for r in clean if r["rearguard"] == "regressed") / len(clean) if clean else None
        ),
        "clean_deploys": len(clean),
        "false_rollbacks": sum(1 for r in clean if r["rearguard"] == "regressed"),
        "two_sample_false_rollback_rate_all_clean_kinds": (
            sum(1 for r in clean if r["two_sample"] == "regressed") / len(clean) if clean else None
        ),
    }
    for ref in ("two_sample", "oracle"):
        by_rps: dict[str, float | None] = {}
        for rps in TRAFFIC_BUCKETS:
            found = [r for r in regressed if r["rps"] == rps and r[ref] == "regressed"]
            hits = [r for r in found if r["rearguard"] == "regressed"]
            if found or any(r["rps"] == rps for r in regressed):
                by_rps[f"{rps:g}"] = len(hits) / len(found) if found else None
        ratios = [
            (r["rearguard_step"] + 1) / (r[f"{ref}_step"] + 1)
            for r in regressed
            if r["rearguard"] == "regressed" and r[ref] == "regressed"
        ]
        out[f"recall_of_{ref}_detections_by_rps"] = by_rps if regressed else {}
        out[f"median_delay_ratio_to_{ref}"] = statistics.median(ratios) if ratios else None
    for key, unit in (("warned_within_5_steps_share", "evaluation_step_s"),
                      ("warned_within_5_configured_steps_share", "step_s")):  # fmt: skip
        on_time = [r for r in warned if _warned_within(r, WARN_WITHIN * r[unit])]
        out[key] = len(on_time) / len(warned) if warned else None
    return out


def _warned_within(row: dict[str, Any], seconds: float) -> bool:
    """Whether the row's first warning came after its onset and at most `seconds` later."""
    if row["warned_step"] is None:
        return False
    warned_at = (row["warned_step"] + 1) * row["step_s"]
    return bool(row["onset_s"] < warned_at <= row["onset_s"] + seconds + 1e-9)


def run(seed: int, per_kind: dict[str, int], workers: int = 2) -> dict[str, Any]:
    """Every interval; the figures overall, per interval and per kind, and every row."""
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for interval in INTERVALS:
            rows += run_interval(interval, seed, per_kind, pool)
    return {
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "config": str(EXAMPLE.name),
        "sli": "http_errors",
        "references": (
            "two_sample: sequential two-proportion z-test of the watch so far against the "
            f"baseline window before the deploy, one-sided, every step, alpha {ALPHA} "
            "Bonferroni-split over the watch's steps; oracle: the same test against the true "
            "pre-deploy ratio; both on the counters Prometheus kept"
        ),
        "all": figures(rows),
        "by_scrape_interval": {
            f"{i}s": figures([r for r in rows if r["interval"] == f"{i}s"]) for i in INTERVALS
        },
        "by_kind": {k: figures([r for r in rows if r["kind"] == k]) for k in KINDS},
        "by_kind_and_interval": {
            f"{k}@{i}s": figures([r for r in rows if r["kind"] == k and r["interval"] == f"{i}s"])
            for k in KINDS
            for i in INTERVALS
        },
        "rows": rows,
    }
