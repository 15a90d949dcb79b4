"""The DuckDB store: schema migrations and all of Rearguard's SQL, behind one writer.

Every call runs on one dedicated thread with its own cursor, so there is exactly one writer and
writes are ordered; callers `await` it from the event loop. Results are fetched fully inside the
call (DuckDB 2.0 streams results). Times go in as Unix seconds through `to_timestamp` and come out
through `epoch`, so no timezone library is involved.

Exception tree::

    StoreError          the store could not do what was asked (the message says what)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from opentelemetry import trace

from attribution.records import (
    Action,
    AgentIdentity,
    Deploy,
    Incident,
    IncidentTimes,
    MergedPR,
    RevertRound,
    Suspect,
    WatchState,
)

T = TypeVar("T")
_tracer = trace.get_tracer("rearguard.store")


class StoreError(Exception):
    """A store operation failed; the message names the operation."""


_OBSERVATION_COLUMNS = (
    "deploy_id", "seq", "observed_at", "sli", "status", "reason", "baseline_value",
    "watch_value", "baseline_bad", "baseline_total", "watch_bad", "watch_total", "statistic",
    "threshold", "effect", "null_value", "onset", "mode", "queries", "windows",
)  # fmt: skip


def _json_or_value(value: Any) -> Any:
    """Dicts and lists go into JSON columns as text; everything else is bound as it is."""
    return json.dumps(value) if isinstance(value, dict | list) else value


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("attribution") / "schema"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text()))
    return sorted(found)


class Store:
    """The single writer of the DuckDB file; open with `await Store.open(path)`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rearguard-store")
        self._lock = threading.Lock()

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

    async def close(self) -> None:
        await self._call(lambda cur: self._con.close())
        self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        times: list[float] = []

        def run() -> T:
            times.append(time.perf_counter())
            with self._lock:
                cur = self._con.cursor()
                try:
                    return fn(cur)
                except duckdb.Error as exc:
                    raise StoreError(f"{getattr(fn, '__name__', 'store call')}: {exc}") from exc
                finally:
                    cur.close()
                    times.append(time.perf_counter())

        with _tracer.start_as_current_span("store.call") as span:
            span.set_attribute("rearguard.store.op", getattr(fn, "__name__", "call"))
            submitted = time.perf_counter()
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, run)
            finally:
                # The span is the caller's wait; these say how much of it was the writer queue
                # (other calls ahead on the one writer thread) and how much DuckDB's own work.
                if len(times) == 2:  # noqa: PLR2004 - started and ended
                    span.set_attribute("rearguard.store.queued_seconds", times[0] - submitted)
                    span.set_attribute("rearguard.store.run_seconds", times[1] - times[0])

    async def _tx(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` in one transaction: all of it is written, or none."""

        def wrapped(cur: duckdb.DuckDBPyConnection) -> T:
            cur.execute("BEGIN TRANSACTION")
            try:
                result = fn(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            return result

        wrapped.__name__ = getattr(fn, "__name__", "transaction")
        return await self._call(wrapped)

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

    # -- journal -----------------------------------------------------------------------------

    async def journal(
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

        return await self._call(insert)

    async def mark_journal(self, source: str, delivery: str, status: str) -> None:
        """Move a journaled delivery on (`accepted` -> `applied` once its effect is stored)."""
        await self._call(
            lambda cur: cur.execute(
                "UPDATE journal SET status = ? WHERE id = ?", [status, f"{source}:{delivery}"]
            )
        )

    async def journal_status(self, source: str, delivery: str) -> str | None:
        rows = await self._call(
            lambda cur: cur.execute(
                "SELECT status FROM journal WHERE id = ?", [f"{source}:{delivery}"]
            ).fetchall()
        )
        return str(rows[0][0]) if rows else None

    # -- deploys and watches -----------------------------------------------------------------

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

        return await self._tx(insert)

    _DEPLOY_COLS = (
        "id, service, environment, sha, epoch(finished_at), source, repo, "
        "previous_sha, epoch(started_at), url"
    )

    async def deploy(self, deploy_id: str) -> Deploy | None:
        rows = await self._call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE id = ?", [deploy_id]
            ).fetchall()
        )
        return Deploy(*rows[0]) if rows else None

    async def deploys(self, limit: int = 100) -> list[Deploy]:
        rows = await self._call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys ORDER BY finished_at DESC LIMIT ?",
                [limit],
            ).fetchall()
        )
        return [Deploy(*r) for r in rows]

    async def service_deploys(self, service: str, since: float) -> list[Deploy]:
        """A service's deploys finished at or after `since` (Unix seconds), oldest first."""
        rows = await self._call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE service = ? "
                "AND finished_at >= to_timestamp(?) ORDER BY finished_at, id",
                [service, since],
            ).fetchall()
        )
        return [Deploy(*r) for r in rows]

    async def previous_deploy(self, deploy: Deploy) -> Deploy | None:
        """The latest earlier deploy of the same service and environment."""
        rows = await self._call(
            lambda cur: cur.execute(
                f"SELECT {self._DEPLOY_COLS} FROM deploys WHERE service = ? AND environment = ? "
                "AND finished_at < to_timestamp(?) AND id <> ? ORDER BY finished_at DESC LIMIT 1",
                [deploy.service, deploy.environment, deploy.finished_at, deploy.id],
            ).fetchall()
        )
        return Deploy(*rows[0]) if rows else None

    async def watch(self, deploy_id: str) -> WatchState | None:
        rows = await self._call(
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
        rows = await self._call(
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
        rows = await self._call(
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

        return await self._tx(move)

    async def timeline(self, deploy_id: str) -> list[dict[str, Any]]:
        return await self._call(lambda cur: self._timeline(cur, deploy_id))

    @staticmethod
    def _timeline(cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[dict[str, Any]]:
        rows = cur.execute(
            "SELECT seq, from_phase, to_phase, epoch(changed_at), reason FROM transitions "
            "WHERE deploy_id = ? ORDER BY seq",
            [deploy_id],
        ).fetchall()
        return [{"seq": r[0], "from": r[1], "to": r[2], "at": r[3], "reason": r[4]} for r in rows]

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
                "SELECT deploy_id, phase, epoch(next_due), reason, verdict FROM watches "
                "WHERE deploy_id = ?",
                [deploy_id],
            ).fetchall()
            incident = cur.execute(
                "SELECT id FROM incidents WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
            return (
                WatchState(*watch[0][:4]) if watch else None,
                json.loads(watch[0][4]) if watch and watch[0][4] else None,
                self._deploy_prs(cur, deploy_id),
                self._timeline(cur, deploy_id),
                str(incident[0][0]) if incident else None,
            )

        summary: tuple[
            WatchState | None, dict[str, Any] | None, list[MergedPR], list[dict[str, Any]],
            str | None,
        ] = await self._call(read)  # fmt: skip
        return summary

    async def watch_verdict(self, deploy_id: str) -> dict[str, Any] | None:
        rows = await self._call(
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
        await self._tx(lambda cur: self.insert_observations(cur, deploy_id, observed_at, results))

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
        rows = await self._call(
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
        rows = await self._call(
            lambda cur: cur.execute(
                "SELECT count(DISTINCT seq) FROM observations WHERE deploy_id = ?", [deploy_id]
            ).fetchall()
        )
        return int(rows[0][0])

    # -- pull requests and agent sessions ----------------------------------------------------

    async def record_pr(self, pr: MergedPR, now: float) -> None:
        """Insert or refresh a merged PR, and its agent session when it names one."""
        ident = pr.identity

        def upsert(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute(
                "INSERT OR REPLACE INTO pull_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "to_timestamp(?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_timestamp(?))",
                [
                    pr.repo,
                    pr.number,
                    pr.title,
                    pr.author,
                    pr.url,
                    pr.merge_sha,
                    pr.head_sha,
                    pr.base_ref,
                    pr.merged_at,
                    pr.body,
                    list(pr.labels),
                    list(pr.files),
                    pr.node_id,
                    ident.kind,
                    ident.name,
                    ident.session,
                    ident.model,
                    ident.role,
                    ident.spec,
                    ident.tokens,
                    ident.cost_usd,
                    now,
                ],
            )
            if ident.session:
                cur.execute(
                    "INSERT INTO agent_sessions VALUES (?, ?, ?, ?, to_timestamp(?), ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        ident.session,
                        ident.name,
                        ident.model,
                        ident.role,
                        now,
                        ident.tokens,
                        ident.cost_usd,
                    ],
                )

        await self._tx(upsert)

    _PR_COLS = (
        "repo, number, title, author, url, merge_sha, head_sha, base_ref, "
        "epoch(merged_at), body, labels, files, node_id, author_kind, agent_name, "
        "agent_session, agent_model, agent_role, spec, tokens, cost_usd"
    )

    @staticmethod
    def _pr(row: Sequence[Any]) -> MergedPR:
        identity = AgentIdentity(*row[13:21])
        return MergedPR(
            repo=row[0],
            number=row[1],
            title=row[2],
            author=row[3],
            url=row[4],
            merge_sha=row[5],
            head_sha=row[6],
            base_ref=row[7],
            merged_at=row[8],
            body=row[9],
            labels=tuple(row[10]),
            files=tuple(row[11]),
            node_id=row[12],
            identity=identity,
        )

    async def prs(self, repo: str, numbers: Sequence[int] | None = None) -> list[MergedPR]:
        """PRs of `repo` (all, or those numbered), oldest merge first."""
        sql = f"SELECT {self._PR_COLS} FROM pull_requests WHERE repo = ?"
        params: list[Any] = [repo]
        if numbers is not None:
            sql += " AND list_contains(?, number)"
            params.append(list(numbers))
        rows = await self._call(
            lambda cur: cur.execute(sql + " ORDER BY merged_at", params).fetchall()
        )
        return [self._pr(r) for r in rows]

    async def set_deploy_prs(self, deploy_id: str, repo: str, numbers: Sequence[int]) -> None:
        def write(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("DELETE FROM deploy_prs WHERE deploy_id = ?", [deploy_id])
            for n in numbers:
                cur.execute("INSERT INTO deploy_prs VALUES (?, ?, ?)", [deploy_id, repo, n])

        await self._tx(write)

    async def deploy_prs(self, deploy_id: str) -> list[MergedPR]:
        return await self._call(lambda cur: self._deploy_prs(cur, deploy_id))

    @classmethod
    def _deploy_prs(cls, cur: duckdb.DuckDBPyConnection, deploy_id: str) -> list[MergedPR]:
        cols = ", ".join(
            f"p.{c.strip()}" if "(" not in c else c.replace("(", "(p.")
            for c in cls._PR_COLS.split(",")
        )
        rows = cur.execute(
            f"SELECT {cols} FROM deploy_prs d JOIN pull_requests p "
            "ON p.repo = d.repo AND p.number = d.number WHERE d.deploy_id = ? "
            "ORDER BY p.merged_at",
            [deploy_id],
        ).fetchall()
        return [cls._pr(r) for r in rows]

    # -- incidents and suspects --------------------------------------------------------------

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
        return await self._call(lambda cur: self._incident(cur, "id", incident_id))

    async def incident_for_deploy(self, deploy_id: str) -> Incident | None:
        return await self._call(lambda cur: self._incident(cur, "deploy_id", deploy_id))

    @staticmethod
    def _incident(cur: duckdb.DuckDBPyConnection, column: str, value: str) -> Incident | None:
        rows = cur.execute(
            "SELECT id, deploy_id, service, environment, sli, epoch(opened_at), verdict, "
            f"ambiguous, confidence, revert_unit, reason FROM incidents WHERE {column} = ?",
            [value],
        ).fetchall()
        if not rows:
            return None
        r = rows[0]
        suspects = cur.execute(
            "SELECT repo, number, probability, reason FROM suspects WHERE incident_id = ? "
            "ORDER BY rank",
            [r[0]],
        ).fetchall()
        return Incident(
            id=r[0],
            deploy_id=r[1],
            service=r[2],
            environment=r[3],
            sli=r[4],
            opened_at=r[5],
            verdict=json.loads(r[6]),
            ambiguous=r[7],
            confidence=r[8],
            revert_unit=tuple(r[9]),
            reason=r[10],
            suspects=tuple(Suspect(*s) for s in suspects),
        )

    async def incidents(self, limit: int = 100) -> list[Incident]:
        ids = await self._call(
            lambda cur: cur.execute(
                "SELECT id FROM incidents ORDER BY opened_at DESC LIMIT ?", [limit]
            ).fetchall()
        )
        found = [await self.incident(str(i[0])) for i in ids]
        return [i for i in found if i is not None]

    # -- actions -----------------------------------------------------------------------------

    async def begin_action(self, key: str, incident_id: str, kind: str, now: float) -> Action:
        """Write the action `pending` unless it exists; return it as stored, attempts counted."""

        def upsert(cur: duckdb.DuckDBPyConnection) -> Action:
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
            return self._action(cur, key)

        return await self._tx(upsert)

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
            return self._action(cur, key)

        return await self._call(finish)

    async def note_action_error(self, key: str, now: float, error: str) -> None:
        """Keep the last error of a still-pending action (it will be retried)."""
        await self._call(
            lambda cur: cur.execute(
                "UPDATE actions SET error = ?, updated_at = to_timestamp(?) WHERE id = ?",
                [error, now, key],
            )
        )

    @staticmethod
    def _action(cur: duckdb.DuckDBPyConnection, key: str) -> Action:
        r = cur.execute(
            "SELECT id, incident_id, kind, status, attempts, url, detail, error "
            "FROM actions WHERE id = ?",
            [key],
        ).fetchall()[0]
        return Action(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None, r[7])

    async def actions(self, incident_id: str) -> list[Action]:
        keys = await self._call(
            lambda cur: cur.execute(
                "SELECT id FROM actions WHERE incident_id = ? ORDER BY created_at, id",
                [incident_id],
            ).fetchall()
        )
        return await self._call(lambda cur: [self._action(cur, str(k[0])) for k in keys])

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
        rows = await self._call(
            lambda cur: cur.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, to_timestamp(?)) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [key, incident_id, kind, pr_number, actor, source, note, now],
            ).fetchall()
        )
        return bool(rows)

    # -- model usage ---------------------------------------------------------------------------

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

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query of Rearguard's own (never user SQL) and fetch every row."""
        return await self._call(lambda cur: cur.execute(sql, list(params)).fetchall())

    # -- revert rounds and recovery (schema 006) -----------------------------------------------

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
            return self._rounds(cur, r.incident_id)

        return await self._call(ensure)

    _ROUND_COLS = (
        "incident_id, round, prs, action_id, epoch(decided_at), reason, deploy_id, outcome, "
        "epoch(outcome_at), note"
    )

    async def rounds(self, incident_id: str) -> list[RevertRound]:
        """An incident's revert rounds, first round first."""
        return await self._call(lambda cur: self._rounds(cur, incident_id))

    @classmethod
    def _rounds(cls, cur: duckdb.DuckDBPyConnection, incident_id: str) -> list[RevertRound]:
        rows = cur.execute(
            f"SELECT {cls._ROUND_COLS} FROM revert_rounds WHERE incident_id = ? ORDER BY round",
            [incident_id],
        ).fetchall()
        return [RevertRound(r[0], r[1], tuple(r[2]), *r[3:]) for r in rows]

    async def awaiting_reverts(
        self, service: str, environment: str
    ) -> list[tuple[RevertRound, dict[str, Any]]]:
        """Rounds whose revert is opened and not yet deployed, with the revert action's detail."""
        cols = ", ".join(f"r.{c}" if "(" not in c else c.replace("(", "(r.")
                         for c in self._ROUND_COLS.split(", "))  # fmt: skip
        rows = await self._call(
            lambda cur: cur.execute(
                f"SELECT {cols}, a.detail FROM revert_rounds r "
                "JOIN incidents i ON i.id = r.incident_id "
                "JOIN watches w ON w.deploy_id = i.deploy_id "
                "JOIN actions a ON a.id = r.action_id "
                "WHERE i.service = ? AND i.environment = ? AND w.phase = 'reverted' "
                "AND a.status = 'completed' AND r.deploy_id IS NULL AND r.outcome IS NULL",
                [service, environment],
            ).fetchall()
        )
        return [
            (RevertRound(r[0], r[1], tuple(r[2]), *r[3:10]), json.loads(r[10]) if r[10] else {})
            for r in rows
        ]

    async def link_round_deploy(
        self, r: RevertRound, deploy_id: str, watch_of: str, *, now: float, due: float, reason: str
    ) -> bool:
        """Record that `deploy_id` carries round `r`, and wake the incident's Watch at `due`."""

        def link(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "UPDATE revert_rounds SET deploy_id = ? WHERE incident_id = ? AND round = ? "
                "AND deploy_id IS NULL RETURNING round",
                [deploy_id, r.incident_id, r.round],
            ).fetchall()
            if rows:
                cur.execute(
                    "UPDATE watches SET next_due = to_timestamp(?), updated_at = to_timestamp(?), "
                    "reason = ? WHERE deploy_id = ? AND phase = 'reverted'",
                    [due, now, reason, watch_of],
                )
            return bool(rows)

        return await self._tx(link)

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

        await self._tx(write)

    async def revert_opened(self, incident: Incident, onset_at: float, now: float) -> None:
        """Keep when the first revert PR was opened (later rounds leave it as it is)."""
        await self._tx(lambda cur: self._revert_opened(cur, incident, onset_at, now))

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
        rows = await self._call(
            lambda cur: cur.execute(
                "SELECT incident_id, epoch(onset_at), epoch(detected_at), epoch(revert_opened_at), "
                "epoch(recovered_at), time_to_revert, time_to_restore FROM incident_times "
                "WHERE incident_id = ?",
                [incident_id],
            ).fetchall()
        )
        return IncidentTimes(*rows[0]) if rows else None

    async def close_revert(self, key: str, *, now: float, note: str) -> str | None:
        """A person closed the revert PR for action `key` unmerged: settle its round `closed`,
        stop any retry of the action, and wake the incident's Watch; the incident id, if known."""

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
                "AND phase IN ('reverted', 'rolling_back')",
                [now, watch_of],
            )
            return str(incident_id)

        return await self._tx(close)
