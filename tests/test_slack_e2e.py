"""What reaches Slack, on the path a real deployment takes: the app as `serve` builds it from its
config file (slack_sdk and githubkit pointed at the stand-ins), a real Prometheus seeing the
regression, the culprit learned by webhook. Each test has its own service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from loop.api.app import build_app
from loop.config import load_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import FINAL
from tests.prometheus_server import PrometheusServer
from tests.slack_rig import (
    Api,
    environment,
    first_messages,
    links,
    mentions,
    poll,
    regress,
    write_config,
)

pytestmark = pytest.mark.prometheus


class Loop:
    """The served app and its stand-ins for one test."""

    def __init__(self, api: Api, github: FakeGitHub, slack: FakeSlack) -> None:
        self.api, self.github, self.slack = api, github, slack


Serve = Callable[[str], contextlib.AbstractAsyncContextManager[Loop]]


@pytest.fixture
def serve(tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp) -> Serve:
    """Serve the app for one service, as `rearguard serve --config` would. The app starts and
    stops inside the test's own task, as under `web.run_app` (githubkit keeps its connection pool
    in a ContextVar, closed only from the context that opened it)."""

    @contextlib.asynccontextmanager
    async def serving(service: str) -> AsyncIterator[Loop]:
        async with (
            FakeGitHub(tmp_path / "github", repo="acme/shop") as github,
            FakeSlack() as slack,
        ):
            config = write_config(tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb",
                                  prometheus=prometheus.url, github=github.url, slack=slack.url,
                                  service=service)  # fmt: skip
            app = build_app(load_settings(config, environment(github, slack)))
            try:
                async with TestClient(TestServer(app)) as client:
                    yield Loop(Api(client.session, str(client.make_url(""))), github, slack)
            finally:
                traffic.configure(service, error_ratio=0.005)

    return serving


async def _final(loop: Loop, deploy_id: str) -> Any:
    view = await poll(lambda: loop.api.get(f"/v1/deploys/{deploy_id}"),
                      lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
    assert view["phase"] == "reverted", view
    return view


async def test_a_pr_title_with_a_channel_mention_notifies_nobody(
    serve: Serve, traffic: SampleApp
) -> None:
    """A PR titled `Stop paging <!channel> on <Money> & retries`: no message of the thread
    mentions anyone, and the suspect's link shows the title as written."""
    service, title = "e2e-slack-escape", "Stop paging <!channel> on <Money> & retries"
    async with serve(service) as loop:
        traffic.configure(service, error_ratio=0.05)
        deploy_id, pr = await regress(loop.api, loop.github, service, title)
        view = await _final(loop, deploy_id)

    (first,) = first_messages(loop.slack, view["incident_id"])
    assert mentions(first) == set()
    assert (pr.html_url, f"#{pr.number} {title}") in links(first)
    thread = [m for m in loop.slack.messages if m.thread_ts == first.ts]
    assert thread  # the revert and fix replies
    assert all(mentions(m) == set() for m in thread)
