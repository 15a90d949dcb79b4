"""The store's one writer: a DuckDB connection used only from one dedicated thread.

Every call runs on that thread with its own cursor, under a lock, so there is exactly one writer
and writes are ordered; callers `await` it from the event loop. `call` runs a function on a
cursor, `tx` runs it in one transaction. Each query group (`store_*.py`) is a plain class over
one `StoreWriter` and reaches the database only through `call` and `tx`; `attribution.store.Store`
holds the writer and the groups. How long each call waited in the writer's queue before it
started is told to `on_queued` (the app's `rearguard_store_queue_seconds`).

The writer also keeps the failures that do not pass (`lasting`): DuckDB invalidates the whole
database after a fatal error (a checkpoint that could not write, for one) until the process
restarts, and a block whose checksum does not match stays corrupt; readiness reports them.

`group` makes a group commit over the writer (`GroupCommit`): items that callers submit while the
writer is busy, or within a few milliseconds of each other, are written in one transaction, each
caller answered once that transaction has committed. Webhook deliveries go this way
(`store.journal`): one COMMIT (one WAL sync) for many deliveries; so do the Watches' moves
(`store.watches.transition`, `attribution.store_moves`), whose batches queue as calls do
(`ahead`). The writer thread takes calls before batches: a batch waits while calls are queued
(at most `BATCH_DEFER` seconds, so a stream of calls cannot hold ingest back for ever), so a
Watch's call waits at most for the one batch already running, never for the deliveries queued
with it, and when the writer cannot keep up with both, ingest is what slows down.

Rows become records by column name, never by position: each group's SELECT names (or aliases)
its columns after the fields of the record it reads, and `fetch_records` passes every row to the
record's constructor (or a small function that decodes JSON and lists first) as keywords.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import duckdb
from opentelemetry import trace

T = TypeVar("T")
R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - an item of a group commit, beside its result R
_tracer = trace.get_tracer("rearguard.store")

BATCH_DEFER = 0.1
"""Seconds a group commit's batch waits behind queued calls at most before it goes first. When
the Watches' own calls keep the writer busy, ingest still gets a batch (up to 64 deliveries) in
every tenth of a second, and the Watches keep the rest. (A quarter second kept the Watches on
time a little more often under overload, but capped ingest near 250 deliveries a second.)"""

READERS = 2
"""Reads (`StoreWriter.read`) at once: one per core of the machines Rearguard runs on; more
would only queue inside DuckDB beside the writer."""

SWITCH_INTERVAL = 0.001
"""The interpreter's thread switch interval (seconds) while a writer runs. The writer thread hands
each statement to DuckDB, which lets the GIL go, and needs the GIL back for the result; a busy
event loop keeps it for the whole interval first, 5 ms by default, which made a 64-delivery
batch (a dozen such handoffs) several times slower under load than alone."""


class StoreError(Exception):
    """A store operation failed; the message names the operation."""


_CORRUPT = ("Corrupt database file", "Corrupt WAL file")
"""How DuckDB's messages begin when a checksum does not match (a plain `duckdb.Error`)."""


def fetch_records(cur: duckdb.DuckDBPyConnection, make: Callable[..., R]) -> list[R]:
    """Every row of the query just run on `cur`, as `make(**row)` with each value under its
    column's name (so the SELECT names its columns after `make`'s parameters)."""
    names = [column[0] for column in cur.description]
    return [make(**dict(zip(names, row, strict=True))) for row in cur.fetchall()]


class _Thread:
    """The writer thread: runs one job at a time, calls in the order they came and before any
    batch, except a batch that has waited `defer` seconds, which goes next."""

    def __init__(self, defer: float) -> None:
        self._defer = defer
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._batches: deque[tuple[float, Callable[[], Any], Future[Any]]] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="rearguard-store", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, batch: bool) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closing:
                raise StoreError("the store is closed")
            if batch:
                self._batches.append((time.monotonic(), fn, future))
            else:
                self._calls.append((fn, future))
            self._ready.notify()
        return future

    def _next(self) -> tuple[Callable[[], Any], Future[Any]] | None:
        with self._ready:
            while not (self._calls or self._batches or self._closing):
                self._ready.wait()
            if self._batches and (
                not self._calls or time.monotonic() - self._batches[0][0] >= self._defer
            ):
                _, fn, future = self._batches.popleft()
                return fn, future
            return self._calls.popleft() if self._calls else None  # None: closing, all done

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                future.set_exception(exc)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Stop once every job queued so far has run."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()


