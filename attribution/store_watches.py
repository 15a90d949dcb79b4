"""Deploy and Watch queries: the deploys seen, each one's Watch (phase, next step due, verdict),
its transition history, and the per-SLI observations each evaluation kept.

A Watch moves only through `transition`, a compare-and-set on the current phase inside one
transaction, so two steps of the same Watch can never both win.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from attribution.records import Deploy, WatchState
from attribution.store_writer import StoreWriter

_OBSERVATION_COLUMNS = (
    "deploy_id", "seq", "observed_at", "sli", "status", "reason", "baseline_value",
    "watch_value", "baseline_bad", "baseline_total", "watch_bad", "watch_total", "statistic",
    "threshold", "effect", "null_value", "onset", "mode", "queries", "windows",
)  # fmt: skip


def _json_or_value(value: Any) -> Any:
    """Dicts and lists go into JSON columns as text; everything else is bound as it is."""
    return json.dumps(value) if isinstance(value, dict | list) else value


class WatchQueries:
    """Deploys, their Watches and transitions, and the observations kept while watching."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record_deploy(self, deploy: Deploy, phase: str, now: float) -> bool:
        """Insert a deploy and its Watch in one transaction; False if the id already exists."""

        def insert(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "INSERT INTO deploys VALUES (?, ?, ?, ?, ?, ?, to_timestamp(?), to_timestamp(?), "
                "?, ?, to_timestamp(?)) ON CONFLICT DO NOTHING RETURNING id",
                [
                    deploy.id,
                    deploy.service,
                    deploy.environment,
                    deploy.repo,
                    deploy.sha,
                    deploy.previous_sha,
                    deploy.started_at,
                    deploy.finished_at,
                    deploy.url,
                    deploy.source,
                    now,
                ],
            ).fetchall()
            if not rows:
                return False
            cur.execute(
                "INSERT INTO watches VALUES (?, ?, to_timestamp(?), to_timestamp(?), NULL, NULL)",
                [deploy.id, phase, now, now],
            )
            cur.execute(
                "INSERT INTO transitions VALUES (?, 0, NULL, ?, to_timestamp(?), ?)",
                [deploy.id, phase, now, f"deploy recorded from {deploy.source}"],
            )
            return True

        return await self._writer.tx(insert)

    _DEPLOY_COLS = (
        "id, service, environment, sha, epoch(finished_at), source, repo, "
        "previous_sha, epoch(started_at), url"
    )

    async def deploy(self, deploy_id: str) -> Deploy | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE id = ?", [deploy_id]
            ).fetchall()
        )
        return Deploy(*rows[0]) if rows else None

    async def deploys(self, limit: int = 100) -> list[Deploy]:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys ORDER BY finished_at DESC LIMIT ?",
                [limit],
            ).fetchall()
        )
        return [Deploy(*r) for r in rows]

    async def service_deploys(self, service: str, since: float) -> list[Deploy]:
        """A service's deploys finished at or after `since` (Unix seconds), oldest first."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE service = ? "
                "AND finished_at >= to_timestamp(?) ORDER BY finished_at, id",
                [service, since],
            ).fetchall()
        )
        return [Deploy(*r) for r in rows]

    async def previous_deploy(self, deploy: Deploy) -> Deploy | None:
        """The latest earlier deploy of the same service and environment."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE service = ? AND environment = ? "
                "AND finished_at < to_timestamp(?) AND id <> ? ORDER BY finished_at DESC LIMIT 1",
                [deploy.service, deploy.environment, deploy.finished_at, deploy.id],
            ).fetchall()
        )
        return Deploy(*rows[0]) if rows else None

    async def watch(self, deploy_id: str) -> WatchState | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT deploy_id, phase, epoch(next_due), reason FROM watches WHERE deploy_id = ?",
                [deploy_id],
            ).fetchall()
        )
        return WatchState(*rows[0]) if rows else None

    async def watch_deploy(self, deploy_id: str) -> tuple[WatchState, Deploy] | None:
        """A Watch and its deploy in one read (the start of every Watch step)."""
        cols = ", ".join(f"d.{c}" if "(" not in c else c.replace("(", "(d.")
                         for c in self._DEPLOY_COLS.split(", "))  # fmt: skip
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT w.deploy_id, w.phase, epoch(w.next_due), w.reason, "
                f"{cols} FROM watches w JOIN deploys d ON d.id = w.deploy_id "
                "WHERE w.deploy_id = ?",
                [deploy_id],
            ).fetchall()
        )
        return (WatchState(*rows[0][:4]), Deploy(*rows[0][4:])) if rows else None

    async def due_watches(self, phases: Sequence[str], now: float) -> list[WatchState]:
        """Watches in one of `phases` whose next step is due, oldest first."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT deploy_id, phase, epoch(next_due), reason FROM watches "
                "WHERE list_contains(?, phase) AND next_due <= to_timestamp(?) ORDER BY next_due",
                [list(phases), now],
            ).fetchall()
        )
        return [WatchState(*r) for r in rows]

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
        also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    ) -> bool:
        """Move a Watch from `from_phase` to `to_phase` (with `also` in the same transaction).

        False, and nothing written, when the Watch is no longer in `from_phase`.
        """

        def move(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "UPDATE watches SET phase = ?, next_due = to_timestamp(?), "
                "updated_at = to_timestamp(?), reason = ?, verdict = coalesce(?, verdict) "
                "WHERE deploy_id = ? AND phase = ? RETURNING deploy_id",
                [
                    to_phase,
                    next_due,
                    now,
                    reason,
                    None if verdict is None else json.dumps(verdict),
                    deploy_id,
                    from_phase,
                ],
            ).fetchall()
            if not rows:
                return False
            if from_phase != to_phase:
                cur.execute(
                    "INSERT INTO transitions SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, "
                    "to_timestamp(?), ? FROM transitions WHERE deploy_id = ?",
                    [deploy_id, from_phase, to_phase, now, reason, deploy_id],
                )
            if also is not None:
                also(cur)
            return True

        return await self._writer.tx(move)

    async def timeline(self, deploy_id: str) -> list[dict[str, Any]]:
        return await self._writer.call(lambda cur: self.read_timeline(cur, deploy_id))

    @staticmethod
    def read_timeline(cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[dict[str, Any]]:
        """A Watch's transitions in order, read on `cur` (also by `Store.deploy_summary`)."""
        rows = cur.execute(
            "SELECT seq, from_phase, to_phase, epoch(changed_at), reason FROM transitions "
            "WHERE deploy_id = ? ORDER BY seq",
            [deploy_id],
        ).fetchall()
        return [{"seq": r[0], "from": r[1], "to": r[2], "at": r[3], "reason": r[4]} for r in rows]

    async def watch_verdict(self, deploy_id: str) -> dict[str, Any] | None:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT verdict FROM watches WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
        )
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    # -- observations ------------------------------------------------------------------------

    async def record_observations(
        self, deploy_id: str, observed_at: float, results: Sequence[dict[str, Any]]
    ) -> None:
        """Keep one evaluation's per-SLI results (counts, rates, statistic, threshold)."""
        await self._writer.tx(
            lambda cur: self.insert_observations(cur, deploy_id, observed_at, results)
        )

    @staticmethod
    def insert_observations(
        cur: duckdb.DuckDBPyConnection,
        deploy_id: str,
        observed_at: float,
        results: Sequence[dict[str, Any]],
    ) -> None:
        """Write one evaluation's rows under the deploy's next `seq`, all in one INSERT; used
        inside the Watch's transition so that an evaluation and its transition are one fact."""
        if not results:
            return
        seq = cur.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM observations WHERE deploy_id = ?", [deploy_id]
        ).fetchall()[0][0]
        row = "(?, ?, to_timestamp(?), " + ", ".join("?" * (len(_OBSERVATION_COLUMNS) - 3)) + ")"
        params: list[Any] = []
        for r in results:
            params += [deploy_id, seq, observed_at]
            params += [_json_or_value(r.get(c)) for c in _OBSERVATION_COLUMNS[3:]]
        cur.execute(
            f"INSERT INTO observations ({', '.join(_OBSERVATION_COLUMNS)}) VALUES "
            + ", ".join([row] * len(results)),
            params,
        )

    async def observations(self, deploy_id: str, latest_only: bool = True) -> list[dict[str, Any]]:
        """Kept evaluations of a deploy, oldest first; only the last evaluation by default."""
        columns = ", ".join(
            c if c != "observed_at" else "epoch(observed_at)" for c in _OBSERVATION_COLUMNS
        )
        where = "deploy_id = ?" + (
            " AND seq = (SELECT max(seq) FROM observations WHERE deploy_id = ?)"
            if latest_only
            else ""
        )
        params = [deploy_id, deploy_id] if latest_only else [deploy_id]
        rows = await self._writer.call(
            lambda cur: cur.execute(
                f"SELECT {columns} FROM observations WHERE {where} ORDER BY seq, sli", params
            ).fetchall()
        )
        out = []
        for row in rows:
            item = dict(zip(_OBSERVATION_COLUMNS, row, strict=True))
            for key in ("queries", "windows"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    async def observation_count(self, deploy_id: str) -> int:
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT count(DISTINCT seq) FROM observations WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
        )
        return int(rows[0][0])
