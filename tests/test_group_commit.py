"""Group commit of webhook deliveries on the app as `build_app` builds it, over loopback.

Many deliveries arriving together are journaled (and their PR, deploy and Watch rows written) in
few transactions, each answered only once its transaction has committed; duplicates of one
delivery id, in one batch or across batches, are applied once; one bad delivery does not fail the
others; and a store call of a Watch never queues behind the whole flood, only behind the one
batch being written.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import threading
import time
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from attribution.store import Store
from loop.api.app import build_app
from loop.api.context import DEPS
from loop.clock import ManualClock
from loop.config import ENV_API_TOKEN, ENV_GITHUB_WEBHOOK_SECRET, settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET, sign
from tests.serve_rig_ingest import (
    BEARER,
    EXAMPLE_CONFIG,
    EXAMPLE_REPO,
    PullRequests,
    deploy_request,
)
from tests.shared_fixtures import load_json

Client = TestClient[web.Request, web.Application]
ONE_BATCH = 64  # the most deliveries one transaction takes


async def start(tmp_path: Path) -> Client:
    """The app on loopback with the example config's service (its store in `tmp_path`), and a
    client with no connection limit (a flood is many connections at once, as GitHub's are)."""
    config = tomllib.loads(EXAMPLE_CONFIG.read_text())
    config["server"] = {"store": str(tmp_path / "store.duckdb")}
    env = {ENV_API_TOKEN: API_TOKEN, ENV_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET}
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "repo"), ConsoleNotifier(io.StringIO()))
    app = build_app(settings_from(config, env, "example"), clock=ManualClock(1_790_000_000.0),
                    clients=clients, scheduler=False)  # fmt: skip
    test_client: Client = TestClient(TestServer(app), connector=aiohttp.TCPConnector(limit=0))
    await test_client.start_server()
    return test_client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    started = await start(tmp_path)
    yield started
    await started.close()


async def until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.005)


async def post_pr(client: Client, prs: PullRequests, number: int, delivery: str) -> Any:
    body = prs.body(number)
    response = await client.post("/v1/webhooks/github", data=body,
                                 headers=prs.headers(delivery, body))  # fmt: skip
    return response.status, await response.json()


def ci_run(run: int) -> bytes:
    """GitHub's sample completed `workflow_run` on PR #2 of the example repository, run `run`."""
    data: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/workflow_run/completed.with-pull-requests.payload.json")
    )
    data["workflow_run"].update(id=run, pull_requests=[{"number": 2}])
    data["repository"]["full_name"] = EXAMPLE_REPO
    return json.dumps(data).encode()


