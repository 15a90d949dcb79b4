"""Revert-round queries (`store.rounds`, schema 006): each round of reverts for an incident, the
deploy that carried it and its outcome, and the incident's times (onset, detection, revert opened,
recovery) from which time-to-revert and time-to-restore are kept.

A round wakes its incident's Watch only while that Watch is in the phase(s) the caller names
(the loop's `Phase.REVERTED`, say): the phases are the loop's, so none is named here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from attribution.records import Incident, IncidentTimes, RevertRound
from attribution.store_writer import StoreWriter, fetch_records

_ROUND_COLUMNS = (
    "r.incident_id, r.round, r.prs, r.action_id, epoch(r.decided_at) AS decided_at, r.reason, "
    "r.deploy_id, r.outcome, epoch(r.outcome_at) AS outcome_at, r.note"
)
_TIMES_COLUMNS = (
    "incident_id, epoch(onset_at) AS onset_at, epoch(detected_at) AS detected_at, "
    "epoch(revert_opened_at) AS revert_opened_at, epoch(recovered_at) AS recovered_at, "
    "time_to_revert, time_to_restore"
)


def _round(*, prs: list[int], **columns: Any) -> RevertRound:
    return RevertRound(prs=tuple(prs), **columns)


def _round_and_detail(*, detail: str | None, **columns: Any) -> tuple[RevertRound, dict[str, Any]]:
    """A round and the detail of its revert action (`{}` when it kept none)."""
    return _round(**columns), json.loads(detail) if detail else {}


class RevertRoundQueries:
    """Revert rounds, their deploys and outcomes, and each incident's recovery times."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    @staticmethod
    def insert_round(cur: duckdb.DuckDBPyConnection, r: RevertRound) -> None:
        """Write a revert round unless it exists; used inside a Watch transition."""
        cur.execute(
            "INSERT INTO revert_rounds VALUES (?, ?, ?, ?, to_timestamp(?), ?, NULL, NULL, NULL, "
            "NULL) ON CONFLICT DO NOTHING",
            [r.incident_id, r.round, list(r.prs), r.action_id, r.decided_at, r.reason],
        )

    async def ensure_round(self, r: RevertRound) -> list[RevertRound]:
        """Write round `r` unless it exists; the incident's rounds as stored after, in one call."""

        def ensure(cur: duckdb.DuckDBPyConnection) -> list[RevertRound]:
            self.insert_round(cur, r)
            return self._read_rounds(cur, r.incident_id)

        return await self._writer.call(ensure)

    async def of_incident(self, incident_id: str) -> list[RevertRound]:
        """An incident's revert rounds, first round first."""
        return await self._writer.call(lambda cur: self._read_rounds(cur, incident_id))

    @staticmethod
    def _read_rounds(cur: duckdb.DuckDBPyConnection, incident_id: str) -> list[RevertRound]:
        return fetch_records(
            cur.execute(
                f"SELECT {_ROUND_COLUMNS} FROM revert_rounds r WHERE r.incident_id = ? "
                "ORDER BY r.round",
                [incident_id],
            ),
            _round,
        )

    async def awaiting_reverts(
        self, service: str, environment: str, *, phase: str
    ) -> list[tuple[RevertRound, dict[str, Any]]]:
        """Rounds whose revert is opened and not yet deployed, with the revert action's detail,
        of incidents whose Watch is in `phase` (the caller's phase of waiting for the revert)."""
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_ROUND_COLUMNS}, a.detail FROM revert_rounds r "
                    "JOIN incidents i ON i.id = r.incident_id "
                    "JOIN watches w ON w.deploy_id = i.deploy_id "
                    "JOIN actions a ON a.id = r.action_id "
                    "WHERE i.service = ? AND i.environment = ? AND w.phase = ? "
                    "AND a.status = 'completed' AND r.deploy_id IS NULL AND r.outcome IS NULL",
                    [service, environment, phase],
                ),
                _round_and_detail,
            )
        )

    async def link_round_deploy(
        self,
        r: RevertRound,
        deploy_id: str,
        watch_of: str,
        *,
        phase: str,
        now: float,
        due: float,
        reason: str,
    ) -> bool:
        """Record that `deploy_id` carries round `r`, and wake the incident's Watch at `due`
        (in the same transaction, and only while that Watch is still in `phase`)."""

        def link(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "UPDATE revert_rounds SET deploy_id = ? WHERE incident_id = ? AND round = ? "
                "AND deploy_id IS NULL RETURNING round",
                [deploy_id, r.incident_id, r.round],
            ).fetchall()
            if rows:
                cur.execute(
                    "UPDATE watches SET next_due = to_timestamp(?), updated_at = to_timestamp(?), "
                    "reason = ? WHERE deploy_id = ? AND phase = ?",
                    [due, now, reason, watch_of, phase],
                )
            return bool(rows)

        return await self._writer.tx(link)

    @staticmethod
    def set_round_outcome(
        cur: duckdb.DuckDBPyConnection, r: RevertRound, outcome: str, now: float, note: str
    ) -> bool:
        """Settle a round once (a later call changes nothing); used inside transactions."""
        rows = cur.execute(
            "UPDATE revert_rounds SET outcome = ?, outcome_at = to_timestamp(?), note = ? "
            "WHERE incident_id = ? AND round = ? AND outcome IS NULL RETURNING round",
            [outcome, now, note, r.incident_id, r.round],
        ).fetchall()
        return bool(rows)

    async def settle_round(
        self,
        r: RevertRound,
        outcome: str,
        *,
        now: float,
        note: str,
        recovered_at: float | None = None,
        feedback: Sequence[tuple[str, str, int | None]] = (),
    ) -> None:
        """Settle a round, with the incident's recovery time and the outcome feedback, at once."""

        def write(cur: duckdb.DuckDBPyConnection) -> None:
            if not self.set_round_outcome(cur, r, outcome, now, note):
                return
            if recovered_at is not None:
                cur.execute(
                    "UPDATE incident_times SET recovered_at = to_timestamp(?), "
                    "time_to_restore = ? - epoch(onset_at) WHERE incident_id = ?",
                    [recovered_at, recovered_at, r.incident_id],
                )
            for key, kind, number in feedback:
                cur.execute(
                    "INSERT INTO feedback VALUES (?, ?, ?, ?, 'rearguard', 'loop', ?, "
                    "to_timestamp(?)) ON CONFLICT DO NOTHING",
                    [key, r.incident_id, kind, number, note, now],
                )

        await self._writer.tx(write)

    async def revert_opened(self, incident: Incident, onset_at: float, now: float) -> None:
        """Keep when the first revert PR was opened (later rounds leave it as it is)."""
        await self._writer.tx(lambda cur: self._revert_opened(cur, incident, onset_at, now))

    @staticmethod
    def _revert_opened(
        cur: duckdb.DuckDBPyConnection, incident: Incident, onset_at: float, now: float
    ) -> None:
        cur.execute(
            "INSERT INTO incident_times VALUES (?, to_timestamp(?), to_timestamp(?), NULL, NULL, "
            "NULL, NULL) ON CONFLICT DO NOTHING",
            [incident.id, onset_at, incident.opened_at],
        )
        cur.execute(
            "UPDATE incident_times SET revert_opened_at = to_timestamp(?), "
            "time_to_revert = ? - epoch(detected_at) "
            "WHERE incident_id = ? AND revert_opened_at IS NULL",
            [now, now, incident.id],
        )

    async def incident_times(self, incident_id: str) -> IncidentTimes | None:
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_TIMES_COLUMNS} FROM incident_times WHERE incident_id = ?",
                    [incident_id],
                ),
                IncidentTimes,
            )
        )
        return found[0] if found else None

    async def close_revert(
        self, key: str, *, phases: Sequence[str], now: float, note: str
    ) -> str | None:
        """A person closed the revert PR for action `key` unmerged: settle its round `closed`,
        stop any retry of the action, and wake the incident's Watch if it is in one of `phases`
        (all in one transaction); the incident id, if known."""

        def close(cur: duckdb.DuckDBPyConnection) -> str | None:
            rows = cur.execute(
                "SELECT r.incident_id, r.round, i.deploy_id FROM revert_rounds r "
                "JOIN incidents i ON i.id = r.incident_id WHERE r.action_id = ?",
                [key],
            ).fetchall()
            if not rows:
                return None
            incident_id, number, watch_of = rows[0]
            cur.execute(
                "UPDATE revert_rounds SET outcome = 'closed', outcome_at = to_timestamp(?), "
                "note = ? WHERE incident_id = ? AND round = ? AND outcome IS NULL",
                [now, note, incident_id, number],
            )
            cur.execute(
                "UPDATE actions SET status = 'skipped', error = ?, updated_at = to_timestamp(?) "
                "WHERE id = ? AND status = 'pending'",
                [note, now, key],
            )
            cur.execute(
                "UPDATE watches SET next_due = to_timestamp(?) WHERE deploy_id = ? "
                "AND list_contains(?, phase)",
                [now, watch_of, list(phases)],
            )
            return str(incident_id)

        return await self._writer.tx(close)