class StoreWriter:
    """The connection, its thread and lock: the one way every query group writes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path
        self._thread = _Thread(BATCH_DEFER)
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._lock = threading.Lock()
        self.lasting: str | None = None
        """The first failure that lasts until a restart (or a repair), None while there is none."""
        self.invalidated = False
        """Whether DuckDB invalidated the database: nothing works again until a restart."""
        self.on_queued: Callable[[float], None] = _ignore
        """Told, on the event loop, the seconds each call or batch waited in the writer's queue
        before it started on the writer thread (the app's `/metrics` histogram)."""
        # Each counter has one writer (the event loop, the writer thread), so none is lost.
        self._submitted = 0
        self._started = 0
        self._groups: list[GroupCommit[Any, Any]] = []
        self._closed = False
        self._readers = asyncio.Semaphore(READERS)

    def _note(self, exc: duckdb.Error) -> None:
        text = str(exc)
        fatal = isinstance(exc, duckdb.FatalException)
        if self.lasting is None and (fatal or text.startswith(_CORRUPT)):
            self.lasting = text.splitlines()[0]
        self.invalidated = self.invalidated or fatal

    @property
    def waiting(self) -> int:
        """Store operations submitted and not yet started on the writer thread (its queue), the
        items waiting in its group commits included."""
        return self._submitted - self._started + sum(g.waiting for g in self._groups)

    @property
    def splits(self) -> int:
        """Batches of its group commits that failed and were written again item by item."""
        return sum(g.splits for g in self._groups)

    async def close(self) -> None:
        """Close the connection on the writer thread (after the calls queued before), then stop
        the thread. A second close (shutdown paths that overlap) does nothing."""
        if self._closed:
            return
        self._closed = True
        await self.call(lambda cur: self._con.close())
        await asyncio.to_thread(self._thread.close)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the store's database, for reads off the writer thread
        (DuckDB's MVCC: it reads the rows committed when its query starts and never blocks the
        writer); the caller closes it. Only Rearguard's own SQL runs on it (user SQL runs in
        `attribution.sandbox`)."""
        with self._lock:  # not while a call is using the connection
            return self._con.cursor()

    async def call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` on a fresh cursor on the writer thread; DuckDB errors become `StoreError`."""
        return await self._run(fn, 1)

    async def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run read-only `fn` on a `reader` cursor in a worker thread, not on the writer's: a
        report that scans a year of history takes a second, and on the writer thread every
        Watch and webhook waited behind it (bench-store: the writer's p99 went from 42 ms to
        783 ms while reports ran). At most `READERS` at once; DuckDB errors become
        `StoreError`."""

        def run() -> T:
            cur = self.reader()
            try:
                return fn(cur)
            except duckdb.Error as exc:
                self._note(exc)
                raise StoreError(f"{getattr(fn, '__name__', 'store read')}: {exc}") from exc
            finally:
                cur.close()

        async with self._readers:
            with _tracer.start_as_current_span("store.read") as span:
                span.set_attribute("rearguard.store.op", getattr(fn, "__name__", "read"))
                return await asyncio.to_thread(run)

    async def _run(
        self, fn: Callable[[duckdb.DuckDBPyConnection], T], weight: int, *, batch: bool = False
    ) -> T:
        """`call`; a `batch` of `weight` items (counted as that many operations in `waiting`
        until it starts) goes after the calls queued before it."""
        times: list[float] = []

        def run() -> T:
            self._started += weight
            times.append(time.perf_counter())
            with self._lock:
                cur = self._con.cursor()
                try:
                    return fn(cur)
                except duckdb.Error as exc:
                    self._note(exc)
                    raise StoreError(f"{getattr(fn, '__name__', 'store call')}: {exc}") from exc
                finally:
                    cur.close()
                    times.append(time.perf_counter())

        with _tracer.start_as_current_span("store.call") as span:
            span.set_attribute("rearguard.store.op", getattr(fn, "__name__", "call"))
            submitted = time.perf_counter()
            self._submitted += weight
            try:
                return await asyncio.wrap_future(self._thread.submit(run, batch=batch))
            finally:
                # The span is the caller's wait; these say how much of it was the writer queue
                # (other calls ahead on the one writer thread) and how much DuckDB's own work.
                if times:  # it started (a caller that gave up first never does)
                    self.on_queued(times[0] - submitted)
                if len(times) == 2:  # noqa: PLR2004 - started and ended
                    span.set_attribute("rearguard.store.queued_seconds", times[0] - submitted)
                    span.set_attribute("rearguard.store.run_seconds", times[1] - times[0])

    async def tx(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` in one transaction: all of it is written, or none."""
        return await self._run(_transaction(fn), 1)

    def group(
        self,
        write: Callable[[duckdb.DuckDBPyConnection, Sequence[I]], Sequence[R]],
        *,
        max_items: int = 64,
        max_wait: float = 0.002,
        ahead: bool = False,
    ) -> GroupCommit[I, R]:
        """A group commit whose batches `write` writes, each in one transaction; it counts in
        `waiting` while its items wait. `ahead`: its batches queue as calls do, ahead of other
        groups' batches (the Watches' moves go before ingest)."""
        group = GroupCommit(self, write, max_items=max_items, max_wait=max_wait, ahead=ahead)
        self._groups.append(group)
        return group


