"""The store's one writer: a DuckDB connection used only from one dedicated thread.

Every call runs on that thread with its own cursor, under a lock, so there is exactly one writer
and writes are ordered; callers `await` it from the event loop. `call` runs a function on a
cursor, `tx` runs it in one transaction. Each query group (`store_*.py`) is a plain class over
one `StoreWriter` and reaches the database only through `call` and `tx`; `attribution.store.Store`
holds the writer and the groups.

Rows become records by column name, never by position: each group's SELECT names (or aliases)
its columns after the fields of the record it reads, and `fetch_records` passes every row to the
record's constructor (or a small function that decodes JSON and lists first) as keywords.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import duckdb
from opentelemetry import trace

T = TypeVar("T")
R = TypeVar("R")
_tracer = trace.get_tracer("rearguard.store")


class StoreError(Exception):
    """A store operation failed; the message names the operation."""


def fetch_records(cur: duckdb.DuckDBPyConnection, make: Callable[..., R]) -> list[R]:
    """Every row of the query just run on `cur`, as `make(**row)` with each value under its
    column's name (so the SELECT names its columns after `make`'s parameters)."""
    names = [column[0] for column in cur.description]
    return [make(**dict(zip(names, row, strict=True))) for row in cur.fetchall()]


class StoreWriter:
    """The connection, its executor thread and lock: the one way every query group writes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rearguard-store")
        self._lock = threading.Lock()
        # Each counter has one writer (the event loop, the writer thread), so none is lost.
        self._submitted = 0
        self._started = 0

    @property
    def waiting(self) -> int:
        """Store operations submitted and not yet started on the writer thread (its queue)."""
        return self._submitted - self._started

    async def close(self) -> None:
        """Close the connection on the writer thread (after the calls queued before), then stop
        the thread."""
        await self.call(lambda cur: self._con.close())
        self._executor.shutdown(wait=True)

    async def call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` on a fresh cursor on the writer thread; DuckDB errors become `StoreError`."""
        times: list[float] = []

        def run() -> T:
            self._started += 1
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
            self._submitted += 1
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, run)
            finally:
                # The span is the caller's wait; these say how much of it was the writer queue
                # (other calls ahead on the one writer thread) and how much DuckDB's own work.
                if len(times) == 2:  # noqa: PLR2004 - started and ended
                    span.set_attribute("rearguard.store.queued_seconds", times[0] - submitted)
                    span.set_attribute("rearguard.store.run_seconds", times[1] - times[0])

    async def tx(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
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
        return await self.call(wrapped)
