"""`make bench-store`: reports, example queries and export over a year of history, and what
readers cost the writer.

The store holds a year of synthetic history for 50 services (`bench.store.history`: 50,000
deploys, 200,000 PRs, 2,000,000 observations, 2,000 incidents), built through the store's own
write path and cached (`bench.store.cache`; `BENCH_SCALE=0.1` for a tenth, shorter windows too).
The bench serves a copy with `rearguard serve` in its own process (`bench.store.server`, which
also keeps the span of every store call) on a real Prometheus scraping the sample app, as
`make bench-ingest` does. The writer keeps ingesting throughout: one Watch per history service at
a `STEP` step (a transition with its observations each step), signed GitHub merges of
`acme/svc-00` and CD-hook deploys (each a Watch judged once), offered at fixed rates by load
processes (`bench.ingest.load`).

Windows follow each other on the same server: writer alone, writer with readers, writer alone
again. In the reader window two clients ask, one the reports (`GET /v1/reports/{kind}`) and one
the example queries (`bench.store.queries`, `POST /v1/query`), each round robin, until every
endpoint has `READER_SAMPLES` answers or `READER_WINDOW` has passed, then only the endpoints not
asked yet, until `READER_WINDOW_HARD`; each request's latency is timed by its client (the first
ask of each included: it is what a reader waits for). The writer's transaction latency is the
duration of its store calls of `WRITER_OPS` (the journal's group commits and the Watches'
transitions), queue wait included, from the server's own spans, p99 over the windows of each
kind. Last, `rearguard export` writes the views as Parquet through the running server (rows in
the files over its wall time). A report, the query endpoint or the export that this tree does
not have is reported missing, and an endpoint the window ended before asking is reported not
measured; neither is given a figure.

Prints a table and writes bench/results/store.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import duckdb

from bench.ingest.server import CD_SERVICE, UnknownCommits
from bench.loop.run import percentile
from bench.store.cache import history_store
from bench.store.history import Shape
from bench.store.queries import EXAMPLES
from bench.store.server import history_services, load_spans, write_config
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET
from tests.prometheus_server import PrometheusServer
from tests.serve_rig_ingest import BEARER, Server, free_port, server_env, wait_up

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
WINDOW_SECONDS = max(10.0, 60.0 * SCALE)
READER_WINDOW = max(20.0, 120.0 * SCALE)  # then only endpoints not asked yet are asked
READER_WINDOW_HARD = max(60.0, 600.0 * SCALE)
READER_SAMPLES = 20  # per endpoint, when the window allows
SEGMENT_SECONDS = 20.0  # the load beside the readers runs in segments until they are done
WARM_UP_SECONDS = 10.0
STEP = "5s"  # the history services' Watches: 10 evaluations a second over 50 Watches
PR_RATE = 10.0  # signed merges per second
DEPLOY_RATE = 1.0  # CD-hook deploys per second
REPORTS = ("dora", "agents", "models", "specs", "areas", "loop")
WRITER_OPS = ("_write_batch", "move")
REPORT_BAR_MS = 200.0
WRITER_RATIO_BAR = 2.0
RESULTS = Path(__file__).resolve().parent.parent / "results" / "store.json"
LOAD_AT_START = os.getloadavg()


class SpanServer(Server):
    """`rearguard serve` as `bench.store.server` runs it: the same app, its store spans kept."""

    def __init__(self, config: Path, env: dict[str, str], port: int, log: Path,
                 spans: Path) -> None:  # fmt: skip
        super().__init__(config, env, port, log)
        self.spans = spans

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
                [sys.executable, "-m", "bench.store.server", str(self.config), str(self.spans)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip


def store_counts(path: Path) -> dict[str, int]:
    """Rows of the history's main tables, read before the server opens the file."""
    tables = ("deploys", "pull_requests", "observations", "incidents", "suspects", "journal")
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in tables}  # noqa: S608 - fixed names