def _ignore(seconds: float) -> None:
    return None


def _transaction(fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Callable[..., T]:
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
    return wrapped


@dataclass(slots=True)
class _Entry(Generic[I, R]):
    item: I
    future: asyncio.Future[R]
    at: float = field(default_factory=time.monotonic)

    def succeed(self, result: R) -> None:
        if not self.future.done():  # done: its caller gave up (cancelled); the write stands
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class GroupCommit(Generic[I, R]):
    """Items submitted together are written together: one transaction, one COMMIT.

    A batch takes at most `max_items` items and waits at most `max_wait` seconds after its oldest
    item for more (none when items have queued while the writer was busy). `submit` returns the
    item's result only after its batch's COMMIT returned: DuckDB has synced its WAL by then, so
    an answer sent afterwards survives a crash. One batch at a time is queued on the writer, so
    any other call waits behind that batch only. If a batch fails, each of its items is written
    again in a transaction of its own, and only the items that fail alone get their error; so
    `write` must touch nothing but the database (it may run twice for an item) and must return
    one result per item, in order.
    """

    def __init__(
        self,
        writer: StoreWriter,
        write: Callable[[duckdb.DuckDBPyConnection, Sequence[I]], Sequence[R]],
        *,
        max_items: int,
        max_wait: float,
        ahead: bool = False,
    ) -> None:
        self._writer = writer
        self._ahead = ahead
        self._write = write
        self._max_items = max_items
        self._max_wait = max_wait
        self._queue: list[_Entry[I, R]] = []
        self._full = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self.splits = 0
        """Batches that failed and were written again item by item."""

    @property
    def waiting(self) -> int:
        """Items submitted and not yet handed to the writer."""
        return len(self._queue)

    async def submit(self, item: I) -> R:
        """Write `item` in the next batch; its result once that batch has committed."""
        entry: _Entry[I, R] = _Entry(item, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        if len(self._queue) >= self._max_items:
            self._full.set()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await entry.future

    async def _drain(self) -> None:
        batch: list[_Entry[I, R]] = []
        try:
            while self._queue:
                wait = self._queue[0].at + self._max_wait - time.monotonic()
                if len(self._queue) < self._max_items and wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), wait)
                batch = self._queue[: self._max_items]
                del self._queue[: self._max_items]
                if len(self._queue) < self._max_items:
                    self._full.clear()
                await self._commit(batch)
                batch = []
        except BaseException as exc:  # cancelled: no caller may wait for ever
            for entry in (*batch, *self._queue):
                entry.fail(StoreError(f"group commit stopped: {exc!r}"))
            self._queue.clear()
            raise
        finally:
            self._drainer = None

    async def _commit(self, batch: list[_Entry[I, R]]) -> None:
        items = [entry.item for entry in batch]
        write = self._write

        def batched(cur: duckdb.DuckDBPyConnection) -> Sequence[R]:
            return write(cur, items)

        batched.__name__ = getattr(write, "__name__", "batch")
        try:
            results = await self._writer._run(
                _transaction(batched), len(batch), batch=not self._ahead
            )
        except Exception as exc:  # noqa: BLE001 - one bad item must not fail the rest: each alone
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            self.splits += 1
            for entry in batch:
                await self._commit([entry])
            return
        for entry, result in zip(batch, results, strict=True):
            entry.succeed(result)
