"""`GET /metrics`: Rearguard's own state in the Prometheus text format.

Every figure of the store is read from it when Prometheus scrapes (Watches per phase, incidents,
actions per kind and status, journaled deliveries per source and status), so the numbers survive
restarts and never drift from the truth. Refused requests are not the store's business (a refused
request writes nothing): they are counted in the process, by route and reason code, both from
fixed sets, so no request can make up a label value. The OpenTelemetry SDK holds the gauges and
the counter, and its Prometheus reader renders them, on a registry of this app's own.
`rearguard_sli_query_failures_total{service,sli,cause}` counts the evaluations whose SLI queries
failed (`loop.watch.query_health`; service and SLI names come from the config, causes from a
fixed set).

The scheduler's own health is counted as it happens: `rearguard_evaluation_lag_seconds` (from a
Watch's `next_due` to the start of its evaluation), `rearguard_evaluations_skipped_total` (watch
steps that got no evaluation because one came a step or more late),
`rearguard_queries_per_evaluation` and `rearguard_evaluations_total`, told by each observing
evaluation (`loop.watch.pace`: this class is the Watches' `PaceRecorder`); and
`rearguard_store_queue_seconds`, the time each store call waited for the one writer thread
(`attribution.store_writer.StoreWriter.on_queued`). None has a label: their cardinality is one.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from attribution.store import Store
from attribution.store_stats import GAUGES
from loop.watch.pace import Evaluation
from loop.watch.query_health import QueryHealth

CONTENT_TYPE = CONTENT_TYPE_LATEST

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 15, 30, 60, 120)
"""Seconds; fine from 0.1 s to 10 s so a p99 is read there, with a boundary at the 3 s target."""
QUERY_BUCKETS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
STORE_QUEUE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds; a boundary at the 1 s the store-queue alert reads."""


class OwnMetrics:
    """The gauges and the registry they render from; one per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(
            registry=self.registry, disable_target_info=True, scope_info_enabled=False
        )
        self._provider = MeterProvider(metric_readers=[reader])
        meter = self._provider.get_meter("rearguard")
        self._gauges = {name: meter.create_gauge(name, description=text) for name, text in GAUGES}
        self._seen: dict[str, set[tuple[str, ...]]] = {}
        self._refused = meter.create_counter(
            "rearguard_refused_requests",
            description="Requests answered with an error, by route template and reason code.",
        )

        self._query_failures = meter.create_counter(
            "rearguard_sli_query_failures",
            description="Evaluations whose SLI queries failed, by service, SLI and cause.",
        )
        self._failures_seen: dict[tuple[str, str, str], int] = {}

        self._lag = meter.create_histogram(
            "rearguard_evaluation_lag_seconds",
            description="Seconds from a Watch's next_due to the start of its evaluation.",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )
        self._skipped = meter.create_counter(
            "rearguard_evaluations_skipped",
            description="Watch steps that passed without an evaluation (one came a step late).",
        )
        self._queries = meter.create_histogram(
            "rearguard_queries_per_evaluation",
            description="Metrics-source queries one observing Watch evaluation made.",
            explicit_bucket_boundaries_advisory=QUERY_BUCKETS,
        )
        self._evaluations = meter.create_counter(
            "rearguard_evaluations", description="Evaluations of observing Watches."
        )
        self._store_queue = meter.create_histogram(
            "rearguard_store_queue_seconds",
            description="Seconds a store call waited in the writer's queue before it started.",
            explicit_bucket_boundaries_advisory=STORE_QUEUE_BUCKETS,
        )

    def refused(self, route: str, reason: str) -> None:
        """Count one refused request; the caller passes a route template and a reason code,
        never text taken from the request."""
        self._refused.add(1, {"route": route, "reason": reason})

    def evaluated(self, evaluation: Evaluation) -> None:
        """Count one observing Watch's evaluation (`loop.watch.pace.PaceRecorder`)."""
        self._lag.record(evaluation.lag)
        self._skipped.add(evaluation.skipped)  # 0 too: the series exists from the first one
        self._queries.record(evaluation.queries)
        self._evaluations.add(1)

    def store_queued(self, seconds: float) -> None:
        """Count one store call's wait for the writer thread (`StoreWriter.on_queued`)."""
        self._store_queue.record(seconds)

    async def render(self, store: Store, health: QueryHealth | None = None) -> bytes:
        """Read the counts from the store (and the query failures from `health`), render them."""
        for (service, sli, cause), total in (health.counts if health else {}).items():
            added = total - self._failures_seen.get((service, sli, cause), 0)
            if added > 0:
                self._query_failures.add(added, {"service": service, "sli": sli, "cause": cause})
            self._failures_seen[(service, sli, cause)] = total
        for count in await store.stats.counts():
            now = dict(count.values)
            # A label set that has emptied (every Watch left `deployed`) must read 0, not its
            # last value.
            for key in self._seen.setdefault(count.name, set()) - set(now):
                now[key] = 0
            self._seen[count.name] |= set(now)
            for key, value in now.items():
                self._gauges[count.name].set(value, dict(zip(count.labels, key, strict=True)))
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self._provider.shutdown()
