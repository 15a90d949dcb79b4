"""Deploy and Watch queries (`store.watches`): the deploys seen, each one's Watch (phase, next step
due, verdict), its transition history, and the per-SLI observations each evaluation kept.

A Watch moves only through `transition`, a compare-and-set on its phase (and the version its step
read) inside one transaction, with the rows that belong to the move, so two steps of the same Watch
can never both win; moves submitted together share one transaction (`attribution.store_moves`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import duckdb

from attribution.records import Deploy, WatchState
from attribution.store_moves import MOVE_WAIT, OBSERVATION_COLUMNS, Move, write_moves
from attribution.store_writer import StoreWriter, fetch_records
from attribution.watch_rows import KeptBaselines, WatchRow

_DEPLOY_COLUMNS = (
    "d.id, d.service, d.environment, d.sha, epoch(d.finished_at) AS finished_at, d.source, "
    "d.repo, d.previous_sha, epoch(d.started_at) AS started_at, d.url"
)
_WATCH_COLUMNS = (
    "w.deploy_id, w.phase, epoch(w.next_due) AS next_due, w.reason, w.version, w.evaluations"
)
_OBSERVATION_READ = ", ".join(
    c if c != "observed_at" else "epoch(observed_at) AS observed_at" for c in OBSERVATION_COLUMNS
)


def _watch_and_deploy(**columns: Any) -> tuple[WatchState, Deploy]:
    """A row of `_WATCH_COLUMNS` and `_DEPLOY_COLUMNS` (no field name in both) as its records."""
    watch = {f.name: columns.pop(f.name) for f in fields(WatchState)}
    return WatchState(**watch), Deploy(**columns)


def _watch_and_verdict(
    *, verdict: str | None, **columns: Any
) -> tuple[WatchState, dict[str, Any] | None]:
    return WatchState(**columns), json.loads(verdict) if verdict else None


def _observation(*, queries: str | None, windows: str | None, **columns: Any) -> dict[str, Any]:
    """One SLI's kept result, its JSON columns decoded (in `OBSERVATION_COLUMNS` order)."""
    return columns | {
        "queries": json.loads(queries) if queries else None,
        "windows": json.loads(windows) if windows else None,
    }


