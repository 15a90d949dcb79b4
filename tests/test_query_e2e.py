"""The store read while `rearguard serve` runs: `rearguard query`, `export` and `backtest`
against one real server (started from a TOML config, deploys arriving through the CD hook),
and `query` / `export` on a store file no server holds.

One server for the module: the tests read, and the one that adds a deploy waits for it."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from attribution.public_views import VIEWS
from attribution.records import Deploy
from attribution.store import Store
from loop.cli.main import main
from loop.config import ENV_API_TOKEN, ENV_READ_TOKEN
from tests.serve_rig import Server, free_port, is_ready
from tests.waiting import wait_for

API_TOKEN = "api-token-e2e"
READ_TOKEN = "read-token-e2e"
SHAS = {"checkout": ["a1" * 20, "a2" * 20], "billing": ["b1" * 20]}


@dataclass(frozen=True)
class Running:
    url: str
    config: Path
    store: Path
    deploy_ids: dict[str, list[str]]


def _post_deploy(url: str, service: str, sha: str, finished_at: float) -> str:
    body = json.dumps({"service": service, "environment": "production", "sha": sha,
                       "finished_at": finished_at}).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{url}/v1/deploys", data=body, method="POST",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        deploy_id: str = json.loads(response.read())["id"]
        return deploy_id


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`rearguard serve` for services checkout and billing, with three deploys by CD hook."""
    workdir = tmp_path_factory.mktemp("query-e2e")
    port = free_port()
    store = workdir / "store.duckdb"
    config = workdir / "rearguard.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
