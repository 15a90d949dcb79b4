"""`make bench-scale`: what N deploys watched at once cost `rearguard serve`, and whether their
Watches keep time.

One sample app serves `max(N)` services (`bench-s0000`, ...; 20 requests/s each, 0.5% errors, 2%
slower than 0.5 s) on one /metrics, and one real Prometheus scrapes it every 5 s. Each service
has the example config's two ratio SLIs (`http_errors`, `slow_requests`: `sum(increase(...
[$step]))`, the label swapped) at a 15 s step, a 10-minute watch and a baseline of
`BENCH_SCALE_BASELINE` seconds (600), no seasonal baselines. Once Prometheus holds that much
history, for each N of `BENCH_SCALE_NS` (100, 300, 1000): a fresh `rearguard serve` (its own
process, a fresh store, the production tick and Prometheus timeout, GitHub the `UnknownCommits`
stand-in, policy `observe`) takes N clean deploys at once (`POST /v1/deploys`, all finished at
the same moment, sent together), runs for `BENCH_SCALE_MEASURE` seconds (300: 20 steps of the
watch) and is stopped.

Measured from outside the server, over the span from the first deploy posted to the stop:
- CPU cores: the server process's user+system time (/proc/PID/stat, sampled every second) over
  wall time; start-up before the deploys is left out. `cpu_cores_steady` leaves out the first
  three steps too. Prometheus' and this process's (the sample app's) are reported beside it, the
  machine being shared.
- RSS: the highest VmRSS sampled, and VmHWM at the end.
- Queries: Prometheus' own `prometheus_http_requests_total` for `/api/v1/query_range` and
  `/api/v1/query` before and after (queries/s, and per evaluation); per Watch and evaluation from
  Prometheus' query log (each query names its service), where steady state leaves out each
  Watch's first two evaluations: `queries_per_evaluation` is that, `queries_per_sli_per_evaluation`
  it over the two SLIs.
- From the store, read after the stop: evaluations (`observations.observed_at`, when each began),
  lag (begin minus when it was due, by Rearguard's own grid rule: `bench.scale.measure`), and
  the share of the Watches' grid points due in the span that had an evaluation begin within the
  step after them. If the server exposes `rearguard_evaluation_lag_seconds`, its quantiles over
  the span are reported beside (`lag_p99_s_rearguard`).

Prints a table and writes bench/results/scale.json; progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import signal
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import duckdb
from prometheus_client.parser import text_string_to_metric_families

from bench.ingest.server import UnknownCommits, write_bench_config
from bench.loop.run import percentile
from bench.scale.measure import (
    WatchRun,
    cores,
    cpu_seconds,
    histogram_quantile,
    lags,
    logged_queries,
    queries_per_evaluation,
    status_mb,
    steps_evaluated,
)
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET
from tests.prometheus_server import PrometheusServer
from tests.serve_rig_ingest import BEARER, EXAMPLE_CONFIG, Server, free_port, server_env, wait_up

NS = tuple(int(n) for n in os.environ.get("BENCH_SCALE_NS", "100,300,1000").split(",") if n)
BASELINE = float(os.environ.get("BENCH_SCALE_BASELINE", "600"))
MEASURE = float(os.environ.get("BENCH_SCALE_MEASURE", "300"))
STEP, WATCH, SCRAPE = 15.0, 600.0, 5
RATE, ERROR_RATIO, SLOW_RATIO = 20.0, 0.005, 0.02
SLIS = ("http_errors", "slow_requests")
TICK, PROMETHEUS_TIMEOUT = "5s", "10s"  # the production defaults
TARGET_N = 1000
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "cpu_cores < 1": ("cpu_cores", lambda v: v < 1),
    "lag_p99_s < 3": ("lag_p99_s", lambda v: v < 3),
    "steps_evaluated_share == 1": ("steps_evaluated_share", lambda v: v == 1),
    "queries_per_sli_per_evaluation <= 2 (steady)": (
        "queries_per_sli_per_evaluation", lambda v: v <= 2),
    "rss_mb < 500": ("rss_mb", lambda v: v < 500),
}  # fmt: skip
QUERY_PATHS = ("/api/v1/query_range", "/api/v1/query")
READ_TIMEOUT = aiohttp.ClientTimeout(total=30)
RESULTS = Path(os.environ.get("BENCH_SCALE_RESULTS", "")
               or Path(__file__).resolve().parent.parent / "results" / "scale.json")  # fmt: skip
TICKS = os.sysconf("SC_CLK_TCK")
STARTED = time.monotonic()


def say(message: str) -> None:
    """One progress line on stderr, with the time since the bench started."""
    print(f"[{time.monotonic() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


def service_names(n: int) -> list[str]:
    return [f"bench-s{i:04d}" for i in range(n)]


def scale_service(name: str) -> dict[str, Any]:
    """A service's config table: the example config's two ratio SLIs over `name`'s series."""
    example = tomllib.loads(EXAMPLE_CONFIG.read_text())["services"]["checkout"]["slis"]
    swap = f'service="{name}"'
    slis = {sli: {key: value.replace('service="checkout"', swap) if isinstance(value, str)
                  else value for key, value in example[sli].items()} for sli in SLIS}  # fmt: skip
    return {"repo": "acme/shop", "step": f"{STEP:.0f}s", "watch": f"{WATCH:.0f}s",
            "baseline": f"{BASELINE:.0f}s", "slis": slis}  # fmt: skip


