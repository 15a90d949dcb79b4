"""The read endpoints (deploys, incidents, reports) need a token by default: the read token
(`REARGUARD_READ_TOKEN`) or the API token; `[server] open_reads = true` opens them. Health,
readiness, `/metrics` and `/openapi.json` stay open."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from loop.config import ENV_API_TOKEN, ENV_READ_TOKEN
from tests.api_rig import API_TOKEN, ENV, bearer, start_app

READ_TOKEN = "read-token-for-tests"
READS = ["/v1/deploys", "/v1/deploys/dep_x", "/v1/incidents", "/v1/incidents/inc_x",
         "/v1/reports/agents"]  # fmt: skip
OPEN = ["/healthz", "/readyz", "/metrics", "/openapi.json"]


@pytest.mark.parametrize("path", READS)
async def test_reads_need_a_token(aiohttp_client: AiohttpClient, tmp_path: Path, path: str) -> None:
    """No token or a wrong one: 401 in the JSON error shape; the read or the API token: read."""
    client = await start_app(aiohttp_client, tmp_path, env={**ENV, ENV_READ_TOKEN: READ_TOKEN})
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {READ_TOKEN}"}):
        response = await client.get(path, headers=headers)
        assert response.status == 401, (path, headers)
        assert (await response.json())["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for token in (READ_TOKEN, API_TOKEN):
        response = await client.get(path, headers=bearer(token))
        assert response.status in {200, 404}, await response.text()
        if response.status == 404:
            assert (await response.json())["error"]["code"] == "not_found"


async def test_reads_without_any_token_configured_say_so(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """With neither token set and reads not opened, reads answer 503 naming the settings."""
    env = {k: v for k, v in ENV.items() if k != ENV_API_TOKEN}
    client = await start_app(aiohttp_client, tmp_path, env=env)
    response = await client.get("/v1/deploys")
    assert response.status == 503
    message = (await response.json())["error"]["message"]
    assert ENV_READ_TOKEN in message
    assert "open_reads" in message


async def test_open_reads_opens_them(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """`[server] open_reads = true`: reads answer without a token; writes still need one."""
    client = await start_app(aiohttp_client, tmp_path, server={"open_reads": True})
    for path in READS:
        assert (await client.get(path)).status in {200, 404}
    assert (await client.post("/v1/deploys", json={})).status == 401


@pytest.mark.parametrize("path", OPEN)
async def test_probes_and_documents_stay_open(
    aiohttp_client: AiohttpClient, tmp_path: Path, path: str
) -> None:
    """Kubernetes probes, the Prometheus scrape and the OpenAPI document need no token."""
    client = await start_app(aiohttp_client, tmp_path)
    assert (await client.get(path)).status == 200