async def _load(url: str, kind: str, rate: float, seconds: float, first: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest.load", url, kind, str(rate), str(seconds), str(first),
        "acme/svc-00", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    latencies = result.pop("latencies")
    result["p99_seconds"] = percentile(latencies, 0.99) if latencies else None
    return result


class Readers:
    """The reader endpoints, asked round robin, and each answered request's latency. An endpoint
    whose first answer is 404 is not on this server: it is named missing and asked no more."""

    def __init__(self, url: str, kinds: tuple[str, ...] = ("report", "query"), *,
                 samples: int = READER_SAMPLES) -> None:  # fmt: skip
        self.url = url
        self.samples = samples
        self.endpoints: dict[str, tuple[str, str, Any]] = {}
        if "report" in kinds:
            self.endpoints |= {f"report:{k}": ("GET", f"/v1/reports/{k}", None) for k in REPORTS}
        if "query" in kinds:
            self.endpoints |= {
                f"query:{e.name}": ("POST", "/v1/query", {"sql": e.sql}) for e in EXAMPLES
            }
        self.missing: dict[str, str] = {}
        self.latencies: dict[str, list[float]] = {name: [] for name in self.endpoints}
        self.failures: dict[str, list[str]] = {}
        self.asked: set[str] = set()

    async def _ask(self, session: aiohttp.ClientSession, method: str, path: str,
                   body: Any) -> tuple[int, str]:  # fmt: skip
        async with session.request(method, self.url + path, json=body, headers=BEARER) as r:
            return r.status, await r.text()

    def _next(self, names: list[str], turn: int, *, late: bool) -> str | None:
        """The next endpoint of `names` still short of `samples` answers, round robin (once
        `late`, only those never asked); None when there is none."""
        pending = [n for n in names if n in self.endpoints
                   and len(self.latencies[n]) < self.samples
                   and not (late and n in self.asked)]  # fmt: skip
        return pending[turn % len(pending)] if pending else None

    async def run(self, session: aiohttp.ClientSession, soft: float, hard: float) -> None:
        """Two clients, one asking the reports and one the queries, until every endpoint has
        `samples` latencies or `soft` (monotonic) has passed; after `soft`, until every
        endpoint was asked once, or `hard`. A request under way at the end is waited for."""

        async def client(names: list[str]) -> None:
            turn = 0
            while (now := time.monotonic()) < hard and (
                name := self._next(names, turn, late=now >= soft)
            ) is not None:
                turn += 1
                self.asked.add(name)
                method, path, body = self.endpoints[name]
                started = time.perf_counter()
                status, text = await self._ask(session, method, path, body)
                if status == 200:
                    self.latencies[name].append(time.perf_counter() - started)
                elif status == 404 and not self.latencies[name] and name in self.endpoints:
                    self.missing[name] = f"{status}: {text[:300]}"
                    del self.endpoints[name], self.latencies[name]
                else:
                    self.failures.setdefault(name, []).append(f"{status}: {text[:200]}")

        names = list(self.endpoints)
        groups = [[n for n in names if n.startswith(k)] for k in ("report:", "query:")]
        await asyncio.gather(*(client(group) for group in groups if group))

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, values in self.latencies.items():
            out[name] = {
                "samples": len(values),
                "p50_ms": percentile(values, 0.5) * 1000 if values else None,
                "p95_ms": percentile(values, 0.95) * 1000 if values else None,
                "failures": len(self.failures.get(name, [])),
            }
        return out

    def not_measured(self) -> list[str]:
        """Endpoints that the window ended before asking."""
        return [n for n in self.endpoints if n not in self.asked]


async def _loads(url: str, seconds: float, first: int) -> dict[str, Any]:
    """The merges and the deploys for `seconds`, numbered from `first`."""
    prs, deploys = await asyncio.gather(
        _load(url, "pr", PR_RATE, seconds, first), _load(url, "deploy", DEPLOY_RATE, seconds, first)
    )
    return {"prs": prs, "deploys": deploys}


async def _window(url: str, name: str, *, first: int, readers: Readers | None,
                  session: aiohttp.ClientSession, seconds: tuple[float, float],
                  ) -> dict[str, Any]:  # fmt: skip
    """One window: the load alone for `WINDOW_SECONDS`, or the load in segments beside the
    readers for as long as they ask (`seconds`: their soft and hard limits; the window is the
    time they asked)."""
    if readers is None:
        started = time.time()
        loads = [await _loads(url, WINDOW_SECONDS, first)]
        return {"name": name, "started_at": started, "ended_at": time.time(), "loads": loads,
                "readers": False, "load_average": os.getloadavg()}  # fmt: skip
    done = asyncio.Event()

    async def keep_loading() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while not done.is_set():
            out.append(await _loads(url, SEGMENT_SECONDS, first + len(out) * 100_000))
        return out

    loading = asyncio.create_task(keep_loading())
    await asyncio.sleep(1.0)  # the load under way before the first read
    started = time.time()
    now = time.monotonic()
    await readers.run(session, now + seconds[0], now + seconds[1])
    ended = time.time()
    done.set()
    return {"name": name, "started_at": started, "ended_at": ended, "loads": await loading,
            "readers": True, "reads": readers.summary(),
            "load_average": os.getloadavg()}  # fmt: skip


Span = tuple[str, float, float, float | None]


def writer_latency(spans: list[Span], windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The writer's transactions that started inside any of `windows`: count, p50, p99 and max
    (ms), and every store call's op counted."""
    inside = [s for s in spans if any(w["started_at"] <= s[1] < w["ended_at"] for w in windows)]
    writes = [s[2] for s in inside if s[0] in WRITER_OPS]
    ops: dict[str, int] = {}
    busy: dict[str, float] = {}  # seconds of store calls per op, queue wait included
    for s in inside:
        ops[s[0]] = ops.get(s[0], 0) + 1
        busy[s[0]] = round(busy.get(s[0], 0.0) + s[2], 3)
    return {
        "transactions": len(writes),
        "p50_ms": percentile(writes, 0.5) * 1000 if writes else None,
        "p99_ms": percentile(writes, 0.99) * 1000 if writes else None,
        "max_ms": max(writes) * 1000 if writes else None,
        "store_calls_by_op": ops,
        "store_call_seconds_by_op": busy,
    }


def export_rate(url: str, workdir: Path) -> dict[str, Any]:
    """`rearguard export --to DIR` against the running server: rows in its Parquet files per
    second of its wall time; `missing` when this tree's CLI has no `export`."""
    out = workdir / "export"
    env = server_env() | {"REARGUARD_API_TOKEN": API_TOKEN}
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this interpreter, our own CLI
        [sys.executable, "-m", "loop.cli.main", "export", "--url", url, "--to", str(out)],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0 and "invalid choice: 'export'" in done.stderr:
        return {"missing": "this tree's `rearguard` has no `export` command"}
    if done.returncode != 0:
        return {"failed": done.returncode, "stderr": done.stderr[-2000:], "seconds": seconds}
    files = sorted(str(p) for p in out.rglob("*.parquet"))
    with duckdb.connect() as con:
        rows = sum(
            int(con.execute("SELECT count(*) FROM read_parquet(?)", [f]).fetchall()[0][0])
            for f in files
        )
    return {"rows": rows, "files": len(files), "seconds": seconds,
            "rows_per_second": rows / seconds if seconds else None}  # fmt: skip


async def run(workdir: Path) -> dict[str, Any]:
    shape = Shape.scaled(SCALE)
    built = time.perf_counter()
    store, got = await history_store(shape, workdir / "store.duckdb")
    got["seconds_to_ready"] = time.perf_counter() - built
    counts = store_counts(store)
    names = history_services(shape.services)
    sample = SampleApp(seed=11)
    sample.start_in_thread()
    for name in [*names, CD_SERVICE]:
        sample.configure(name, rate=40.0, error_ratio=0.005)
    (workdir / "prometheus").mkdir()
    prometheus = PrometheusServer([urlsplit(sample.url).netloc], workdir=workdir / "prometheus")
    github = UnknownCommits()
    port = free_port()
    try:
        prometheus.start()
        await github.start()
        urls = (prometheus.url, github.url, "http://127.0.0.1:9/api/")
        config = write_config(workdir / "rearguard.toml", port, store, shape.services,
                              step=STEP, urls=urls)  # fmt: skip
        env = server_env() | {"GITHUB_TOKEN": "ghp_bench_stand_in",
                              "REARGUARD_API_TOKEN": API_TOKEN,
                              "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET}  # fmt: skip
        spans_path = workdir / "spans.json"
        server = SpanServer(config, env, port, workdir / "server.log", spans_path)
        await asyncio.sleep(22)  # a 20 s baseline of history, scraped every second
        server.start()
        windows: list[dict[str, Any]] = []
        readers = Readers(server.url)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
                await wait_up(session, server, within=120)
                await _watch_every_service(session, server.url, names)
                await asyncio.sleep(WARM_UP_SECONDS)
                for i, (name, who, limits) in enumerate(_plan(server.url, readers)):
                    print(f"bench-store: window {name}", file=sys.stderr)
                    first = 2_000_000 * (i + 1)
                    windows.append(await _window(server.url, name, first=first, readers=who,
                                                 session=session, seconds=limits))  # fmt: skip
            export = await asyncio.to_thread(export_rate, server.url, workdir)
        finally:
            server.stop()
    finally:
        await github.close()
        prometheus.stop()
        sample.stop()
    spans = load_spans(spans_path) if spans_path.exists() else []
    for w in windows:
        w["writer"] = writer_latency(spans, [w])
    alone = writer_latency(spans, [w for w in windows if not w["readers"]])
    with_readers = writer_latency(spans, [w for w in windows if w["name"] == "with_readers"])
    writer = {"alone": alone, "with_readers": with_readers}
    return _result(shape, got, counts, readers, windows=windows, export=export, writer=writer)


def _plan(url: str, readers: Readers) -> list[tuple[str, Readers | None, tuple[float, float]]]:
    """The windows in order: each one's name, its readers and their soft and hard limits. The
    last two tell which readers cost the writer what (in the JSON only): each kind alone, asked
    without a cap on answers for `WINDOW_SECONDS`."""
    main = (READER_WINDOW, READER_WINDOW_HARD)
    alone = (WINDOW_SECONDS, WINDOW_SECONDS)
    return [
        ("alone", None, alone), ("with_readers", readers, main), ("alone_again", None, alone),
        ("with_reports_only", Readers(url, ("report",), samples=10**6), alone),
        ("with_queries_only", Readers(url, ("query",), samples=10**6), alone),
    ]  # fmt: skip


async def _watch_every_service(session: aiohttp.ClientSession, url: str, names: list[str]) -> None:
    """One new deploy per history service, so each has a Watch stepping every second."""
    ids = []
    for i, name in enumerate(names):
        body = {"service": name, "environment": "production", "sha": f"{0xB0 + i:040x}",
                "finished_at": time.time()}  # fmt: skip
        async with session.post(f"{url}/v1/deploys", json=body, headers=BEARER) as response:
            ids.append((await response.json())["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        phases = []
        for deploy in ids:
            async with session.get(f"{url}/v1/deploys/{deploy}", headers=BEARER) as response:
                phases.append((await response.json()).get("phase"))
        if all(p == "observing" for p in phases):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the history services' Watches did not all start observing")


def _result(shape: Shape, got: dict[str, Any], counts: dict[str, int], readers: Readers, *,
            windows: list[dict[str, Any]], export: dict[str, Any],
            writer: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    measured = readers.summary()
    report_p95 = {n.split(":", 1)[1]: m["p95_ms"] for n, m in measured.items()
                  if n.startswith("report:")}  # fmt: skip
    query_p95 = {n.split(":", 1)[1]: m["p95_ms"] for n, m in measured.items()
                 if n.startswith("query:")}  # fmt: skip
    alone, with_readers = writer["alone"]["p99_ms"], writer["with_readers"]["p99_ms"]
    summary: dict[str, Any] = {
        "report_p95_ms": report_p95,
        "query_p95_ms": query_p95,
        "writer_p99_ms_alone": alone,
        "writer_p99_ms_with_readers": with_readers,
        "export_rows_per_second": export.get("rows_per_second"),
        "missing": readers.missing | ({"export": export["missing"]} if "missing" in export else {}),
        "not_measured": readers.not_measured(),
    }
    summary["targets"] = {
        "every report under 200 ms at p95": bool(report_p95)
        and all(v is not None and v < REPORT_BAR_MS for v in report_p95.values())
        and not any(k.startswith("report:") for k in readers.missing),  # a missing one fails
        "writer p99 with readers <= 2x alone": alone is not None
        and with_readers is not None
        and with_readers <= WRITER_RATIO_BAR * alone,
    }
    return {
        "config": {
            "scale": SCALE, "shape": shape.key, "store": got, "rows": counts,
            "window_seconds": WINDOW_SECONDS, "reader_window_seconds": READER_WINDOW,
            "reader_window_hard_seconds": READER_WINDOW_HARD, "watch_step": STEP,
            "reader_samples_per_endpoint": READER_SAMPLES,
            "pr_rate": PR_RATE, "deploy_rate": DEPLOY_RATE, "watches": shape.services,
            "writer_ops": WRITER_OPS, "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": os.getloadavg(),
        },
        "summary": summary,
        "readers": measured,
        "writer": writer,
        "reader_failures": {k: v[:3] for k, v in readers.failures.items()},
        "windows": windows,
        "export": export,
    }  # fmt: skip


def _print(result: dict[str, Any]) -> None:
    s, cfg = result["summary"], result["config"]
    rows = ", ".join(f"{k} {v:,}" for k, v in cfg["rows"].items())
    loads = ", ".join(f"{x:.1f}" for x in cfg["load_average_at_start"])
    out = [f"bench-store (scale {cfg['scale']}; {rows}; load average at start {loads})",
           f"{'endpoint':40}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}"]  # fmt: skip
    for name, m in result["readers"].items():
        out.append(f"{name:40}{m['samples']:>5}{_f(m['p50_ms'])}{_f(m['p95_ms'])}")
    out.extend(f"{name:40}  missing ({why[:60]})" for name, why in s["missing"].items())
    out.extend(f"{name:40}  not measured (the window ended first)" for name in s["not_measured"])
    out.append(f"{'window':18}{'writer tx':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
               f"{'load avg':>10}")  # fmt: skip
    for w in result["windows"]:
        m = w["writer"]
        out.append(f"{w['name']:18}{m['transactions']:>10}{_f(m['p50_ms'])}{_f(m['p99_ms'])}"
                   f"{_f(m['max_ms'])}{w['load_average'][0]:>10.1f}")  # fmt: skip
    out.append(f"writer p99 alone {_f(s['writer_p99_ms_alone'])} ms, with readers "
               f"{_f(s['writer_p99_ms_with_readers'])} ms")  # fmt: skip
    rate = s["export_rows_per_second"]
    out.append(f"export: {f'{rate:,.0f} rows/s' if rate else result['export']}")
    out.extend(f"target {k}: {'met' if v else 'MISSED'}" for k, v in s["targets"].items())
    print("\n".join(out))


def _f(value: float | None) -> str:
    return f"{value:10.1f}" if value is not None else f"{'-':>10}"


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rearguard-bench-store-") as tmp:
        result = asyncio.run(run(Path(tmp)))
    result["config"]["seconds"] = time.perf_counter() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {RESULTS} ({result['config']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
