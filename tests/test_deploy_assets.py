"""What a user copies from deploy/ works as documented: the example config loads, and the CD
script records a deploy in a running Rearguard."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from attribution.store import Store
from loop.api.app import build_app
from loop.config import load_settings, settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_example_config_loads_as_documented() -> None:
    """deploy/rearguard.example.toml validates, with its three SLIs and secrets from the env."""
    settings = load_settings(DEPLOY / "rearguard.example.toml", {"GITHUB_TOKEN": "ghp_x"})
    service = settings.services["checkout"]
    assert [s.name for s in service.slis] == ["http_errors", "slow_requests", "memory"]
    assert (service.step, service.watch, service.baseline) == (15.0, 1800.0, 1800.0)
    assert settings.github_token is not None
    assert "ghp_x" not in repr(settings)
    assert settings.open_reads is False  # reads need a token unless a user opens them


async def test_cd_script_records_a_deploy(tmp_path: Path, aiohttp_server: Any) -> None:
    """deploy/cd/notify-deploy.sh posts a deploy that the API then shows."""
    settings = settings_from(
        {
            "server": {"store": str(tmp_path / "s.duckdb")},
            "services": {
                "checkout": {"repo": "acme/checkout", "slis": {"e": {"bad": "b", "total": "t"}}}
            },
        },
        {"REARGUARD_API_TOKEN": "cd-token"},
        "test",
    )
    clients = (SimulatedSource(), LocalGitForge(tmp_path), ConsoleNotifier(io.StringIO()))
    server = await aiohttp_server(build_app(settings, clients=clients, scheduler=False))
    sha, previous = "a" * 40, "b" * 40
    process = await asyncio.create_subprocess_exec(
        str(DEPLOY / "cd" / "notify-deploy.sh"), "checkout", "production", sha, previous,
        env={"REARGUARD_URL": str(server.make_url("/")), "REARGUARD_API_TOKEN": "cd-token",
             "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert b'"id"' in out
    await server.close()
    store = await Store.open(tmp_path / "s.duckdb")
    try:
        (deploy,) = await store.watches.deploys()
        assert (deploy.sha, deploy.previous_sha, deploy.environment) == (
            sha,
            previous,
            "production",
        )
    finally:
        await store.close()
