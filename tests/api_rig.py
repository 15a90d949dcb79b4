"""The app as `build_app` builds it, with every sender's secret set, for the tests of the HTTP
surface's refusals: a real DuckDB store, the embedded metrics source, forge and notifier.

`table_counts` reads the row count of every table of the store, so a test can say that a batch
of refused requests changed nothing at all.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from loop.api.app import build_app
from loop.api.context import DEPS
from loop.clock import ManualClock
from loop.config import (
    ENV_ALERTMANAGER_TOKEN,
    ENV_API_TOKEN,
    ENV_GITHUB_WEBHOOK_SECRET,
    ENV_SENTRY_SECRET,
    ENV_SLACK_SIGNING_SECRET,
    Settings,
    settings_from,
)
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge

API_TOKEN = "api-token-for-tests"
GITHUB_SECRET = "github-secret-for-tests"
SENTRY_SECRET = "sentry-secret-for-tests"
ALERTMANAGER_TOKEN = "alertmanager-token-for-tests"
SLACK_SECRET = "slack-secret-for-tests"
SERVICE = "hello"
REPO = "Codertocat/Hello-World"  # the repository of GitHub's sample webhook payloads
START = 1_790_000_000.0
SHA = "9f3c2a1b7e6d5c4b3a29187f6e5d4c3b2a190817"

ENV = {
    ENV_API_TOKEN: API_TOKEN,
    ENV_GITHUB_WEBHOOK_SECRET: GITHUB_SECRET,
    ENV_SENTRY_SECRET: SENTRY_SECRET,
    ENV_ALERTMANAGER_TOKEN: ALERTMANAGER_TOKEN,
    ENV_SLACK_SIGNING_SECRET: SLACK_SECRET,
}

Client = TestClient[web.Request, web.Application]


def rig_settings(
    store: Path, env: dict[str, str] | None = None, server: dict[str, Any] | None = None
) -> Settings:
    """One service `hello` of GitHub's sample repository, watched in production."""
    service = {
        "repo": REPO,
        "sentry_projects": ["1"],
        "slis": {"errors": {"bad": "sum(bad)", "total": "sum(total)"}},
    }
    data = {"server": {"store": str(store), **(server or {})}, "services": {SERVICE: service}}
    return settings_from(data, ENV if env is None else env, "api_rig")


async def start_app(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    server: dict[str, Any] | None = None,
) -> Client:
    """The app over loopback on a manual clock at `START`, without its scheduler."""
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "repo"), ConsoleNotifier(io.StringIO()))
    settings = rig_settings(tmp_path / "store.duckdb", env, server)
    app = build_app(settings, clock=ManualClock(START), clients=clients, scheduler=False)
    return await aiohttp_client(app)


def bearer(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def github_headers(body: bytes, event: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }


async def table_counts(client: Client) -> dict[str, int]:
    """Rows per table of the running app's store."""
    store = client.app[DEPS].store
    tables = await store.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name"
    )
    counts = {}
    for (table,) in tables:
        [(count,)] = await store.fetch(f'SELECT count(*) FROM "{table}"')
        counts[str(table)] = int(count)
    return counts


async def metric_lines(client: Client, name: str) -> list[str]:
    """The lines of `/metrics` for the metric `name`, without its help and type."""
    text = await (await client.get("/metrics")).text()
    return [line for line in text.splitlines() if line.startswith(name)]
