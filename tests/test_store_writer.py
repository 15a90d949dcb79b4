"""The store's writer thread on a real DuckDB file: calls go before group-commit batches queued
ahead of them, a batch waits behind calls for `BATCH_DEFER` at most, and one failing item of a
batch fails alone (that a batch is durable before its submitters hear back is
`tests/test_ingest_crash.py`, by SIGKILL)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import duckdb
import pytest

from attribution.store import Store, StoreError
from attribution.store_writer import BATCH_DEFER


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "writer.duckdb")
    await opened.fetch("CREATE TABLE items (n INTEGER PRIMARY KEY)")
    yield opened
    await opened.close()


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.002)


class Held:
    """The writer thread kept busy by one call until `release()`."""

    def __init__(self, store: Store) -> None:
        self._running, self._release = threading.Event(), threading.Event()

        def hold(cur: duckdb.DuckDBPyConnection) -> None:
            self._running.set()
            self._release.wait(30)

        self.task = asyncio.ensure_future(store.writer.call(hold))

    async def started(self) -> None:
        await until(self._running.is_set)

    async def release(self) -> None:
        self._release.set()
        await self.task


def insert_all(order: list[str]) -> Callable[[duckdb.DuckDBPyConnection, Sequence[int]], list[int]]:
    def write(cur: duckdb.DuckDBPyConnection, items: Sequence[int]) -> list[int]:
        order.append("batch")
        for n in items:
            cur.execute("INSERT INTO items VALUES (?)", [n])
        return list(items)

    return write


async def test_a_call_goes_before_a_batch_queued_ahead_of_it(store: Store) -> None:
    """A batch waiting for the writer lets a later call (a Watch's) go first."""
    order: list[str] = []
    group = store.writer.group(insert_all(order), max_wait=0)
    held = Held(store)
    await held.started()
    batch = asyncio.ensure_future(group.submit(1))
    await until(lambda: group.waiting == 0 and store.writer.waiting == 1)  # on the writer
    call = asyncio.ensure_future(store.writer.call(lambda cur: order.append("call")))
    await until(lambda: store.writer.waiting == 2)
    await held.release()
    assert await batch == 1
    await call
    assert order == ["call", "batch"]


async def test_a_group_ahead_goes_before_a_batch_queued_ahead_of_it(store: Store) -> None:
    """The Watches' moves (a group `ahead`) queue as calls: a batch of theirs goes before an
    ingest batch that was waiting for the writer first."""
    order: list[str] = []
    ingest = store.writer.group(insert_all(order), max_wait=0)
    moves = store.writer.group(insert_all(order), max_wait=0, ahead=True)
    held = Held(store)
    await held.started()
    first = asyncio.ensure_future(ingest.submit(1))
    await until(lambda: ingest.waiting == 0 and store.writer.waiting == 1)  # on the writer
    second = asyncio.ensure_future(moves.submit(2))
    await until(lambda: moves.waiting == 0 and store.writer.waiting == 2)
    await held.release()
    assert (await first, await second) == (1, 2)
    assert await store.fetch("SELECT rowid, n FROM items ORDER BY rowid") == [(0, 2), (1, 1)]


async def test_a_batch_waits_behind_calls_for_the_defer_at_most(store: Store) -> None:
    """Behind a stream of 40 calls of 20 ms each, a batch runs once it has waited BATCH_DEFER."""
    order: list[str] = []
    group = store.writer.group(insert_all(order), max_wait=0)
    held = Held(store)
    await held.started()
    batch = asyncio.ensure_future(group.submit(1))
    await until(lambda: group.waiting == 0 and store.writer.waiting == 1)

    def slow(cur: duckdb.DuckDBPyConnection) -> None:
        time.sleep(0.02)
        order.append("call")

    calls = [asyncio.ensure_future(store.writer.call(slow)) for _ in range(40)]
    await until(lambda: store.writer.waiting == 41)
    await held.release()
    await asyncio.gather(batch, *calls)
    most = int(BATCH_DEFER / 0.02) + 1  # each call takes 20 ms at least
    assert order.index("batch") <= most, order


async def test_one_failing_item_fails_alone(store: Store) -> None:
    """An item the table refuses (a duplicate key) fails; the others of its batch are written."""
    group = store.writer.group(insert_all([]))
    results = await asyncio.gather(*(group.submit(n) for n in (1, 2, 2, 3)), return_exceptions=True)
    assert results[:2] == [1, 2]
    assert isinstance(results[2], StoreError)
    assert results[3] == 3
    assert await store.fetch("SELECT n FROM items ORDER BY n") == [(1,), (2,), (3,)]


async def test_closing_twice_closes_once_and_frees_the_file(tmp_path: Path) -> None:
    """Overlapping shutdown paths may both close the store: the second close returns at once,
    and the file is free for the next process."""
    path = tmp_path / "twice.duckdb"
    opened = await Store.open(path)
    await opened.close()
    await asyncio.wait_for(opened.close(), timeout=5)
    again = await Store.open(path)
    await again.close()


async def test_a_read_runs_beside_the_writer_not_on_it(store: Store) -> None:
    """A read (`StoreWriter.read`, the reports' path) that is still running does not hold the
    writer back: a write made meanwhile commits, and the read (which waits for it) then ends. On
    the writer's thread the two would wait for each other for ever."""
    written = threading.Event()

    def slow_read(cur: duckdb.DuckDBPyConnection) -> int:
        assert written.wait(10), "the write did not commit while the read ran"
        return int(cur.execute("SELECT count(*) FROM range(10)").fetchone()[0])  # type: ignore[index]

    reading = asyncio.ensure_future(store.writer.read(slow_read))
    await store.writer.call(lambda cur: cur.execute("CREATE TABLE beside (x INTEGER)"))
    written.set()
    assert await asyncio.wait_for(reading, 10) == 10
    with pytest.raises(StoreError, match="no_such_table"):
        await store.writer.read(lambda cur: cur.execute("SELECT * FROM no_such_table").fetchall())