class WatchQueries:
    """Deploys, their Watches and transitions, and the observations kept while watching."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._moves = writer.group(write_moves, max_wait=MOVE_WAIT, ahead=True)

    async def record_deploy(self, deploy: Deploy, phase: str, now: float) -> bool:
        """Insert a deploy and its Watch in one transaction; False if the id already exists."""
        created = await self._writer.tx(lambda cur: self.write_deploys(cur, [deploy], phase, now))
        return created[0]

    @staticmethod
    def write_deploys(
        cur: duckdb.DuckDBPyConnection, deploys: Sequence[Deploy], phase: str, now: float
    ) -> list[bool]:
        """Insert deploys, each new one with its Watch (in `phase`, due `now`) and first
        transition, one statement per table however many there are (the journal writes a batch's
        deploys here); per deploy, whether it was new (of one id listed twice, the first)."""
        if not deploys:
            return []
        new = {
            str(row[0])
            for row in cur.execute(
                "INSERT INTO deploys SELECT r.id, r.service, r.environment, r.repo, r.sha, "
                "r.previous_sha, to_timestamp(r.started_at), to_timestamp(r.finished_at), r.url, "
                "r.source, to_timestamp(?) FROM (SELECT unnest(?) AS r) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [now, [asdict(d) for d in deploys]],
            ).fetchall()
        }
        created = []
        for deploy in deploys:
            created.append(deploy.id in new)
            new.discard(deploy.id)
        fresh = [d for d, made in zip(deploys, created, strict=True) if made]
        if fresh:
            rows = [{"id": d.id, "reason": f"deploy recorded from {d.source}"} for d in fresh]
            cur.execute(
                "INSERT INTO watches (deploy_id, phase, next_due, updated_at, version) "
                "SELECT r.id, ?, to_timestamp(?), to_timestamp(?), 0 FROM (SELECT unnest(?) AS r)",
                [phase, now, now, rows],
            )
            cur.execute(
                "INSERT INTO transitions SELECT r.id, 0, NULL, ?, to_timestamp(?), r.reason "
                "FROM (SELECT unnest(?) AS r)",
                [phase, now, rows],
            )
        return created

    async def deploy(self, deploy_id: str) -> Deploy | None:
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(f"SELECT {_DEPLOY_COLUMNS} FROM deploys d WHERE d.id = ?", [deploy_id]),
                Deploy,
            )
        )
        return found[0] if found else None

    async def deploys(self, limit: int = 100) -> list[Deploy]:
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_DEPLOY_COLUMNS} FROM deploys d ORDER BY d.finished_at DESC LIMIT ?",
                    [limit],
                ),
                Deploy,
            )
        )

    async def latest_of_commit(self, service: str, environment: str, sha: str) -> Deploy | None:
        """The latest deploy of commit `sha` of `service` in `environment` (the Argo Rollouts
        gate's Watch of a canary)."""
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_DEPLOY_COLUMNS} FROM deploys d WHERE d.service = ? "
                    "AND d.environment = ? AND d.sha = ? ORDER BY d.finished_at DESC LIMIT 1",
                    [service, environment, sha],
                ),
                Deploy,
            )
        )
        return found[0] if found else None

    async def service_deploys(self, service: str, since: float) -> list[Deploy]:
        """A service's deploys finished at or after `since` (Unix seconds), oldest first."""
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_DEPLOY_COLUMNS} FROM deploys d WHERE d.service = ? "
                    "AND d.finished_at >= to_timestamp(?) ORDER BY d.finished_at, d.id",
                    [service, since],
                ),
                Deploy,
            )
        )

    async def previous_deploy(self, deploy: Deploy) -> Deploy | None:
        """The latest earlier deploy of the same service and environment."""
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_DEPLOY_COLUMNS} FROM deploys d WHERE d.service = ? "
                    "AND d.environment = ? AND d.finished_at < to_timestamp(?) AND d.id <> ? "
                    "ORDER BY d.finished_at DESC LIMIT 1",
                    [deploy.service, deploy.environment, deploy.finished_at, deploy.id],
                ),
                Deploy,
            )
        )
        return found[0] if found else None

    async def watch(self, deploy_id: str) -> WatchState | None:
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_WATCH_COLUMNS} FROM watches w WHERE w.deploy_id = ?", [deploy_id]
                ),
                WatchState,
            )
        )
        return found[0] if found else None

    async def watch_deploy(self, deploy_id: str) -> tuple[WatchState, Deploy] | None:
        """A Watch and its deploy in one read (the start of every Watch step)."""
        found = await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_WATCH_COLUMNS}, {_DEPLOY_COLUMNS} FROM watches w "
                    "JOIN deploys d ON d.id = w.deploy_id WHERE w.deploy_id = ?",
                    [deploy_id],
                ),
                _watch_and_deploy,
            )
        )
        return found[0] if found else None

    @staticmethod
    def read_watch_verdict(
        cur: duckdb.DuckDBPyConnection, deploy_id: str
    ) -> tuple[WatchState | None, dict[str, Any] | None]:
        """A Watch and its last verdict, read on `cur` (by `Store.deploy_summary`)."""
        found = fetch_records(
            cur.execute(
                f"SELECT {_WATCH_COLUMNS}, w.verdict FROM watches w WHERE w.deploy_id = ?",
                [deploy_id],
            ),
            _watch_and_verdict,
        )
        return found[0] if found else (None, None)

    async def due_watches(
        self, phases: Sequence[str], now: float, *, with_next: bool = False
    ) -> list[WatchState]:
        """Watches in one of `phases` whose next step is due, oldest first; `with_next`: and
        those due next after `now` (the earliest `next_due` to come), so that the scheduler knows
        how long to sleep without reading every Watch due within a tick at each wake."""
        after = (
            "OR w.next_due = (SELECT min(next_due) FROM watches WHERE list_contains(?, phase) "
            "AND next_due > to_timestamp(?))"
            if with_next
            else ""
        )
        params = [list(phases), now] + ([list(phases), now] if with_next else [])
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_WATCH_COLUMNS} FROM watches w WHERE list_contains(?, w.phase) "
                    f"AND (w.next_due <= to_timestamp(?) {after}) ORDER BY w.next_due",
                    params,
                ),
                WatchState,
            )
        )

    async def transition(
        self,
        deploy_id: str,
        from_phase: str,
        to_phase: str,
        *,
        now: float,
        next_due: float,
        reason: str,
        verdict: dict[str, Any] | None = None,
        rows: Sequence[WatchRow] = (),
        version: int | None = None,
    ) -> bool:
        """Move a Watch from `from_phase` to `to_phase`, writing `rows` in the same transaction;
        the Watch's version goes up by one.

        False, and nothing written, when the Watch is no longer in `from_phase` (or, with
        `version`, no longer at that version). The move shares its transaction with the moves
        of other Watches submitted with it (`attribution.store_moves`).
        """
        return await self._moves.submit(Move(
            deploy_id, from_phase, to_phase, now, next_due, reason,
            None if verdict is None else json.dumps(verdict), rows, version,
        ))  # fmt: skip

    async def kept_baselines(self, deploy_id: str) -> list[KeptBaselines]:
        """The baselines a Watch kept (one per SLI), to read back after a restart."""

        def read(cur: duckdb.DuckDBPyConnection) -> list[KeptBaselines]:
            rows = cur.execute(
                "SELECT sli, plan, baselines, spans, epoch(read_at) FROM watch_baselines "
                "WHERE deploy_id = ? ORDER BY sli",
                [deploy_id],
            ).fetchall()
            return [
                KeptBaselines(deploy_id, sli, json.loads(plan), json.loads(points),
                              json.loads(spans), float(read_at))
                for sli, plan, points, spans, read_at in rows
            ]  # fmt: skip

        return await self._writer.call(read)

    async def timeline(self, deploy_id: str) -> list[dict[str, Any]]:
        return await self._writer.call(lambda cur: self.read_timeline(cur, deploy_id))

    @staticmethod
    def read_timeline(cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[dict[str, Any]]:
        """A Watch's transitions in order, read on `cur` (also by `Store.deploy_summary`)."""
        return fetch_records(
            cur.execute(
                'SELECT seq, from_phase AS "from", to_phase AS "to", epoch(changed_at) AS "at", '
                "reason FROM transitions WHERE deploy_id = ? ORDER BY seq",
                [deploy_id],
            ),
            dict,
        )

    async def watch_verdict(self, deploy_id: str) -> dict[str, Any] | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT verdict FROM watches WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
        )
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    # -- observations ------------------------------------------------------------------------

    async def observations(self, deploy_id: str, latest_only: bool = True) -> list[dict[str, Any]]:
        """Kept evaluations of a deploy, oldest first; only the last evaluation by default."""
        where = "deploy_id = ?" + (
            " AND seq = (SELECT max(seq) FROM observations WHERE deploy_id = ?)"
            if latest_only
            else ""
        )
        params = [deploy_id, deploy_id] if latest_only else [deploy_id]
        return await self._writer.call(
            lambda cur: fetch_records(
                cur.execute(
                    f"SELECT {_OBSERVATION_READ} FROM observations WHERE {where} ORDER BY seq, sli",
                    params,
                ),
                _observation,
            )
        )

    async def observation_count(self, deploy_id: str) -> int:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT count(DISTINCT seq) FROM observations WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
        )
        return int(rows[0][0])
