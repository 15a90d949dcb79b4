"""Incident queries (`store.incidents`, and `store.usage`): incidents with their ranked suspects,
the actions taken on each (revert, notify, close: written `pending` first so a crash retries rather
than repeats), the feedback people and the loop give on them, and the model usage spent on them
(tokens and cost of each model call, kept against its incident so the per-incident and per-day
budgets can be checked before the next call).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import duckdb

from attribution.records import Action, ActionStatus, Incident, Suspect
from attribution.store_writer import StoreError, StoreWriter, fetch_records

_INCIDENT_COLUMNS = (
    "id, deploy_id, service, environment, sli, epoch(opened_at) AS opened_at, verdict, "
    "ambiguous, confidence, revert_unit, reason"
)
_SUSPECT_COLUMNS = "repo, number, probability, reason"
_ACTION_COLUMNS = "id, incident_id, kind, status, attempts, url, detail, error"


def _incident(*, verdict: str, revert_unit: list[int], **columns: Any) -> Incident:
    """An incident row (its suspects are read apart)."""
    return Incident(verdict=json.loads(verdict), revert_unit=tuple(revert_unit), **columns)


def _action(*, detail: str | None, **columns: Any) -> Action:
    return Action(detail=json.loads(detail) if detail else None, **columns)


class IncidentQueries:
    """Incidents and suspects, the actions taken on them, and feedback on them."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    @staticmethod
    def insert_incident(cur: duckdb.DuckDBPyConnection, incident: Incident) -> None:
        """Write an incident and its suspects; used inside a Watch transition."""
        cur.execute(
            "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, to_timestamp(?), ?, ?, ?, ?, ?)",
            [
                incident.id,
                incident.deploy_id,
                incident.service,
                incident.environment,
                incident.sli,
                incident.opened_at,
                json.dumps(incident.verdict),
                incident.ambiguous,
                incident.confidence,
                list(incident.revert_unit),
                incident.reason,
            ],
        )
        for rank, s in enumerate(incident.suspects, start=1):
            cur.execute(
                "INSERT INTO suspects VALUES (?, ?, ?, ?, ?, ?)",
                [incident.id, rank, s.repo, s.number, s.probability, s.reason],
            )

    async def incident(self, incident_id: str) -> Incident | None:
        return await self._writer.call(lambda cur: self._read_incident(cur, "id", incident_id))

    async def incident_for_deploy(self, deploy_id: str) -> Incident | None:
        return await self._writer.call(lambda cur: self._read_incident(cur, "deploy_id", deploy_id))

    @staticmethod
    def _read_incident(cur: duckdb.DuckDBPyConnection, column: str, value: str) -> Incident | None:
        found = fetch_records(
            cur.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {column} = ?", [value]),
            _incident,
        )
        if not found:
            return None
        suspects = fetch_records(
            cur.execute(
                f"SELECT {_SUSPECT_COLUMNS} FROM suspects WHERE incident_id = ? ORDER BY rank",
                [found[0].id],
            ),
            Suspect,
        )
        return replace(found[0], suspects=tuple(suspects))

    async def recent(self, limit: int = 100) -> list[Incident]:
        ids = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT id FROM incidents ORDER BY opened_at DESC LIMIT ?", [limit]
            ).fetchall()
        )
        found = [await self.incident(str(i[0])) for i in ids]
        return [i for i in found if i is not None]

    # -- actions -----------------------------------------------------------------------------

    async def begin_action(self, key: str, incident_id: str, kind: str, now: float) -> Action:
        """Write the action `pending` unless it exists; return it as stored, attempts counted.
        An action already ended is only read: a warning that lasts is begun again at every
        evaluation, and two writes cost the writer thread as much as a whole evaluation."""

        def upsert(cur: duckdb.DuckDBPyConnection) -> Action:
            found = self._find_action(cur, key)
            if found is not None and found.status != ActionStatus.PENDING:
                return found
            cur.execute(
                "INSERT INTO actions VALUES (?, ?, ?, 'pending', 0, to_timestamp(?), "
                "to_timestamp(?), NULL, NULL, NULL) ON CONFLICT DO NOTHING",
                [key, incident_id, kind, now, now],
            )
            cur.execute(
                "UPDATE actions SET attempts = attempts + 1, updated_at = to_timestamp(?)"
                " WHERE id = ? AND status = 'pending'",
                [now, key],
            )
            return self._read_action(cur, key)

        return await self._writer.tx(upsert)

    async def finish_action(
        self,
        key: str,
        status: str,
        *,
        now: float,
        url: str | None = None,
        detail: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Action:
        """Mark an action completed, failed or skipped, with what it made or why it failed;
        the action as stored afterwards (read in the same call)."""

        def finish(cur: duckdb.DuckDBPyConnection) -> Action:
            cur.execute(
                "UPDATE actions SET status = ?, updated_at = to_timestamp(?), "
                "url = coalesce(?, url), detail = coalesce(?, detail), error = ? WHERE id = ?",
                [status, now, url, None if detail is None else json.dumps(detail), error, key],
            )
            return self._read_action(cur, key)

        return await self._writer.call(finish)

    async def note_action_error(
        self, key: str, now: float, error: str, *, retry_at: float | None = None
    ) -> None:
        """Keep the last error of a still-pending action (it will be retried), and when it may
        be tried again (`detail.retry_at`, Unix seconds) while it stays pending."""
        detail = None if retry_at is None else json.dumps({"retry_at": retry_at})
        await self._writer.call(
            lambda cur: cur.execute(
                "UPDATE actions SET error = ?, updated_at = to_timestamp(?), "
                "detail = coalesce(?, detail) WHERE id = ?",
                [error, now, detail, key],
            )
        )

    @staticmethod
    def _find_action(cur: duckdb.DuckDBPyConnection, key: str) -> Action | None:
        found = fetch_records(
            cur.execute(f"SELECT {_ACTION_COLUMNS} FROM actions WHERE id = ?", [key]), _action
        )
        return found[0] if found else None

    @classmethod
    def _read_action(cls, cur: duckdb.DuckDBPyConnection, key: str) -> Action:
        found = cls._find_action(cur, key)
        if found is None:
            raise StoreError(f"action {key} is not in the store")
        return found

    async def actions(self, incident_id: str) -> list[Action]:
        keys = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT id FROM actions WHERE incident_id = ? ORDER BY created_at, id",
                [incident_id],
            ).fetchall()
        )
        return await self._writer.call(
            lambda cur: [self._read_action(cur, str(k[0])) for k in keys]
        )

    # -- feedback ------------------------------------------------------------------------------

    async def record_feedback(
        self,
        key: str,
        incident_id: str,
        kind: str,
        *,
        actor: str,
        source: str,
        now: float,
        pr_number: int | None = None,
        note: str | None = None,
    ) -> bool:
        """Keep one outcome or verdict on an incident; False when `key` was already recorded."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, to_timestamp(?)) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [key, incident_id, kind, pr_number, actor, source, note, now],
            ).fetchall()
        )
        return bool(rows)

    async def verdicts(self, incident_id: str) -> list[tuple[str, int | None, str]]:
        """People's verdicts on an incident, oldest first: (kind, PR number, actor)."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT kind, pr_number, actor FROM feedback WHERE incident_id = ? "
                "AND kind IN ('confirmed', 'false_alarm', 'wrong_pr') ORDER BY created_at, id",
                [incident_id],
            ).fetchall()
        )
        return [(str(k), None if n is None else int(n), str(a)) for k, n, a in rows]


class UsageQueries:
    """Tokens and USD spent on model calls, per incident and over time."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record(
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

        await self._writer.tx(insert)

    async def spent(
        self, *, incident_id: str | None = None, since: float | None = None
    ) -> tuple[int, float]:
        """Tokens and USD spent on one incident, or on all since `since` (Unix seconds)."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT coalesce(sum(input_tokens + output_tokens), 0), coalesce(sum(cost_usd), 0)"
                " FROM llm_usage WHERE (? IS NULL OR incident_id = ?)"
                " AND (? IS NULL OR created_at >= to_timestamp(?))",
                [incident_id, incident_id, since, since],
            ).fetchall()
        )
        return int(rows[0][0]), float(rows[0][1])