class Probe:
    """Samples CPU time and VmRSS of some processes every second, from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self.rss: dict[str, list[float]] = {name: [] for name in pids}

    def sample(self) -> None:
        now = time.time()
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.cpu[name].append((now, cpu_seconds(_proc(pid, "stat"), TICKS)))
                self.rss[name].append(status_mb(_proc(pid, "status"), "VmRSS"))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(1.0)


def _proc(pid: int, name: str) -> str:
    return Path(f"/proc/{pid}/{name}").read_text()


async def _metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a /metrics page: (name, labels, value). Each read is a connection of its
    own, with a timeout and two more tries: a keep-alive connection left idle for the whole span
    once hung the read at N=300 until aiohttp's 5-minute default timeout."""
    for attempt in range(3):
        try:
            async with (
                aiohttp.ClientSession(timeout=READ_TIMEOUT) as session,
                session.get(f"{url}/metrics") as response,
            ):
                text = await response.text()
            break
        except (aiohttp.ClientError, TimeoutError):
            if attempt == 2:
                raise
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]  # fmt: skip


async def query_counts(prometheus: str) -> dict[str, float]:
    """Prometheus' own count of the API requests it answered, by query path."""
    counts: defaultdict[str, float] = defaultdict(float)
    for name, labels, value in await _metrics(prometheus):
        if name == "prometheus_http_requests_total" and labels.get("handler") in QUERY_PATHS:
            counts[labels["handler"]] += value
    return dict(counts)


async def own_lag_buckets(server: str) -> dict[float, float]:
    """Rearguard's own `rearguard_evaluation_lag_seconds` histogram (summed over its labels),
    {} when the server has no such metric or does not answer."""
    buckets: defaultdict[float, float] = defaultdict(float)
    try:
        samples = await _metrics(server)
    except (aiohttp.ClientError, TimeoutError):
        return {}
    for name, labels, value in samples:
        if name == "rearguard_evaluation_lag_seconds_bucket":
            buckets[float(labels["le"])] += value
    return dict(buckets)


async def post_deploys(session: aiohttp.ClientSession, url: str, names: list[str],
                       finished_at: float) -> list[str]:  # fmt: skip
    """One clean deploy per service, all finished at `finished_at`, sent at once; their ids."""

    async def one(i: int, name: str) -> str:
        body = {"service": name, "environment": "production", "sha": f"{i + 1:040x}",
                "finished_at": finished_at}  # fmt: skip
        async with session.post(f"{url}/v1/deploys", json=body, headers=BEARER) as response:
            if response.status >= 300:
                raise RuntimeError(f"deploy of {name}: HTTP {response.status}")
            return str((await response.json())["id"])

    return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(names))))


def read_store(store: Path, deploys: list[str]) -> tuple[list[WatchRun], dict[str, int]]:
    """Each Watch's run as the store kept it, and the Watches per phase at the end."""
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "SELECT d.id, d.service, epoch(d.finished_at), "
            "(SELECT min(epoch(t.changed_at)) FROM transitions t WHERE t.deploy_id = d.id "
            " AND t.to_phase = 'observing'), "
            "(SELECT min(epoch(t.changed_at)) FROM transitions t WHERE t.deploy_id = d.id "
            " AND t.from_phase = 'observing' AND t.to_phase != 'observing'), "
            "(SELECT list(DISTINCT epoch(o.observed_at) ORDER BY epoch(o.observed_at)) "
            " FROM observations o WHERE o.deploy_id = d.id), "
            "(SELECT list(epoch(o.due_at) ORDER BY o.seq) FROM (SELECT DISTINCT seq, due_at "
            " FROM observations WHERE deploy_id = d.id AND due_at IS NOT NULL) o) "
            "FROM deploys d WHERE list_contains(?, d.id)", [deploys],
        ).fetchall()  # fmt: skip
        phases = dict(con.execute(
            "SELECT phase, count(*) FROM watches WHERE list_contains(?, deploy_id) GROUP BY phase",
            [deploys],
        ).fetchall())  # fmt: skip
    runs = [WatchRun(d, s, at, since if since is not None else at, tuple(evaluations or ()),
                     tuple(dues or ()), decided if decided is not None else math.inf)
            for d, s, at, since, decided, evaluations, dues in rows]  # fmt: skip
    return runs, phases