store = "{store}"
tick = "1h"
query_timeout = "2s"
[github]
api_url = "http://127.0.0.1:9/"
[prometheus]
url = "http://127.0.0.1:9"
timeout = "1s"
[services.checkout]
repo = "acme/checkout"
[services.checkout.slis.errors]
bad = "sum(bad)"
total = "sum(total)"
[services.billing]
repo = "acme/billing"
[services.billing.slis.errors]
bad = "sum(bad)"
total = "sum(total)"
""")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB", "SLACK", "REAR"))}  # fmt: skip
    env |= {"GITHUB_TOKEN": "ghp-test", ENV_API_TOKEN: API_TOKEN, ENV_READ_TOKEN: READ_TOKEN}
    server = Server(config, env, port, workdir / "log")
    server.start()
    try:
        wait_for(lambda: is_ready(port), within=30, what="serve ready", detail=server.tail)
        now = time.time()
        ids = {service: [_post_deploy(server.url, service, sha, now - 3600 * (i + 1))
                         for i, sha in enumerate(shas)]
               for service, shas in SHAS.items()}  # fmt: skip
        yield Running(server.url, config, store, ids)
    finally:
        server.stop()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_READ_TOKEN, READ_TOKEN)
    monkeypatch.delenv(ENV_API_TOKEN, raising=False)


@pytest.mark.usefixtures("token")
def test_query_prints_a_table_while_serve_runs(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance scenario: `rearguard query "select service, count(*) from deploys group
    by 1"` through the running server prints a table of the deploys that came by webhook."""
    sql = "select service, count(*) from deploys group by 1 order by 1"
    assert main(["query", sql, "--url", running.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["service", "count_star()"]
    assert [line.split() for line in lines[2:4]] == [["billing", "1"], ["checkout", "2"]]
    assert lines[-1] == "(2 rows)"


@pytest.mark.usefixtures("token")
def test_query_formats_csv_and_json(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """`--format csv` is a header and rows; `--format json` the route's document."""
    sql = "select deploy_id, sha from deploys where service = 'checkout' order by deployed_at"
    assert main(["query", sql, "--url", running.url, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = sorted(zip(running.deploy_ids["checkout"], SHAS["checkout"], strict=True),
                      key=lambda pair: SHAS["checkout"].index(pair[1]), reverse=True)  # fmt: skip
    assert lines == ["deploy_id,sha", *[f"{d},{s}" for d, s in expected]]
    assert main(["query", sql, "--url", running.url, "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in answer["columns"]] == ["deploy_id", "sha"]
    assert answer["rows"] == [list(pair) for pair in expected]


@pytest.mark.usefixtures("token")
def test_a_refused_query_says_why(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    """The server's refusal reaches the user with its code; the exit status is 2."""
    assert main(["query", "select * from read_csv('/etc/passwd')", "--url", running.url]) == 2
    assert "403 (not_allowed" in capsys.readouterr().err


def test_query_without_the_token_is_refused(
    running: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token in the environment: the server's 401, said."""
    monkeypatch.delenv(ENV_READ_TOKEN, raising=False)
    monkeypatch.delenv(ENV_API_TOKEN, raising=False)
    assert main(["query", "select 1", "--url", running.url]) == 2
    assert "401 (unauthorized" in capsys.readouterr().err


@pytest.mark.usefixtures("token")
def test_a_new_deploy_shows_up_in_queries(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy that arrives after the first query is in the answers within the snapshot's
    age limit."""
    new = _post_deploy(running.url, "billing", "b9" * 20, time.time() - 60)

    def seen() -> bool:
        main(["query", f"select count(*) from deploys where deploy_id = '{new}'",
              "--url", running.url, "--format", "csv"])  # fmt: skip
        return capsys.readouterr().out.splitlines()[1:] == ["1"]

    wait_for(seen, within=20, what="the new deploy in the query's answers")
    running.deploy_ids["billing"].append(new)


@pytest.mark.usefixtures("token")
def test_export_writes_parquet_that_duckdb_reads(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance scenario: `rearguard export --to out/` writes one Parquet file per view,
    a progress line each; DuckDB reads them back. `--partition month` splits by month."""
    out = tmp_path / "out"
    assert main(["export", "--to", str(out), "--url", running.url]) == 0
    progress = capsys.readouterr().err.splitlines()
    assert len(progress) == len(VIEWS)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{v}.parquet" for v in VIEWS)
    con = duckdb.connect()
    counted = con.execute(
        "SELECT service, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 1",
        [str(out / "deploys.parquet")],
    ).fetchall()
    assert counted == [(s, len(running.deploy_ids[s])) for s in sorted(running.deploy_ids)]
    split = tmp_path / "split"
    assert main(["export", "--to", str(split), "--url", running.url, "--partition", "month",
                 "--view", "deploys", "--view", "suspects"]) == 0  # fmt: skip
    months = con.execute(
        "SELECT DISTINCT month FROM read_parquet(?, hive_partitioning = true)",
        [str(split / "deploys" / "**" / "*.parquet")],
    ).fetchall()
    assert {m for (m,) in months} <= {time.strftime("%Y-%m", time.gmtime(t))
                                      for t in (time.time(), time.time() - 7200)}  # fmt: skip
    assert (split / "suspects.parquet").is_file()  # no time column: one file
    assert not [p for p in split.rglob("*") if "partial" in p.name]


def test_the_held_store_points_at_the_server(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--store` on the file serve holds: the error names `--url`."""
    assert main(["query", "select 1", "--store", str(running.store)]) == 2
    err = capsys.readouterr().err
    assert "held by a running `rearguard serve`" in err
    assert "--url" in err


def test_a_server_that_is_down_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: the error names the URL."""
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["query", "select 1", "--url", url]) == 2
    assert f"cannot reach the server at {url}/v1/query" in capsys.readouterr().err


@pytest.mark.usefixtures("token")
def test_backtest_reads_deploys_through_the_running_server(
    running: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backtest --since` while serve holds the store: deploys come through the config's
    server (said on stderr). Prometheus is unreachable here, so each is unjudged (exit 1),
    by id."""
    code = main(["backtest", "--config", str(running.config), "--service", "checkout",
                 "--since", "1d", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert "reading deploys through" in captured.err
    assert code == 1, captured.err
    judged = {row["deploy"] for row in json.loads(captured.out)["deploys"]}
    assert judged == set(running.deploy_ids["checkout"])


def test_query_and_export_on_a_free_store_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--store` on a file no server holds: the same sandbox, the same export."""
    path = tmp_path / "free.duckdb"

    async def seed() -> None:
        store = await Store.open(path)
        try:
            await store.watches.record_deploy(
                Deploy("dep_1", "checkout", "production", "c" * 40, 1_790_000_000.0, "cd",
                       repo="acme/checkout"), "deployed", 1_790_000_000.0)  # fmt: skip
        finally:
            await store.close()

    asyncio.run(seed())
    assert main(["query", "select deploy_id, verdict, phase from deploys", "--store",
                 str(path), "--format", "csv"]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines() == ["deploy_id,verdict,phase", "dep_1,,deployed"]
    assert main(["query", "select * from journal", "--store", str(path)]) == 2
    assert "query_failed" in capsys.readouterr().err
    assert main(["export", "--to", str(tmp_path / "out"), "--store", str(path)]) == 0
    rows = (
        duckdb.connect()
        .execute(
            "SELECT deploy_id FROM read_parquet(?)", [str(tmp_path / "out" / "deploys.parquet")]
        )
        .fetchall()
    )
    assert rows == [("dep_1",)]
