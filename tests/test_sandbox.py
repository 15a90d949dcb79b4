"""The sandbox's decisions as tables (which SQL is one SELECT, how values become JSON), and its
query runner over a real store: a query DuckDB stops late is still answered at the time limit,
and holds its slot until it stops."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from attribution.sandbox import QueryRefused, SandboxedQueries, check_sql, json_value
from attribution.store import Store
from tests.waiting import wait_for_async


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELECT 1", None),
        ("select * from deploys where service = ?", None),
        ("WITH a AS (SELECT 1 AS x) SELECT x FROM a", None),
        ("SELECT 1;", None),
        ("-- a comment\nSELECT 1", None),
        ("(SELECT 1) UNION ALL (SELECT 2)", None),
        ("FROM deploys", None),
        ("SELECT 1; SELECT 2", "bad_sql"),
        ("", "bad_sql"),
        (";", "bad_sql"),
        ("SELEC 1", "bad_sql"),
        ("INSERT INTO deploys VALUES (1)", "not_read_only"),
        ("UPDATE deploys SET sha = 'x'", "not_read_only"),
        ("WITH a AS (SELECT 1) DELETE FROM deploys", "not_read_only"),
        ("COPY deploys TO '/tmp/x.csv'", "not_read_only"),
        ("EXPORT DATABASE '/tmp/x'", "not_read_only"),
        ("ATTACH ':memory:' AS m", "not_read_only"),
        ("DETACH m", "not_read_only"),
        ("SET threads = 1", "not_read_only"),
        ("RESET threads", "not_read_only"),
        ("PRAGMA version", "not_read_only"),
        ("CALL pragma_version()", "not_read_only"),
        ("INSTALL httpfs", "not_read_only"),
        ("LOAD httpfs", "not_read_only"),
        ("CREATE MACRO m() AS 1", "not_read_only"),
        ("EXPLAIN ANALYZE SELECT 1", "not_read_only"),
        ("USE memory", "not_read_only"),
        ("CHECKPOINT", "not_read_only"),
    ],
)
def test_only_one_select_passes_the_check(sql: str, code: str | None) -> None:
    """DuckDB's parser decides: one SELECT (WITH and FROM-first included) passes, the rest is
    refused with its code."""
    if code is None:
        assert check_sql(sql) == sql
        return
    with pytest.raises(QueryRefused) as refused:
        check_sql(sql)
    assert refused.value.code == code
    assert refused.value.status in {400, 403}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 11, 2, 14, 5, tzinfo=dt.UTC), "2026-11-02T14:05:00+00:00"),
        (dt.date(2026, 11, 2), "2026-11-02"),
        (dt.timedelta(minutes=3), 180.0),
        (decimal.Decimal("1.50"), 1.5),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"\x01\xff", "01ff"),
        ([1, dt.date(2026, 1, 1)], [1, "2026-01-01"]),
        ({"a": decimal.Decimal(2)}, {"a": 2.0}),
        (None, None),
        ("text", "text"),
    ],
)
def test_values_become_json(value: Any, expected: Any) -> None:
    """Times in ISO 8601, intervals in seconds, decimals as numbers, UUIDs and bytes as text."""
    assert json_value(value) == expected


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "store.duckdb")
    yield opened
    await opened.close()


LATE = "SELECT max(len(l)) FROM (SELECT list(range(10000000)) AS l)"
"""One operator building one ten-million-element value: DuckDB notices an interrupt only after."""


async def test_a_query_stopped_late_is_answered_at_the_limit(store: Store) -> None:
    """The answer is a 408 at the limit (plus grace); the query keeps its slot (429 for the
    next) until DuckDB stops it, then the slot is free again."""
    queries = SandboxedQueries(store.writer.read, slots=1, timeout=0.1, grace=0.1)
    with pytest.raises(QueryRefused) as late:
        await queries.query(LATE)
    assert late.value.code == "timeout"
    with pytest.raises(QueryRefused) as busy:
        await queries.query("SELECT 1")
    assert busy.value.code == "busy"
    assert busy.value.status == 429

    async def free() -> bool:
        try:
            return (await queries.query("SELECT 1")).rows == [[1]]
        except QueryRefused as exc:
            if exc.code != "busy":
                raise
            return False

    await wait_for_async(free, within=60, what="the slot freed once the late query stopped")


async def test_the_snapshot_is_rebuilt_when_old(store: Store) -> None:
    """A deploy written after a snapshot is seen once the snapshot is older than its age."""
    queries = SandboxedQueries(store.writer.read, max_age=0.0)
    assert (await queries.query("SELECT count(*) FROM deploys")).rows == [[0]]
    await store.writer.call(lambda cur: cur.execute(
        "INSERT INTO deploys VALUES ('d1', 's', 'production', NULL, 'abc', NULL, NULL, now(), "
        "NULL, 'cd', now())"
    ))  # fmt: skip

    async def seen() -> bool:
        return (await queries.query("SELECT count(*) FROM deploys")).rows == [[1]]

    await wait_for_async(seen, within=10, what="the new deploy in a rebuilt snapshot")
