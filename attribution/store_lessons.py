"""Lessons queries (`store.lessons`, `013_lessons.sql`): what the learning sweep has to do, and
when each repository's lessons were last proposed."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from attribution.feedback import Signal
from attribution.lessons import CONFIRMING
from attribution.store_writer import StoreWriter, fetch_records

assert CONFIRMING == ("confirmed", "recovered")


@dataclass(frozen=True, slots=True)
class LessonsRun:
    """A repository's last lessons run."""

    repo: str
    ran_at: float
    incidents: tuple[str, ...]
    state: str
    url: str | None = None
    error: str | None = None


def _run(*, incidents: list[str], **columns: object) -> LessonsRun:
    return LessonsRun(incidents=tuple(incidents), **columns)  # type: ignore[arg-type]


class LessonsQueries:
    """Confirmed incidents still owed a spec comment, repositories owed lessons, and runs."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def owed_spec_comments(self) -> list[str]:
        """Confirmed incidents (a person's `confirmed`, or `recovered`) whose spec comment
        action is not finished, oldest first."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT f.incident_id FROM feedback f WHERE f.kind IN ('confirmed', 'recovered') "
                "AND NOT EXISTS (SELECT 1 FROM actions a WHERE a.id = 'spec-' || f.incident_id "
                "AND a.status <> 'pending') GROUP BY f.incident_id ORDER BY min(f.created_at)"
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def owed_lessons(self, before: float, retry_before: float) -> list[str]:
        """Repositories with a confirmed incident that their last lessons run did not learn from,
        when that run began before `before` (a day ago), or never ran; and those whose last run
        failed, or never finished (a crash), before `retry_before`."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT DISTINCT s.repo FROM feedback f JOIN suspects s "
                "ON s.incident_id = f.incident_id LEFT JOIN lessons_runs r ON r.repo = s.repo "
                "WHERE f.kind IN ('confirmed', 'recovered') AND (r.repo IS NULL OR "
                "(r.ran_at < to_timestamp(?) AND NOT list_contains(r.incidents, f.incident_id)) "
                "OR (r.state IN ('failed', 'running') AND r.ran_at < to_timestamp(?))) "
                "ORDER BY s.repo",
                [before, retry_before],
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def signals(self, incident_id: str) -> list[Signal]:
        """The outcomes and verdicts on one incident, in the order they were recorded."""
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    "SELECT incident_id, kind, pr_number FROM feedback WHERE incident_id = ? "
                    "ORDER BY created_at, id",
                    [incident_id],
                ),
                Signal,
            )
        )

    async def last_run(self, repo: str) -> LessonsRun | None:
        def read(cur: duckdb.DuckDBPyConnection) -> list[LessonsRun]:
            return fetch_records(
                cur.execute(
                    "SELECT repo, epoch(ran_at) AS ran_at, incidents, state, url, error "
                    "FROM lessons_runs WHERE repo = ?",
                    [repo],
                ),
                _run,
            )

        found = await self._writer.call(read)
        return found[0] if found else None

    async def claim_run(self, repo: str, incidents: list[str], now: float) -> None:
        """Mark a run begun, before any call to the forge (a restart does not run it again)."""
        await self._writer.call(
            lambda cur: cur.execute(
                "INSERT OR REPLACE INTO lessons_runs VALUES (?, to_timestamp(?), ?, 'running', "
                "NULL, NULL)",
                [repo, now, incidents],
            )
        )

    async def finish_run(
        self, repo: str, state: str, *, url: str | None = None, error: str | None = None
    ) -> None:
        await self._writer.call(
            lambda cur: cur.execute(
                "UPDATE lessons_runs SET state = ?, url = ?, error = ? WHERE repo = ?",
                [state, url, error, repo],
            )
        )
