"""Model-usage queries: tokens and cost of each model call, kept against its incident so the
per-incident and per-day budgets can be checked before the next call.
"""

from __future__ import annotations

import duckdb

from attribution.store_writer import StoreWriter


class UsageQueries(StoreWriter):
    """Tokens and USD spent on model calls, per incident and over time."""

    async def record_usage(
        self,
        incident_id: str,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        now: float,
    ) -> None:
        """Keep one model call's tokens and cost against its incident."""

        def insert(cur: duckdb.DuckDBPyConnection) -> None:
            row = cur.execute(
                "SELECT count(*) FROM llm_usage WHERE incident_id = ?", [incident_id]
            ).fetchall()
            cur.execute(
                "INSERT INTO llm_usage VALUES (?, ?, ?, ?, ?, ?, to_timestamp(?))",
                [f"{incident_id}:{row[0][0] + 1}", incident_id, model, input_tokens,
                 output_tokens, cost_usd, now],
            )  # fmt: skip

        await self._tx(insert)

    async def usage_spent(
        self, *, incident_id: str | None = None, since: float | None = None
    ) -> tuple[int, float]:
        """Tokens and USD spent on one incident, or on all since `since` (Unix seconds)."""
        rows = await self._call(
            lambda cur: cur.execute(
                "SELECT coalesce(sum(input_tokens + output_tokens), 0), coalesce(sum(cost_usd), 0)"
                " FROM llm_usage WHERE (? IS NULL OR incident_id = ?)"
                " AND (? IS NULL OR created_at >= to_timestamp(?))",
                [incident_id, incident_id, since, since],
            ).fetchall()
        )
        return int(rows[0][0]), float(rows[0][1])
