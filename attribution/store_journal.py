"""Journal queries (`store.journal`): every webhook delivery kept once, so a redelivery is
recognised and its effect is applied at most once (`accepted` -> `applied`).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from attribution.store_writer import StoreWriter


class JournalQueries:
    """The delivery journal: dedupe by `source:delivery` and track whether it was applied."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record(
        self,
        source: str,
        event: str,
        delivery: str,
        *,
        status: str,
        received_at: float,
        body: Any = None,
        error: str | None = None,
    ) -> bool:
        """Record a delivery; False when it was already journaled (a redelivery)."""

        def insert(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "INSERT INTO journal VALUES (?, ?, ?, to_timestamp(?), ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [
                    f"{source}:{delivery}",
                    source,
                    event,
                    received_at,
                    status,
                    error,
                    None if body is None else json.dumps(body),
                ],
            ).fetchall()
            return bool(rows)

        return await self._writer.call(insert)

    async def mark(self, source: str, delivery: str, status: str) -> None:
        """Move a journaled delivery on (`accepted` -> `applied` once its effect is stored)."""
        await self._writer.call(
            lambda cur: cur.execute(
                "UPDATE journal SET status = ? WHERE id = ?", [status, f"{source}:{delivery}"]
            )
        )

    async def status(self, source: str, delivery: str) -> str | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT status FROM journal WHERE id = ?", [f"{source}:{delivery}"]
            ).fetchall()
        )
        return str(rows[0][0]) if rows else None
