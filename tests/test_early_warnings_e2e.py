"""Early warnings through `rearguard serve` as a child process: its config file, slack_sdk and
githubkit pointed at the stand-ins, a real Prometheus scraping the sample app, whose service
stops reporting right after its deploy."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts
from tests.loop_rig import BASELINE, FINAL, STEP
from tests.prometheus_server import PrometheusServer
from tests.serve_rig import Server, server_environment, wait_up
from tests.slack_rig import Api, environment, mentions, poll, regress, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.prometheus

SERVICE = "e2e-warn-vanish"


def _warnings(slack: FakeSlack) -> list[FakeMessage]:
    return [m for m in slack.messages if m.thread_ts is None
            and (m.metadata or {}).get("event_payload", {}).get("warning")]  # fmt: skip


async def test_series_that_vanish_after_the_deploy_warn_once_and_revert_nothing(
    tmp_path: Path, prometheus: PrometheusServer, sample_app: SampleApp
) -> None:
    """The service stops reporting right after its deploy: one warning names the SLI within five
    steps, a restart does not post it again, the deploy's view shows it, no revert PR opens."""
    sample_app.configure(SERVICE, rate=200.0, error_ratio=0.005)
    series = f'http_requests_total{{service="{SERVICE}",code="200"}}'
    query = f"count_over_time({series}[{BASELINE + STEP}s])"
    wait_for(lambda: prometheus.instant(f"{query} >= {BASELINE}"), within=120,
             what=f"a baseline of {SERVICE} in Prometheus", interval=0.25)  # fmt: skip
    async with (
        FakeGitHub(tmp_path / "github", repo="acme/shop") as github,
        FakeSlack() as slack,
    ):
        port = unused_port()
        config = write_config(tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb",
                              prometheus=prometheus.url, github=github.url, slack=slack.url,
                              service=SERVICE, listen=f"127.0.0.1:{port}")  # fmt: skip
        env = server_environment() | environment(github, slack)
        server = Server(config, env, port, tmp_path / "server.log")
        server.start()
        try:
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                api = Api(session, server.url)
                await wait_up(session, server)
                deploy_id, _ = await regress(api, github, SERVICE, "Rename the metrics port")
                sample_app.forget(SERVICE)
                deployed = time.time()

                async def warned() -> list[FakeMessage]:
                    return _warnings(slack)

                (warning,) = await poll(warned, bool, 60, f"a warning notice\n{server.tail()}")
                server.kill()  # the Watch resumes with the warning still in its data
                server.start()
                await wait_up(session, server)
                view = await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                                  lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
        finally:
            server.stop()
            sample_app.forget(SERVICE)

    # Within five steps of the deploy (one more for the evaluation that sees the fifth).
    assert float(warning.ts) - deployed <= 6 * STEP
    texts = " ".join(mrkdwn_texts(warning))
    assert "http_errors" in texts
    assert "vanished" in texts.lower()
    assert mentions(warning) == set()
    assert len(_warnings(slack)) == 1  # once per Watch and reason, a restart included
    assert view["phase"] == "inconclusive", view  # missing data never reverts anything
    assert github.created_pulls() == []
    (kept,) = view["warnings"]
    assert kept["status"] == "completed"
    assert kept["detail"]["sli"] == "http_errors"
    assert kept["detail"]["reason"] == "vanished"
