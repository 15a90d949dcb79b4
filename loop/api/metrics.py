"""`GET /metrics`: Rearguard's own state in the Prometheus text format.

Every figure is read from the store when Prometheus scrapes (Watches per phase, incidents,
actions per kind and status, journaled deliveries per source and status), so the numbers survive
restarts and never drift from the truth. The OpenTelemetry SDK holds them as gauges and its
Prometheus reader renders them, on a registry of this app's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from attribution.store import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST

_QUERIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("rearguard_watches", "Watches per phase.",
     "SELECT phase, count(*) FROM watches GROUP BY phase", ("phase",)),
    ("rearguard_incidents", "Incidents per service.",
     "SELECT service, count(*) FROM incidents GROUP BY service", ("service",)),
    ("rearguard_actions", "Actions per kind and status.",
     "SELECT kind, status, count(*) FROM actions GROUP BY kind, status", ("kind", "status")),
    ("rearguard_deliveries", "Journaled deliveries per source and status.",
     "SELECT source, status, count(*) FROM journal GROUP BY source, status", ("source", "status")),
)  # fmt: skip


class OwnMetrics:
    """The gauges and the registry they render from; one per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(
            registry=self.registry, disable_target_info=True, scope_info_enabled=False
        )
        self._provider = MeterProvider(metric_readers=[reader])
        meter = self._provider.get_meter("rearguard")
        self._gauges = {name: meter.create_gauge(name, description=text)
                        for name, text, _, _ in _QUERIES}  # fmt: skip
        self._seen: dict[str, set[tuple[str, ...]]] = {}

    async def render(self, store: Store) -> bytes:
        """Read the counts from the store and render them."""
        for name, _, sql, labels in _QUERIES:
            rows: Sequence[tuple[Any, ...]] = await store.fetch(sql)
            now: dict[tuple[str, ...], int] = {
                tuple(str(v) for v in row[: len(labels)]): int(row[-1]) for row in rows
            }
            # A label set that has emptied (every Watch left `deployed`) must read 0, not its
            # last value.
            for key in self._seen.setdefault(name, set()) - set(now):
                now[key] = 0
            self._seen[name] |= set(now)
            for key, count in now.items():
                self._gauges[name].set(count, dict(zip(labels, key, strict=True)))
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self._provider.shutdown()
