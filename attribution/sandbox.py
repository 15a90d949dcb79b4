"""Read-only user SQL over the public views: a snapshot in a locked DuckDB instance of its own.

Why a snapshot, measured with duckdb 2.0.1 (`SET enable_external_access = false` and `SET
lock_configuration = true` on a cursor of the writer's connection): both bind the whole database
instance, so the writer could no longer `COPY` (the Parquet export) and no setting could change
again; and a cursor of the writer's instance sees every internal table, with one memory limit for
the writer and the query alike. A second process cannot open the file while the writer holds it
(even read-only), and a second in-process instance cannot `ATTACH` it ("Unique file handle
conflict"). So user SQL never runs on the writer's instance:

1. `Snapshot.build` copies each public view (fixed SQL of ours) from a cursor of the source
   instance, off the writer's thread, in one transaction (DuckDB's MVCC: every view is read at
   one committed state, and the writer is not blocked), as Parquet into a temporary directory;
2. loads them into a fresh in-memory DuckDB instance as tables named after the views (in
   `main`, so plain names work, and as `public.<view>` too, the names in the store file),
   deletes the files, then turns off external access (files, network, extensions), caps
   threads (1) and memory (the snapshot plus `QUERY_MEMORY`), and locks the configuration.
   That instance holds nothing but the views' rows: internal tables do not exist there.

Each query then runs on its own cursor of the snapshot: a single SELECT (DuckDB's own parser,
`duckdb.extract_statements`, and the statement's type), interrupted after `timeout` seconds
(`cursor.interrupt()` from a timer), at most `max_rows` rows fetched (the answer says when more
were left). `SandboxedQueries` (the server's) rebuilds the snapshot when a query finds it older
than `max_age` seconds (or ten times as long as it took to build, `BUILD_SHARE`), so an answer
reflects the store as of at most that long ago (`as_of` says when).

Measured here (2 cores shared with other work), 2,000,000 observation rows and 50,000 deploys
(a year at 1,000 deploys a week is of that order): alone, the copy takes 0.32 s and the load
0.18 s; inside a running store, snapshot and first query took 1.9 s, while the writer's calls
(100 `SELECT 1` through `StoreWriter.call`) kept p50 0.6 ms, p99 8.9 ms, against p50 0.7 ms,
p99 5.1 ms idle: the copy does not hold the writer.

Exception tree::

    QueryRefused        the SQL was refused or failed (`code` says why, `status` the HTTP status)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from attribution.public_views import SCHEMA, VIEWS, export_view

QUERY_TIMEOUT = 10.0
"""Seconds a query may run before it is interrupted."""
MAX_ROWS = 10_000
"""Rows an answer holds at most."""
QUERY_MEMORY = 256 * 1024 * 1024
"""Bytes a query may use beyond the snapshot's own rows."""
MAX_AGE = 5.0
"""Seconds a snapshot serves queries before the next query rebuilds it (at least; see
`BUILD_SHARE`)."""
BUILD_SHARE = 0.1
"""The share of time snapshot builds may take at most: a snapshot that took `b` seconds to build
serves for at least `b / BUILD_SHARE` seconds, so queries polled in a loop cannot keep the
machine copying the store."""
GRACE = 1.0
"""Seconds past the time limit an answer waits for an interrupted query to stop."""
MAX_SQL = 100_000
"""Characters of SQL taken at most."""


QueryCode = Literal[
    "bad_sql", "not_read_only", "not_allowed", "timeout", "out_of_memory", "query_failed",
    "busy", "store_unreadable",
]  # fmt: skip