def analyse(runs: list[WatchRun], start: float, end: float, queries: list[Any],
            counts: tuple[dict[str, float], dict[str, float]]) -> dict[str, Any]:  # fmt: skip
    """Lag, steps evaluated and queries per evaluation over the span [start, end]."""
    lag: list[float] = []
    by_minute: dict[int, list[float]] = defaultdict(list)
    evaluated = due = 0
    by_service: dict[str, list[float]] = {}
    for q in queries:
        if q.service is not None and q.path in QUERY_PATHS:
            by_service.setdefault(q.service, []).append(q.at)
    per_eval: list[int] = []
    steady: list[int] = []
    for run in runs:
        for t, x in zip(run.evaluations, lags(run, STEP, WATCH), strict=True):
            if start <= t <= end:
                lag.append(x)
                by_minute[int((t - start) // 60)].append(x)
        done, fell = steps_evaluated(run, STEP, WATCH, start, end)
        evaluated, due = evaluated + done, due + fell
        counted = queries_per_evaluation(run.evaluations, by_service.get(run.service, []))
        per_eval += counted
        steady += counted[2:]
    evaluations = sum(1 for r in runs for t in r.evaluations if start <= t <= end)
    before, after = counts
    total = sum(after.get(p, 0) - before.get(p, 0) for p in QUERY_PATHS)
    steady_mean = sum(steady) / len(steady) if steady else None
    first = len(per_eval) - len(steady)
    first_two = (sum(per_eval) - sum(steady)) / first if first else None
    timings = [q.seconds for q in queries if q.seconds is not None and q.service is not None]
    return {
        "evaluations": evaluations,
        "lag_p50_s": percentile(lag, 0.5) if lag else None,
        "lag_p99_s": percentile(lag, 0.99) if lag else None,
        "lag_max_s": max(lag, default=None),
        # When in the span the lag was: a stall at start-up reads differently from a drift.
        "lag_p99_s_by_minute": [percentile(by_minute[m], 0.99) for m in sorted(by_minute)],
        "lag_max_s_by_minute": [max(by_minute[m]) for m in sorted(by_minute)],
        "steps_due": due,
        "steps_evaluated": evaluated,
        "steps_evaluated_share": evaluated / due if due else None,
        "queries": total,
        "queries_by_path": {p: after.get(p, 0) - before.get(p, 0) for p in QUERY_PATHS},
        "queries_per_s": total / (end - start),
        "queries_per_evaluation_all": total / evaluations if evaluations else None,
        "queries_per_evaluation": steady_mean,
        "queries_per_sli_per_evaluation": steady_mean / len(SLIS) if steady_mean else None,
        "queries_per_evaluation_first_two": first_two,
        "evaluations_with_logged_queries": len(per_eval),
        "prometheus_query_p99_s": percentile(timings, 0.99) if timings else None,
    }


async def measure(n: int, workdir: Path, prometheus: PrometheusServer,
                  urls: tuple[str, str, str], query_log: Path) -> dict[str, Any]:  # fmt: skip
    """One fresh server, N deploys at once, `MEASURE` seconds; the figures for N."""
    workdir.mkdir()  # noqa: ASYNC240 - one directory before the server starts
    port, store = free_port(), workdir / "store.duckdb"
    names = service_names(n)
    config = write_bench_config(
        workdir / "rearguard.toml", port, store, {s: scale_service(s) for s in names},
        urls=urls, tick=TICK, prometheus={"timeout": PROMETHEUS_TIMEOUT},
    )  # fmt: skip
    env = server_env() | {"GITHUB_TOKEN": "ghp_bench_stand_in", "REARGUARD_API_TOKEN": API_TOKEN,
                          "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}  # fmt: skip
    server = Server(config, env, port, workdir / "server.log")
    server.start()
    sampler: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server, within=120)
            assert server.process is not None
            assert prometheus.pid is not None
            pid = server.process.pid
            probe = Probe({"server": pid, "prometheus": prometheus.pid, "bench": os.getpid()})
            before = await query_counts(prometheus.url), await own_lag_buckets(server.url)
            probe.sample()
            start = time.time()
            sampler = asyncio.create_task(probe.run())
            say(f"N={n}: server up (pid {pid}); posting {n} deploys at once")
            deploys = await post_deploys(session, server.url, names, start)
            posted = time.time() - start
            say(f"N={n}: {n} deploys answered in {posted:.1f} s; measuring {MEASURE:.0f} s")
            while (left := start + MEASURE - time.time()) > 0:
                await asyncio.sleep(min(left, 60.0))
                rss = probe.rss["server"][-1] if probe.rss["server"] else 0.0
                used = cores(probe.cpu["server"], start, time.time()) or 0.0
                say(f"N={n}: {time.time() - start:.0f}/{MEASURE:.0f} s, server "
                    f"{used:.2f} cores, RSS {rss:.0f} MB")  # fmt: skip
            end = time.time()
            probe.sample()
            after_lag = await own_lag_buckets(server.url)
            hwm = status_mb(_proc(pid, "status"), "VmHWM")
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        server.stop()
    # Read once the server has stopped: Prometheus, busy with its queries, once left its own
    # /metrics unanswered for 90 s at N=1000 (so its count runs to the stop, a moment past `end`).
    after = await query_counts(prometheus.url), after_lag
    say(f"N={n}: server stopped; reading the store and the query log")
    runs, phases = read_store(store, deploys)
    with query_log.open(errors="replace") as lines:
        queries = logged_queries(lines, start, end + 2 * STEP)
    result = analyse(runs, start, end, queries, (before[0], after[0]))
    result.update(_cpu(probe, start, end))
    result.update({
        "n": n, "deploys_answered_in_s": posted, "span_s": end - start,
        "rss_mb": max(probe.rss["server"], default=None), "rss_hwm_mb": hwm,
        "phases_at_end": phases, **_own_lag(before[1], after[1]),
    })  # fmt: skip
    return result


def _cpu(probe: Probe, start: float, end: float) -> dict[str, float | None]:
    return {
        "cpu_cores": cores(probe.cpu["server"], start, end),
        "cpu_cores_steady": cores(probe.cpu["server"], start + 3 * STEP, end),
        "prometheus_cpu_cores": cores(probe.cpu["prometheus"], start, end),
        "bench_cpu_cores": cores(probe.cpu["bench"], start, end),
    }


def _own_lag(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    if not after:
        return {}
    buckets = [(le, count - before.get(le, 0)) for le, count in after.items()]
    return {"lag_p50_s_rearguard": histogram_quantile(buckets, 0.5),
            "lag_p99_s_rearguard": histogram_quantile(buckets, 0.99)}  # fmt: skip


async def wait_for_history(prometheus: PrometheusServer) -> None:
    """Until Prometheus holds the baseline window, and the step and scrape before it (the
    first baseline step's range, `$step`, reaches that far back)."""
    await prometheus.wait_for_data("http_requests_total", within=60)
    ready = time.time() + BASELINE + STEP + SCRAPE
    while (left := ready - time.time()) > 0:
        say(f"baseline history: {left:.0f} s to go")
        await asyncio.sleep(min(left, 60.0))


async def run(workdir: Path) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    load_at_start = os.getloadavg()
    sample = SampleApp(seed=14)
    sample.start_in_thread()
    for name in service_names(max(NS)):
        sample.configure(name, rate=RATE, error_ratio=ERROR_RATIO, slow_ratio=SLOW_RATIO)
    (workdir / "prometheus").mkdir()
    query_log = workdir / "prometheus" / "queries.log"
    prometheus = PrometheusServer([urlsplit(sample.url).netloc], workdir=workdir / "prometheus",
                                  scrape_interval=SCRAPE, query_log=query_log)  # fmt: skip
    github = UnknownCommits()
    by_n: dict[str, Any] = {}
    try:
        say(f"sample app: {max(NS)} services at {RATE:.0f} requests/s; starting Prometheus")
        prometheus.start()
        await github.start()
        await wait_for_history(prometheus)
        urls = (prometheus.url, github.url, "http://127.0.0.1:9/api/")
        for n in NS:
            by_n[str(n)] = await measure(n, workdir / f"n{n}", prometheus, urls, query_log)
            write(document(by_n, load_at_start))  # each N kept as soon as it is measured
    finally:
        await github.close()
        prometheus.stop()
        sample.stop()
    return document(by_n, load_at_start)


def write(result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


def document(by_n: dict[str, Any], load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """The results file: the settings and machine, the summary per N with the targets, every
    figure of each N measured so far."""
    return {
        "config": {
            "ns": NS, "step_seconds": STEP, "watch_seconds": WATCH, "baseline_seconds": BASELINE,
            "measure_seconds": MEASURE, "scrape_interval_seconds": SCRAPE,
            "requests_per_second_per_service": RATE, "error_ratio": ERROR_RATIO,
            "slow_ratio": SLOW_RATIO, "slis": SLIS, "tick": TICK,
            "prometheus_timeout": PROMETHEUS_TIMEOUT,
            "service": scale_service("bench-s0000"),
            "metrics_source": "real Prometheus (Debian 2.42), 5 s scrape, query log on",
            "lag": "evaluation start (observations.observed_at) minus when it was due "
                   "(observations.due_at)",
            "cpu_count": os.cpu_count(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
        },
        "summary": {**{n: _summary(r) for n, r in by_n.items()}, "targets": targets(by_n)},
        "runs": by_n,
    }  # fmt: skip


SUMMARY_KEYS = (
    "cpu_cores", "lag_p99_s", "steps_evaluated_share", "queries_per_evaluation", "rss_mb",
    "cpu_cores_steady", "lag_p50_s", "queries_per_s", "queries_per_sli_per_evaluation",
    "evaluations", "lag_p99_s_rearguard",
)  # fmt: skip


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in SUMMARY_KEYS if k in result}


def targets(by_n: dict[str, Any]) -> dict[str, str]:
    """Each target at N = 1,000: met, missed, or not measured (that N was not run)."""
    result = by_n.get(str(TARGET_N))
    out = {}
    for name, (key, holds) in TARGETS.items():
        value = None if result is None else result.get(key)
        out[f"N={TARGET_N}: {name}"] = (
            "not measured" if value is None else "met" if holds(value) else "missed"
        )
    return out


def _f(value: float | None, spec: str, width: int) -> str:
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def render(result: dict[str, Any]) -> str:
    config = result["config"]
    loads = ", ".join(f"{x:.1f}" for x in config["load_average_at_start"])
    out = [f"bench-scale ({config['cpu_count']} cores, load average at start {loads}; step "
           f"{config['step_seconds']:.0f} s, watch {config['watch_seconds']:.0f} s, baseline "
           f"{config['baseline_seconds']:.0f} s, measured {config['measure_seconds']:.0f} s)",
           f"{'N':>6}{'cores':>7}{'steady':>7}{'lag p50':>8}{'p99 s':>7}{'steps':>8}"
           f"{'q/s':>7}{'q/SLI/eval':>11}{'RSS MB':>8}{'evals':>7}"]  # fmt: skip
    for n, r in result["runs"].items():
        share = r["steps_evaluated_share"]
        out.append(f"{n:>6}{_f(r['cpu_cores'], '.2f', 7)}{_f(r['cpu_cores_steady'], '.2f', 7)}"
                   f"{_f(r['lag_p50_s'], '.2f', 8)}{_f(r['lag_p99_s'], '.2f', 7)}"
                   f"{_f(None if share is None else 100 * share, '.0f', 7)}%"
                   f"{_f(r['queries_per_s'], '.0f', 7)}"
                   f"{_f(r['queries_per_sli_per_evaluation'], '.2f', 11)}"
                   f"{_f(r['rss_mb'], '.0f', 8)}{r['evaluations']:>7}")  # fmt: skip
    out.extend(f"target {k}: {v}" for k, v in result["summary"]["targets"].items())
    return "\n".join(out)


def main() -> int:
    if BASELINE < 2 * STEP or MEASURE < 2 * STEP:  # the config's rule, and a step to measure
        print(f"BENCH_SCALE_BASELINE and BENCH_SCALE_MEASURE: {2 * STEP:.0f} s or more")
        return 2
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-scale-") as tmp:
        # BENCH_SCALE_KEEP=DIR keeps each N's store and server log there, to look into a miss.
        kept = os.environ.get("BENCH_SCALE_KEEP")
        result = asyncio.run(run(Path(kept) if kept else Path(tmp)))
    write(result)
    print(render(result))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
