"""A sample service for the real Prometheus in tests to scrape: traffic we can steer.

`SampleApp` owns simulated traffic for any number of `service` labels and exposes it on
`/metrics` in the Prometheus text format: `http_requests_total{service,code}` (codes "200" and
"500"), the histogram `http_request_duration_seconds{service}` and the gauge
`process_resident_memory_bytes{service}`; a service configured with a `version` exposes its
series with a `version` label too (a canary beside its stable version), one set per version. A
background task adds requests every `tick` seconds
at each service's rate, drawing errors and slow (> 0.5 s) latencies from one seeded
`random.Random`, so a test sets a ratio and reads it back through PromQL.

pytest-asyncio gives every test its own event loop, while Prometheus scrapes for the whole
session, so the app can run in its own thread and loop (`start_in_thread`); `configure` may be
called from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
"""Upper bounds (`le`) of the latency histogram; 0.5 s separates fast from slow requests."""
SLOW_SECONDS = 0.5
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Traffic:
    """How one service behaves: requests per second, shares of errors and slow requests."""

    rate: float = 10.0
    error_ratio: float = 0.0
    slow_ratio: float = 0.0
    memory_bytes: float = 100e6


@dataclass(slots=True)
class _Counters:
    """Monotonic totals for one service, as a real exporter would keep them."""

    ok: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    carry: float = 0.0  # fractional requests owed from earlier ticks


class SampleApp:
    """Simulated services behind one `/metrics` endpoint; thread-safe to configure."""

    def __init__(self, *, seed: int = 0, tick: float = 0.1, delay: float = 0.0) -> None:
        """`delay`: serve each scrape the samples as they stood `delay` seconds earlier, with
        those samples' own timestamps (a remote-write or agent hop): every sample then reaches
        Prometheus `delay` seconds after its timestamp, the way late samples do."""
        self._random = random.Random(seed)
        self._tick = tick
        self._delay = delay
        self._past: collections.deque[tuple[float, str]] = collections.deque()
        self._served = ""  # what the last scrape was served (delayed mode)
        self._held: str | None = None  # while frozen: what every scrape is served
        self._held_scrapes = 0  # scrapes served while frozen
        self._lock = threading.Lock()
        self._traffic: dict[tuple[str, str], Traffic] = {}  # by (service, version)
        self._counters: dict[tuple[str, str], _Counters] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the running app (`/metrics` below it)."""
        if self._url is None:
            raise RuntimeError("SampleApp is not running: call start_in_thread() first")
        return self._url

    def configure(
        self,
        service: str,
        *,
        rate: float | None = None,
        error_ratio: float | None = None,
        slow_ratio: float | None = None,
        memory_bytes: float | None = None,
        version: str = "",
    ) -> Traffic:
        """Change (or start) a service's traffic from now on (of one `version` of it, whose
        series carry that `version` label); unset arguments keep their value."""
        for name, ratio in (("error_ratio", error_ratio), ("slow_ratio", slow_ratio)):
            if ratio is not None and not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {ratio}")
        if rate is not None and rate < 0:
            raise ValueError(f"rate must not be negative, got {rate}")
        with self._lock:
            key = (service, version)
            old = self._traffic.get(key, Traffic())
            new = Traffic(
                rate=old.rate if rate is None else rate,
                error_ratio=old.error_ratio if error_ratio is None else error_ratio,
                slow_ratio=old.slow_ratio if slow_ratio is None else slow_ratio,
                memory_bytes=old.memory_bytes if memory_bytes is None else memory_bytes,
            )
            self._traffic[key] = new
            self._counters.setdefault(key, _Counters())
        return new

    def forget(self, service: str, *, version: str = "") -> None:
        """Stop exposing `service`'s series (of `version`), as a service that stopped reporting
        would."""
        with self._lock:
            self._traffic.pop((service, version), None)
            self._counters.pop((service, version), None)

    def advance(self, seconds: float) -> None:
        """Simulate `seconds` of traffic for every service (the background task calls this)."""
        with self._lock:
            for key, traffic in self._traffic.items():
                counters = self._counters[key]
                counters.carry += traffic.rate * seconds
                count = int(counters.carry)
                counters.carry -= count
                for _ in range(count):
                    self._record(counters, traffic)

    def _record(self, counters: _Counters, traffic: Traffic) -> None:
        if self._random.random() < traffic.error_ratio:
            counters.errors += 1
        else:
            counters.ok += 1
        if self._random.random() < traffic.slow_ratio:
            latency = self._random.uniform(SLOW_SECONDS + 0.01, 2.0)
        else:
            latency = self._random.uniform(0.005, SLOW_SECONDS - 0.01)
        counters.latency_sum += latency
        for index, bound in enumerate(LATENCY_BUCKETS):
            if latency <= bound:
                counters.buckets[index] += 1

    def exposition(self, at: float | None = None) -> str:
        """The current metrics in the Prometheus text format (version 0.0.4); with `at` (Unix
        seconds), every sample carries that timestamp."""
        stamp = "" if at is None else f" {round(at * 1000)}"
        requests = [
            "# HELP http_requests_total Requests served, by status code.",
            "# TYPE http_requests_total counter",
        ]
        latency = [
            "# HELP http_request_duration_seconds Time to serve a request.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        memory = [
            "# HELP process_resident_memory_bytes Resident memory of the service.",
            "# TYPE process_resident_memory_bytes gauge",
        ]
        with self._lock:
            for (service, version), counters in self._counters.items():
                label = f'service="{_escape(service)}"'
                if version:
                    label += f',version="{_escape(version)}"'
                requests.append(f'http_requests_total{{{label},code="200"}} {counters.ok}{stamp}')
                requests.append(
                    f'http_requests_total{{{label},code="500"}} {counters.errors}{stamp}'
                )
                for bound, count in zip(LATENCY_BUCKETS, counters.buckets, strict=True):
                    le = "+Inf" if math.isinf(bound) else repr(bound)
                    latency.append(
                        f'http_request_duration_seconds_bucket{{{label},le="{le}"}} {count}{stamp}'
                    )
                total = counters.ok + counters.errors
                latency.append(
                    f"http_request_duration_seconds_sum{{{label}}} {counters.latency_sum!r}{stamp}"
                )
                latency.append(f"http_request_duration_seconds_count{{{label}}} {total}{stamp}")
                gauge = float(self._traffic[service, version].memory_bytes)
                memory.append(f"process_resident_memory_bytes{{{label}}} {gauge!r}{stamp}")
        return "\n".join([*requests, *latency, *memory]) + "\n"

    def make_app(self) -> web.Application:
        """An aiohttp app serving `/metrics`, with the traffic task in its `cleanup_ctx`."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.cleanup_ctx.append(self._traffic_task)
        return app

    def freeze(self) -> None:
        """Serve every scrape from now on the snapshot the last one was served (delayed mode).

        Its samples carry their own timestamps, so Prometheus takes nothing new: once a scrape
        has been served while frozen (`held_scrapes`), everything served before is ingested
        (a target's scrapes run one after another), and what Prometheus holds stays put until
        `thaw`. Two reads that must see the same data, issued a moment apart, see it."""
        if self._delay <= 0:
            raise RuntimeError("freeze needs a delayed SampleApp: its samples carry timestamps")
        with self._lock:
            self._held, self._held_scrapes = self._served, 0

    def thaw(self) -> None:
        """Serve the newest delayed snapshot again; the ones skipped meanwhile are never served
        (counters are cumulative: the next one carries their requests)."""
        with self._lock:
            self._held = None

    @property
    def held_scrapes(self) -> int:
        """Scrapes served since `freeze`."""
        with self._lock:
            return self._held_scrapes

    async def _metrics(self, request: web.Request) -> web.Response:
        text = self.exposition() if self._delay <= 0 else self._delayed(time.time())
        return web.Response(body=text.encode(), headers={"Content-Type": _CONTENT_TYPE})

    def _delayed(self, now: float) -> str:
        """The newest snapshot at least `delay` seconds old (none yet: no samples); while
        frozen, the one held."""
        with self._lock:
            if self._held is not None:
                self._held_scrapes += 1
                return self._held
            ready = [text for at, text in self._past if at <= now - self._delay]
            while len(self._past) > 1 and self._past[1][0] <= now - self._delay:
                self._past.popleft()
            self._served = ready[-1] if ready else ""
            return self._served

    async def _traffic_task(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._simulate())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _simulate(self) -> None:
        """Advance by the real time elapsed, so rates hold even when a tick runs late."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            self.advance(now - last)
            last = now
            if self._delay > 0:
                at = time.time()
                snapshot = self.exposition(at)
                with self._lock:
                    self._past.append((at, snapshot))

    def start_in_thread(self) -> str:
        """Serve on a free loopback port from a daemon thread with its own loop; return the URL."""
        if self._thread is not None:
            raise RuntimeError("SampleApp is already running")
        started = threading.Event()
        address: list[str] = []
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(started, address, failure)),
            name="sample-app",
            daemon=True,
        )
        self._thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("SampleApp did not start within 10 s")
        if failure:
            raise RuntimeError("SampleApp failed to start") from failure[0]
        self._url = address[0]
        return self._url

    async def _serve(
        self, started: threading.Event, address: list[str], failure: list[BaseException]
    ) -> None:
        runner = web.AppRunner(self.make_app(), access_log=None)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            address.append(f"http://{host}:{port}")
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
        except Exception as exc:  # handed to the starting thread, which raises it
            failure.append(exc)
            await runner.cleanup()
            return
        finally:
            started.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call when not running."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        self._thread = self._loop = self._stopping = self._url = None


def _escape(value: str) -> str:
    """Escape a label value as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