class QueryRefused(Exception):
    """The SQL was refused or could not run; `code` and `status` say how to answer: 400
    `bad_sql` (not one statement, or no SQL), 403 `not_read_only` (not a SELECT), 403
    `not_allowed` (files, network, extensions), 408 `timeout`, 413 `out_of_memory`, 400
    `query_failed` (any other error: an unknown table or column, a type error), 429 `busy`,
    503 `store_unreadable`."""

    def __init__(self, status: int, code: QueryCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code: QueryCode = code
        self.message = message


@dataclass(frozen=True)
class QueryResult:
    """An answer: column names and DuckDB types, rows of JSON-ready values, whether rows were
    left out (`truncated`), and when the snapshot was taken (Unix seconds)."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: list[list[Any]]
    truncated: bool
    as_of: float

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [
                {"name": n, "type": t} for n, t in zip(self.columns, self.types, strict=True)
            ],
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "as_of": dt.datetime.fromtimestamp(self.as_of, dt.UTC).isoformat(),
        }


def check_sql(sql: str) -> str:
    """The one SELECT (or WITH … SELECT) statement in `sql`, parsed by DuckDB; `QueryRefused`
    for anything else (no statement, several, or another type)."""
    if len(sql) > MAX_SQL:
        raise QueryRefused(413, "bad_sql", f"the SQL is over {MAX_SQL} characters")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(400, "bad_sql", f"cannot parse the SQL: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(400, "bad_sql", f"expected one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryRefused(
            403, "not_read_only", f"only a SELECT (or WITH … SELECT) is allowed, not {name}"
        )
    return sql


_JSON_AS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((dt.datetime, dt.date, dt.time), lambda v: v.isoformat()),
    (dt.timedelta, lambda v: v.total_seconds()),
    (decimal.Decimal, float),
    (uuid.UUID, str),
    (bytes, lambda v: v.hex()),
)


def json_value(value: Any) -> Any:
    """A DuckDB value as JSON: times in ISO 8601, intervals in seconds, decimals as numbers,
    UUIDs as text, bytes in hex; lists and structs value by value."""
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    for kinds, convert in _JSON_AS:
        if isinstance(value, kinds):
            return convert(value)
    return value


class Snapshot:
    """The public views' rows in a locked in-memory DuckDB instance; build with `build`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: float) -> None:
        self._con = con
        self.as_of = as_of
        self.build_seconds = time.time() - as_of

    @classmethod
    def build(cls, source: duckdb.DuckDBPyConnection) -> Snapshot:
        """Copy every view from `source` (a cursor of the store's instance, its own connection)
        and lock the copy. `QueryRefused(503, store_unreadable)` when the store has no views."""
        as_of = time.time()
        work = Path(tempfile.mkdtemp(prefix="rearguard-snapshot-"))
        try:
            try:
                source.execute("BEGIN TRANSACTION")
                for view in VIEWS:
                    export_view(source, view, work)
                source.execute("COMMIT")
            except duckdb.CatalogException as exc:
                raise QueryRefused(
                    503, "store_unreadable",
                    f"the store has no public views (start `rearguard serve` on it once to "
                    f"migrate it): {exc}",
                ) from exc  # fmt: skip
            con = duckdb.connect(":memory:", config={"threads": 1})
            con.execute(f"CREATE SCHEMA {SCHEMA}")
            for view in VIEWS:
                path = str(work / f"{view}.parquet").replace("'", "''")
                con.execute(f"CREATE TABLE main.{view} AS FROM read_parquet('{path}')")
                con.execute(f"CREATE VIEW {SCHEMA}.{view} AS FROM main.{view}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        used = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        limit = int((used[0] if used and used[0] else 0) + QUERY_MEMORY)
        for setting in (
            f"SET memory_limit = '{limit}B'",
            "SET max_temp_directory_size = '0B'",
            "SET enable_external_access = false",
            "SET autoload_known_extensions = false",
            "SET autoinstall_known_extensions = false",
            "SET lock_configuration = true",
        ):
            con.execute(setting)
        return cls(con, as_of)

    def run(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        timeout: float = QUERY_TIMEOUT,
        max_rows: int = MAX_ROWS,
    ) -> QueryResult:
        """Run one checked SELECT on a cursor of its own, blocking; `QueryRefused` on refusal,
        on error, past `timeout` seconds, or past the memory limit."""
        check_sql(sql)
        cur = self._con.cursor()
        timer = threading.Timer(timeout, cur.interrupt)
        timer.start()
        try:
            cur.execute(sql, list(params))
            if cur.description is None:
                raise QueryRefused(403, "not_read_only", "the statement returned no rows")
            columns = tuple(str(c[0]) for c in cur.description)
            types = tuple(str(c[1]) for c in cur.description)
            fetched = cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException as exc:
            raise QueryRefused(
                408, "timeout", f"the query ran past the {timeout:g} s limit and was stopped"
            ) from exc
        except duckdb.PermissionException as exc:
            raise QueryRefused(
                403, "not_allowed", f"files, network and extensions are off: {exc}"
            ) from exc
        except duckdb.OutOfMemoryException as exc:
            raise QueryRefused(
                413, "out_of_memory", f"the query needs more than the memory allowed: {exc}"
            ) from exc
        except duckdb.Error as exc:
            raise QueryRefused(400, "query_failed", str(exc).splitlines()[0]) from exc
        finally:
            timer.cancel()
            cur.close()
        rows = [[json_value(v) for v in row] for row in fetched[:max_rows]]
        return QueryResult(columns, types, rows, len(fetched) > max_rows, self.as_of)

    def close(self) -> None:
        self._con.close()


def query_file(path: Path, sql: str, params: Sequence[Any] = ()) -> QueryResult:
    """Run `sql` in the sandbox over the store file at `path`, which no process holds (opened
    read-only, copied into a snapshot, closed)."""
    check_sql(sql)
    with contextlib.closing(open_read_only(path)) as source:
        snapshot = Snapshot.build(source)
    try:
        return snapshot.run(sql, params)
    finally:
        snapshot.close()


class StoreLocked(Exception):
    """Another process (a running `rearguard serve`) holds the store file."""


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """The store at `path`, read-only; `StoreLocked` while a writer holds it, `FileNotFoundError`
    when there is no such file."""
    if not path.is_file():
        raise FileNotFoundError(f"no store file {path}")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLocked(f"the store {path} is held by another process: {exc}") from exc
        raise


class SandboxedQueries:
    """The server's query runner: a snapshot rebuilt when older than `max_age`, at most `slots`
    queries at a time (more are refused as `busy`), each on a thread of its own."""

    def __init__(
        self,
        read: Callable[[Callable[[duckdb.DuckDBPyConnection], Snapshot]], Awaitable[Snapshot]],
        *,
        max_age: float = MAX_AGE,
        slots: int = 2,
        timeout: float = QUERY_TIMEOUT,
        grace: float = GRACE,
    ) -> None:
        self._read = read
        self._grace = grace
        self._max_age = max_age
        self._timeout = timeout
        self._snapshot: Snapshot | None = None
        self._refresh = asyncio.Lock()
        self._slots = slots
        self._running = 0

    async def _current(self) -> Snapshot:
        async with self._refresh:
            snapshot = self._snapshot
            if snapshot is None or time.time() - snapshot.as_of > max(
                self._max_age, snapshot.build_seconds / BUILD_SHARE
            ):
                # On a reader of the store's own (`StoreWriter.read`), off the writer's thread.
                snapshot = await self._read(Snapshot.build)
                # The old one is closed when the last query holding it lets go of it (its
                # connection closes as the object is freed).
                self._snapshot = snapshot
            return snapshot

    async def query(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Check `sql`, then run it on a recent snapshot; `QueryRefused` as `Snapshot.run`.

        The answer never waits past the time limit (and `GRACE`): DuckDB checks the interrupt
        between chunks, and a single operator that builds one huge value (`list(range(6e7))`,
        13 s here) notices it only when done. Such a query keeps its slot, on its own
        thread and its own single-threaded instance, until it stops."""
        check_sql(sql)
        if self._running >= self._slots:
            raise QueryRefused(
                429, "busy", f"{self._slots} queries are running; try again when one is done"
            )
        self._running += 1
        held = False
        try:
            snapshot = await self._current()
            run = asyncio.ensure_future(
                asyncio.to_thread(snapshot.run, sql, params, timeout=self._timeout)
            )
            held = True
            run.add_done_callback(self._release)
            try:
                return await asyncio.wait_for(asyncio.shield(run), self._timeout + self._grace)
            except TimeoutError as exc:
                raise QueryRefused(
                    408, "timeout", f"the query ran past the {self._timeout:g} s limit; it is "
                    "being stopped",
                ) from exc  # fmt: skip
        finally:
            if not held:
                self._running -= 1

    def _release(self, run: asyncio.Future[QueryResult]) -> None:
        self._running -= 1
        if not run.cancelled():
            run.exception()  # retrieved: a late refusal was already answered as a timeout
