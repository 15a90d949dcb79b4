"""`POST /v1/query` and `GET /v1/export/{view}.parquet` in the app over loopback: one SELECT
over the public views, every other statement and every way out of the sandbox refused as 4xx
JSON with the store unchanged, the time limit enforced, the views exported as Parquet."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pytest_aiohttp.plugin import AiohttpClient

from attribution.public_views import VIEWS
from attribution.sandbox import MAX_ROWS
from tests.api_rig import SERVICE, SHA, START, Client, bearer, start_app, table_counts

SLOW = "SELECT sum(a.range * b.range) FROM range(100000) a, range(1000000) b"
"""10^11 pairs: minutes of work, little memory (the right side is a million rows)."""


async def _app(aiohttp_client: AiohttpClient, tmp_path: Path, limit: str = "0.5s") -> Client:
    client = await start_app(aiohttp_client, tmp_path, server={"query_timeout": limit})
    for n in range(3):
        response = await client.post("/v1/deploys", headers=bearer(), json={
            "service": SERVICE, "environment": "production", "sha": SHA[:-1] + str(n),
            "finished_at": START - 3600 * n,
        })  # fmt: skip
        assert response.status == 202, await response.text()
    return client


async def _query(client: Client, sql: str, params: list[Any] | None = None) -> Any:
    body: dict[str, Any] = {"sql": sql} if params is None else {"sql": sql, "params": params}
    return await client.post("/v1/query", headers=bearer(), json=body)


async def test_a_select_over_the_views_answers_rows(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Columns with their types, rows as JSON, times in ISO 8601; parameters bind; both the plain
    and the schema-qualified names work."""
    client = await _app(aiohttp_client, tmp_path)
    response = await _query(
        client, "SELECT service, count(*) AS n, max(deployed_at) AS last FROM deploys "
        "WHERE environment = ? GROUP BY 1", ["production"],
    )  # fmt: skip
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["columns"] == [{"name": "service", "type": "VARCHAR"},
                                 {"name": "n", "type": "BIGINT"},
                                 {"name": "last", "type": "TIMESTAMP WITH TIME ZONE"}]  # fmt: skip
    assert answer["rows"] == [[SERVICE, 3, dt.datetime.fromtimestamp(START, dt.UTC).isoformat()]]
    assert answer["truncated"] is False
    qualified = await (await _query(client, "SELECT count(*) FROM public.deploys")).json()
    assert qualified["rows"] == [[3]]
    for view in VIEWS:  # every view of the contract is there
        assert (await _query(client, f"SELECT * FROM {view} LIMIT 1")).status == 200, view


