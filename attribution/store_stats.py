"""Counts of what the store holds (`store.stats`), for Rearguard's own `/metrics`.

Each count is one `GROUP BY` over a table, read when Prometheus scrapes, so the figures survive
restarts and never drift from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from attribution.store_writer import StoreWriter


@dataclass(frozen=True, slots=True)
class Count:
    """One gauge's values: its name, help text, label names, and a count per label set."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], int]


_COUNTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("rearguard_watches", "Watches per phase.", "watches", ("phase",)),
    ("rearguard_incidents", "Incidents per service.", "incidents", ("service",)),
    ("rearguard_actions", "Actions per kind and status.", "actions", ("kind", "status")),
    ("rearguard_deliveries", "Journaled deliveries per source and status.", "journal",
     ("source", "status")),
)  # fmt: skip
"""Gauge, help, table, label columns: constants only, so the SQL below is built from no input."""

_INCONCLUSIVE = (
    "rearguard_inconclusive_watches",
    "Watches that ended inconclusive, by the cause of a failed SLI query in their last "
    "evaluation (the first in name order; `none` when every query answered).",
    ("cause",),
    "SELECT cause, count(*) FROM (SELECT coalesce((SELECT min(r ->> '$.failure') "
    "FROM unnest(CAST(coalesce(w.verdict -> '$.results', '[]') AS JSON[])) AS t(r) "
    "WHERE coalesce(r ->> '$.failure', '') <> ''), 'none') AS cause "
    "FROM watches w WHERE w.phase = 'inconclusive') GROUP BY cause",
)
"""A gauge read from each inconclusive Watch's kept verdict (`observer.verdict.SliResult.failure`):
what tells a Watch that a failing source left unjudged from one that had too little traffic."""

GAUGES = (*((name, text) for name, text, _, _ in _COUNTS), _INCONCLUSIVE[:2])
"""The gauges `counts` fills, for whoever declares them before the first read."""


class StatsQueries:
    """Counts per label set."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def counts(self) -> list[Count]:
        """Every gauge's counts, read in one call."""

        def read(cur: duckdb.DuckDBPyConnection) -> list[Count]:
            out = []
            for name, text, table, labels in _COUNTS:
                columns = ", ".join(labels)
                rows = cur.execute(
                    f"SELECT {columns}, count(*) FROM {table} GROUP BY {columns}"
                ).fetchall()
                values = {tuple(str(v) for v in r[: len(labels)]): int(r[-1]) for r in rows}
                out.append(Count(name, text, labels, values))
            name, text, labels, sql = _INCONCLUSIVE
            rows = cur.execute(sql).fetchall()
            out.append(Count(name, text, labels, {(str(r[0]),): int(r[1]) for r in rows}))
            return out

        return await self._writer.call(read)
