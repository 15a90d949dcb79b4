"""SIGKILL of `rearguard serve` in the middle of a flood of deliveries loses none it acknowledged.

The server runs as a real process with the example config; 300 signed `pull_request` merges and
100 CD deploys are offered at once, and the server is killed the moment the 120th answer 202
arrives. Every delivery answered 202 before the kill must be in the store afterwards, applied:
its journal row, its PR, its deploy and Watch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from attribution.store import Store
from tests.loop_rig import API_TOKEN, WEBHOOK_SECRET
from tests.serve_rig_ingest import (
    BEARER,
    EXAMPLE_REPO,
    PullRequests,
    Server,
    deploy_request,
    example_config,
    free_port,
    server_env,
    wait_up,
)

PRS, DEPLOYS, KILL_AFTER = 300, 100, 120


async def test_sigkill_right_after_a_202_loses_no_acknowledged_delivery(tmp_path: Path) -> None:
    """Everything answered 202 before SIGKILL is in the store, applied, when it is reopened."""
    port, store = free_port(), tmp_path / "store.duckdb"
    nowhere = f"http://127.0.0.1:{free_port()}"  # no GitHub or Prometheus is needed to ingest
    config = example_config(tmp_path / "rearguard.toml", port, store,
                            github=nowhere, prometheus=nowhere)  # fmt: skip
    env = server_env() | {
        "REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_TOKEN": "ghp_not_used_here",
    }  # fmt: skip
    server = Server(config, env, port, tmp_path / "server.log")
    prs = PullRequests()
    acked_prs: set[int] = set()
    acked_deploys: set[str] = set()

    def count_and_kill() -> None:
        if len(acked_prs) + len(acked_deploys) >= KILL_AFTER:
            server.kill()

    async def pr(session: aiohttp.ClientSession, number: int) -> None:
        body = prs.body(number)
        headers = prs.headers(f"kill-{number}", body)
        async with session.post(f"{server.url}/v1/webhooks/github", data=body,
                                headers=headers) as response:  # fmt: skip
            if response.status == 202:
                acked_prs.add(number)
                count_and_kill()

    async def deploy(session: aiohttp.ClientSession, number: int) -> None:
        url = f"{server.url}/v1/deploys"
        async with session.post(url, json=deploy_request(number), headers=BEARER) as response:
            if response.status == 202:
                answer: Any = await response.json()
                acked_deploys.add(answer["id"])
                count_and_kill()

    server.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_up(session, server)
            calls = [pr(session, 1000 + n) for n in range(PRS)]
            calls += [deploy(session, n) for n in range(DEPLOYS)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            assert result is None or isinstance(result, aiohttp.ClientError), result
    finally:
        server.kill()
    acked = len(acked_prs) + len(acked_deploys)
    assert KILL_AFTER <= acked < PRS + DEPLOYS, f"the kill did not land mid-flood ({acked} acked)"

    reopened = await Store.open(store)
    try:
        journal = dict(await reopened.fetch("SELECT id, status FROM journal"))
        written = {pr.number for pr in await reopened.prs.of_repo(EXAMPLE_REPO)}
        watched = {w for (w,) in await reopened.fetch("SELECT deploy_id FROM watches")}
    finally:
        await reopened.close()
    lost = [n for n in acked_prs if journal.get(f"github:kill-{n}") != "applied"]
    assert lost == [], f"{len(lost)} acknowledged deliveries not applied:\n{server.tail()}"
    assert sorted(acked_prs - written) == []
    assert sorted(acked_deploys - watched) == []
    assert all(journal.get(f"cd:{d}") == "applied" for d in acked_deploys)