async def test_rows_past_the_limit_are_left_out_and_said(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """At most MAX_ROWS rows come back, with `truncated`."""
    client = await _app(aiohttp_client, tmp_path)
    answer = await (await _query(client, f"SELECT * FROM range({MAX_ROWS + 5})")).json()
    assert answer["row_count"] == MAX_ROWS
    assert answer["truncated"] is True


REFUSED = [
    ("SELECT * FROM read_csv('/etc/passwd')", 403, "not_allowed"),
    ("SELECT * FROM read_text('/etc/passwd')", 403, "not_allowed"),
    ("SELECT * FROM read_parquet('{tmp}/store.duckdb')", 403, "not_allowed"),
    ("SELECT * FROM glob('/etc/*')", 403, "not_allowed"),
    ("ATTACH '{tmp}/store.duckdb' AS s", 403, "not_read_only"),
    ("SET enable_external_access = true", 403, "not_read_only"),
    ("SET threads = 8", 403, "not_read_only"),
    ("PRAGMA database_list", 403, "not_read_only"),
    ("CALL checkpoint()", 403, "not_read_only"),
    ("INSTALL httpfs", 403, "not_read_only"),
    ("LOAD httpfs", 403, "not_read_only"),
    ("INSERT INTO deploys (deploy_id) VALUES ('x')", 403, "not_read_only"),
    ("DELETE FROM deploys", 403, "not_read_only"),
    ("CREATE TABLE t AS SELECT 1", 403, "not_read_only"),
    ("COPY (SELECT * FROM deploys) TO '{tmp}/out.csv'", 403, "not_read_only"),
    ("SELECT 1; DELETE FROM deploys", 400, "bad_sql"),
    ("SELECT 1; SELECT 2", 400, "bad_sql"),
    ("", 400, "bad_sql"),
    ("SELEC 1", 400, "bad_sql"),
    ("SELECT * FROM journal", 400, "query_failed"),
    ("SELECT * FROM main.watches", 400, "query_failed"),
    ("SELECT * FROM transitions", 400, "query_failed"),
    ("SELECT body FROM pull_requests", 400, "query_failed"),
    (SLOW, 408, "timeout"),
]

HUNGRY = "SELECT max(len(l)) FROM (SELECT list(range) AS l FROM range(60000000))"
"""A 60-million-element list: about 480 MB, past the sandbox's memory limit."""


async def test_everything_but_a_select_over_the_views_is_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Files, attaching, settings, writes, several statements, internal tables, a query past the
    time limit or the memory limit: each a 4xx JSON error naming the problem; the store keeps
    every row it had and no file is written."""
    client = await _app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    for sql, status, code in REFUSED:
        response = await _query(client, sql.format(tmp=tmp_path))
        assert response.status == status, (sql, await response.text())
        error = (await response.json())["error"]
        assert error["code"] == code, (sql, error)
        assert error["message"], sql
    assert await table_counts(client) == before
    assert not (tmp_path / "out.csv").exists()
    after = await (await _query(client, "SELECT count(*) FROM deploys")).json()
    assert after["rows"] == [[3]]  # the sandbox still answers after every refusal


@pytest.mark.parametrize(
    ("body", "code"),
    [({}, "missing_field"), ({"sql": 1}, "bad_field"),
     ({"sql": "SELECT ?", "params": [{"a": 1}]}, "bad_field")],
)  # fmt: skip
async def test_a_malformed_body_is_a_400(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: dict[str, Any], code: str
) -> None:
    """The body's fields are read as every route's are."""
    client = await _app(aiohttp_client, tmp_path)
    response = await client.post("/v1/query", headers=bearer(), json=body)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == code


async def test_query_and_export_need_the_read_token(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Without a bearer token both routes answer 401, as every read route."""
    client = await _app(aiohttp_client, tmp_path)
    assert (await client.post("/v1/query", json={"sql": "SELECT 1"})).status == 401
    assert (await client.get("/v1/export/deploys.parquet")).status == 401


async def test_a_view_exports_as_parquet_that_duckdb_reads(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The export is the live view (not the query snapshot), as a Parquet file; an unknown view
    is a 404 naming the views."""
    client = await _app(aiohttp_client, tmp_path)
    response = await client.get("/v1/export/deploys.parquet", headers=bearer())
    assert response.status == 200, await response.text()
    path = tmp_path / "deploys.parquet"
    path.write_bytes(await response.read())
    sql = f"SELECT service, sha FROM read_parquet('{path}') ORDER BY sha"
    rows = duckdb.connect().execute(sql).fetchall()
    assert rows == [(SERVICE, SHA[:-1] + str(n)) for n in range(3)]
    missing = await client.get("/v1/export/journal.parquet", headers=bearer())
    assert missing.status == 404
    assert "deploys" in (await missing.json())["error"]["message"]


async def test_a_query_past_the_memory_limit_is_413_and_changes_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """With a time limit it cannot reach first (on a loaded machine building the list takes
    longer than the other test's half second), the memory limit stops the query: 413."""
    client = await _app(aiohttp_client, tmp_path, limit="60s")
    before = await table_counts(client)
    response = await _query(client, HUNGRY)
    assert response.status == 413, await response.text()
    assert (await response.json())["error"]["code"] == "out_of_memory"
    assert await table_counts(client) == before
