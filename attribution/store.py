"""The DuckDB store: schema migrations and all of Rearguard's SQL, behind one writer.

Every call runs on one dedicated thread with its own cursor, so there is exactly one writer and
writes are ordered; callers `await` it from the event loop. Results are fetched fully inside the
call (DuckDB 2.0 streams results). Times go in as Unix seconds through `to_timestamp` and come out
through `epoch`, so no timezone library is involved.

The writer is `attribution.store_writer.StoreWriter` (`call`, `tx`); the SQL lives in one plain
class per query group, each over that one writer. `Store` holds the writer and the groups as
attributes, so callers use one object: `await Store.open(path)`, then
`store.watches.record_deploy(...)`, `store.incidents.begin_action(...)` and the rest:

    store.journal     webhook deliveries, kept once (`store_journal`)
    store.watches     deploys, Watches, transitions, observations (`store_watches`)
    store.prs         merged PRs, agent sessions, the PRs each deploy carried (`store_prs`)
    store.incidents   incidents, suspects, actions, feedback (`store_incidents`)
    store.usage       model tokens and cost per incident (`store_incidents`)
    store.rounds      revert rounds and incident times (`store_rounds`)
    store.evidence    PR files, CI runs, error and alert signals (`store_evidence`)
    store.stats       counts for Rearguard's own metrics (`store_stats`)
    store.reports     PR reviews and the delivery reports' aggregates (`store_reports`)
    store.health      readiness as a real write, and what a start found (`store_health`)
    store.lessons     spec comments and lessons owed, lessons runs (`store_lessons`)
    store.history     finished history appended in bulk (`store_history`)

Reads that span groups in one call (`deploy_summary`: a Watch with its PRs) live here, on the
composition, built from the groups' static row readers.

Exception tree::

    StoreError          the store could not do what was asked (the message says what)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from attribution.records import MergedPR, WatchState
from attribution.store_evidence import EvidenceQueries
from attribution.store_health import HealthQueries
from attribution.store_history import HistoryQueries
from attribution.store_incidents import IncidentQueries, UsageQueries
from attribution.store_journal import JournalQueries
from attribution.store_lessons import LessonsQueries
from attribution.store_prs import PullRequestQueries
from attribution.store_reports import ReportQueries
from attribution.store_rounds import RevertRoundQueries
from attribution.store_stats import StatsQueries
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


def _migrate(cur: duckdb.DuckDBPyConnection) -> None:
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


class Store:
    """The DuckDB file, its one writer and the query groups over it; open with
    `await Store.open(path)`."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.path = writer.path
        self.journal = JournalQueries(writer)
        self.watches = WatchQueries(writer)
        self.prs = PullRequestQueries(writer)
        self.incidents = IncidentQueries(writer)
        self.usage = UsageQueries(writer)
        self.rounds = RevertRoundQueries(writer)
        self.evidence = EvidenceQueries(writer, self.prs)
        self.stats = StatsQueries(writer)
        self.reports = ReportQueries(writer)
        self.health = HealthQueries(writer)
        self.lessons = LessonsQueries(writer)
        self.history = HistoryQueries(writer)

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open (creating if needed) and migrate the store at `path`; log what the previous run
        left behind (`store.health.report_open`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        wal = path.with_name(path.name + ".wal")  # there at open only if the last run crashed
        replayed = wal.stat().st_size if wal.exists() else 0
        try:
            con = await asyncio.to_thread(duckdb.connect, str(path))
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        writer = StoreWriter(con, path)
        await writer.call(_migrate)
        store = cls(writer)
        await store.health.report_open(replayed)
        return store

    async def close(self) -> None:
        """Close the file once the calls already queued have run."""
        await self.writer.close()

    async def deploy_summary(
        self, deploy_id: str
    ) -> tuple[
        WatchState | None, dict[str, Any] | None, list[MergedPR], list[dict[str, Any]], str | None
    ]:
        """What a deploy's view shows besides the deploy, read in one call (the view is polled
        while Watches run, and each call waits its turn on the one writer thread): the Watch, its
        verdict, the PRs, the timeline and the incident's id."""

        def read(cur: duckdb.DuckDBPyConnection) -> Any:
            watch, verdict = WatchQueries.read_watch_verdict(cur, deploy_id)
            incident = cur.execute(
                "SELECT id FROM incidents WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
            return (
                watch,
                verdict,
                PullRequestQueries.read_deploy_prs(cur, deploy_id),
                WatchQueries.read_timeline(cur, deploy_id),
                str(incident[0][0]) if incident else None,
            )

        summary: tuple[
            WatchState | None, dict[str, Any] | None, list[MergedPR], list[dict[str, Any]],
            str | None,
        ] = await self.writer.call(read)  # fmt: skip
        return summary

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query of Rearguard's own (never user SQL) and fetch every row."""
        return await self.writer.call(lambda cur: cur.execute(sql, list(params)).fetchall())
