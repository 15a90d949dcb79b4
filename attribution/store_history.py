"""History in bulk (`store.history`): rows of finished history appended with DuckDB's appender.

The loop writes its rows one fact at a time (a delivery, a transition with its observations);
history that is already over (a backfill from another system, the year that `make bench-store`
builds) is far too many rows for that: DuckDB's appender takes hundreds of thousands of rows a
second where `executemany` takes a couple of thousand. `append` writes a batch of rows per table,
all tables in one transaction, on the store's one writer, so it stays ordered with everything
else the writer does.

Rows are named, never positional: each is a mapping from column name to value, and the columns
of the first row of a table are the ones appended (the rest take their defaults). Only the tables
of `HISTORY_TABLES` are accepted. Times go in as Unix seconds, as everywhere in the store; JSON
columns take text or a dict or list (encoded here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb

from attribution.store_writer import StoreError, StoreWriter

HISTORY_TABLES = (
    "journal", "deploys", "watches", "transitions", "observations", "agent_sessions",
    "pull_requests", "deploy_prs", "pr_files", "pr_facts", "ci_runs", "pr_reviews", "incidents",
    "suspects",
    "actions", "feedback", "revert_rounds", "incident_times", "llm_usage",
)  # fmt: skip
"""The tables history can be appended to (the store's own bookkeeping tables are not among them)."""

Rows = Sequence[Mapping[str, Any]]


def _column_types(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return dict(
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ?",
            [table],
        ).fetchall()
    )


def _converter(data_type: str) -> Any:
    """How a value for a column of `data_type` is handed to the appender."""
    if data_type.startswith("TIMESTAMP"):
        return lambda v: None if v is None else datetime.fromtimestamp(v, UTC)
    if data_type == "JSON":
        return lambda v: json.dumps(v) if isinstance(v, dict | list) else v
    return None


class HistoryQueries:
    """Finished history appended in bulk, every table of a batch in one transaction."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def append(self, tables: Mapping[str, Rows]) -> dict[str, int]:
        """Append each table's rows, all in one transaction; the rows written per table.
        A key that collides (a deploy id already held, say) fails the whole batch."""
        unknown = sorted(set(tables) - set(HISTORY_TABLES))
        if unknown:
            raise StoreError(f"history cannot be appended to {', '.join(unknown)}")
        return await self._writer.tx(lambda cur: self.write(cur, tables))

    @staticmethod
    def write(cur: duckdb.DuckDBPyConnection, tables: Mapping[str, Rows]) -> dict[str, int]:
        """`append`'s work on `cur` (inside the caller's transaction), tables in the order of
        `HISTORY_TABLES`."""
        written: dict[str, int] = {}
        for table in HISTORY_TABLES:
            rows = tables.get(table)
            if not rows:
                continue
            types = _column_types(cur, table)
            columns = list(rows[0])
            missing = [c for c in columns if c not in types]
            if missing:
                raise StoreError(f"{table} has no column {', '.join(missing)}")
            convert = [_converter(types[c]) for c in columns]
            with cur.appender(table, columns=columns) as appender:
                appender.append_rows(
                    [
                        tuple(
                            row[c] if f is None else f(row[c])
                            for c, f in zip(columns, convert, strict=True)
                        )
                        for row in rows
                    ]
                )
            written[table] = len(rows)
        return written
