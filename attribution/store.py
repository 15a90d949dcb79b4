"""The DuckDB store: schema migrations and all of Rearguard's SQL, behind one writer.

Every call runs on one dedicated thread with its own cursor, so there is exactly one writer and
writes are ordered; callers `await` it from the event loop. Results are fetched fully inside the
call (DuckDB 2.0 streams results). Times go in as Unix seconds through `to_timestamp` and come out
through `epoch`, so no timezone library is involved.

The writer itself is `attribution.store_writer.StoreWriter`; the SQL lives in one mixin per query
group (`store_journal`, `store_watches`, `store_prs`, `store_incidents`, `store_rounds`,
`store_usage`), each using only the writer's `_call` and `_tx`. `Store` composes them, so callers
use one object: `await Store.open(path)`, then `store.record_deploy(...)` and the rest. Reads that
span groups in one call (`deploy_summary`: a Watch with its PRs) live here, on the composition.

Exception tree::

    StoreError          the store could not do what was asked (the message says what)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from attribution.records import MergedPR, WatchState
from attribution.store_incidents import IncidentQueries
from attribution.store_journal import JournalQueries
from attribution.store_prs import PullRequestQueries
from attribution.store_rounds import RevertRoundQueries
from attribution.store_usage import UsageQueries
from attribution.store_watches import WatchQueries
from attribution.store_writer import StoreError, StoreWriter

__all__ = ["Store", "StoreError"]


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("attribution") / "schema"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text()))
    return sorted(found)


class Store(
    JournalQueries,
    WatchQueries,
    PullRequestQueries,
    IncidentQueries,
    RevertRoundQueries,
    UsageQueries,
    StoreWriter,
):
    """The single writer of the DuckDB file; open with `await Store.open(path)`."""

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the store at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = await asyncio.to_thread(duckdb.connect, str(path))
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        store = cls(con, path)
        await store._call(store._migrate)
        return store

    def _migrate(self, cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in cur.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, sql in _migrations():
            if version in done:
                continue
            cur.execute("BEGIN TRANSACTION")
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
            cur.execute("COMMIT")

    async def deploy_summary(
        self, deploy_id: str
    ) -> tuple[
        WatchState | None, dict[str, Any] | None, list[MergedPR], list[dict[str, Any]], str | None
    ]:
        """What a deploy's view shows besides the deploy, read in one call (the view is polled
        while Watches run, and each call waits its turn on the one writer thread): the Watch, its
        verdict, the PRs, the timeline and the incident's id."""

        def read(cur: duckdb.DuckDBPyConnection) -> Any:
            watch = cur.execute(
                "SELECT deploy_id, phase, epoch(next_due), reason, version, verdict FROM watches "
                "WHERE deploy_id = ?",
                [deploy_id],
            ).fetchall()
            incident = cur.execute(
                "SELECT id FROM incidents WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
            return (
                WatchState(*watch[0][:5]) if watch else None,
                json.loads(watch[0][5]) if watch and watch[0][5] else None,
                self._deploy_prs(cur, deploy_id),
                self._timeline(cur, deploy_id),
                str(incident[0][0]) if incident else None,
            )

        summary: tuple[
            WatchState | None, dict[str, Any] | None, list[MergedPR], list[dict[str, Any]],
            str | None,
        ] = await self._call(read)  # fmt: skip
        return summary

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query of Rearguard's own (never user SQL) and fetch every row."""
        return await self._call(lambda cur: cur.execute(sql, list(params)).fetchall())