async def post_ci(client: Client, run: int, delivery: str) -> Any:
    body = ci_run(run)
    headers = {"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}  # fmt: skip
    response = await client.post("/v1/webhooks/github", data=body, headers=headers)
    return response.status, await response.json()


async def post_deploy(client: Client, number: int) -> Any:
    response = await client.post("/v1/deploys", json=deploy_request(number), headers=BEARER)
    return response.status, await response.json()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


async def test_a_store_call_waits_behind_one_batch_not_the_whole_flood(client: Client) -> None:
    """200 deliveries waiting for the writer: a store call made after them (as a Watch's is)
    runs once at most one batch of them is written, not after all 200."""
    store: Store = client.app[DEPS].store
    running, release = threading.Event(), threading.Event()

    def hold(cur: duckdb.DuckDBPyConnection) -> None:
        running.set()
        release.wait(30)

    held = asyncio.ensure_future(store.writer.call(hold))
    await until(running.is_set, "the writer is held")
    prs, flood = PullRequests(), 200
    posts = [
        asyncio.ensure_future(post_pr(client, prs, n, f"flood-{n}")) for n in range(1, flood + 1)
    ]
    await until(lambda: store.writer.waiting >= flood, "every delivery waits for the writer")

    def journaled(cur: duckdb.DuckDBPyConnection) -> int:
        return int(cur.execute("SELECT count(*) FROM journal").fetchall()[0][0])

    probe = asyncio.ensure_future(store.writer.call(journaled))
    release.set()
    await held
    ahead = await probe
    answers = await asyncio.gather(*posts)
    assert ahead <= ONE_BATCH, f"the store call waited behind {ahead} deliveries"
    assert [status for status, _ in answers] == [202] * flood


async def test_concurrent_deliveries_and_their_duplicates_are_applied_once(
    client: Client, tmp_path: Path
) -> None:
    """Each delivery sent twice at once among many: one answer accepted, one duplicate; every PR,
    deploy and Watch written once, every journal row applied."""
    prs = PullRequests()
    pr_calls = [post_pr(client, prs, n, f"twice-{n}") for n in range(1, 41) for _ in range(2)]
    deploy_calls = [post_deploy(client, n) for n in range(20) for _ in range(2)]
    answers = await asyncio.gather(*pr_calls, *deploy_calls)
    by_delivery: dict[str, list[str]] = {}
    for status, answer in answers[: len(pr_calls)]:
        assert status in {200, 202}, answer
        by_delivery.setdefault(answer["delivery"], []).append(answer["status"])
    assert {d: sorted(s) for d, s in by_delivery.items()} == {
        f"twice-{n}": ["accepted", "duplicate"] for n in range(1, 41)
    }
    created = Counter((a["id"], a["created"]) for s, a in answers[len(pr_calls) :] if s == 202)
    assert sorted(created.values()) == [1] * 40  # per deploy: once created, once already there
    assert len({deploy for deploy, _ in created}) == 20
    await client.close()

    store = tmp_path / "store.duckdb"
    assert rows(store, "SELECT status, count(*) FROM journal GROUP BY ALL") == [("applied", 60)]
    assert rows(store, f"SELECT count(*) FROM pull_requests WHERE repo = '{EXAMPLE_REPO}'") == [
        (40,)
    ]
    assert rows(store, "SELECT count(*) FROM agent_sessions") == [(40,)]
    assert rows(store, "SELECT count(*), count(DISTINCT deploy_id) FROM watches") == [(20, 20)]
    assert rows(store, "SELECT count(*) FROM transitions") == [(20,)]


async def test_a_failing_delivery_does_not_fail_the_others_in_its_batch(
    client: Client, tmp_path: Path
) -> None:
    """A PR whose number the store cannot hold, among 30 good ones sent at once: the good ones
    are answered 202 and written, the bad one is refused and leaves no applied row."""
    prs = PullRequests()
    bad = 2**40
    calls = [post_pr(client, prs, n, f"good-{n}") for n in range(1, 16)]
    calls.append(post_pr(client, prs, bad, "bad"))
    calls += [post_pr(client, prs, n, f"good-{n}") for n in range(16, 31)]
    answers = await asyncio.gather(*calls)
    statuses = {answer.get("delivery", "bad"): status for status, answer in answers}
    assert statuses.pop("bad") >= 400
    assert set(statuses.values()) == {202}
    await client.close()
    store = tmp_path / "store.duckdb"
    assert rows(store, "SELECT count(*) FROM pull_requests") == [(30,)]
    applied = rows(store, "SELECT id FROM journal WHERE status = 'applied'")
    assert ("github:bad",) not in applied


async def test_concurrent_copies_of_a_ci_run_are_applied_once(client: Client) -> None:
    """A CI run (applied after its journal row, not in the batch) sent twice at once: one copy
    accepted, the other a duplicate while the first is being applied."""
    answers = await asyncio.gather(
        *(post_ci(client, 9000 + n, f"ci-{n}") for n in range(20) for _ in range(2))
    )
    by_delivery: dict[str, list[str]] = {}
    for _, answer in answers:
        by_delivery.setdefault(answer["delivery"], []).append(answer["status"])
    assert {d: sorted(s) for d, s in by_delivery.items()} == {
        f"ci-{n}": ["accepted", "duplicate"] for n in range(20)
    }


async def test_a_delivery_a_dead_process_left_accepted_is_applied_on_redelivery(
    tmp_path: Path,
) -> None:
    """Journaled `accepted` by a process that died before applying them, a merged PR and a CI
    run are applied when GitHub redelivers them, and a third copy is a duplicate."""
    store = await Store.open(tmp_path / "store.duckdb")
    for delivery, event in (("stale-pr", "pull_request"), ("stale-ci", "workflow_run")):
        await store.journal.record("github", event, delivery, status="accepted", received_at=1.0)
    await store.close()
    client = await start(tmp_path)
    try:
        prs = PullRequests()
        assert await post_pr(client, prs, 77, "stale-pr") == (
            202, {"status": "accepted", "delivery": "stale-pr"}
        )  # fmt: skip
        assert (await post_ci(client, 9100, "stale-ci"))[1]["status"] == "accepted"
        assert (await post_pr(client, prs, 77, "stale-pr"))[1]["status"] == "duplicate"
        assert (await post_ci(client, 9100, "stale-ci"))[1]["status"] == "duplicate"
    finally:
        await client.close()
    path = tmp_path / "store.duckdb"
    assert rows(path, "SELECT status, count(*) FROM journal GROUP BY ALL") == [("applied", 2)]
    assert rows(path, "SELECT number FROM pull_requests") == [(77,)]
    assert rows(path, "SELECT DISTINCT number FROM ci_runs") == [(2,)]
