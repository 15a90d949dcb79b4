"""Early warnings on the path a real deployment takes: the app as `serve` builds it from its
config file (slack_sdk and githubkit pointed at the stand-ins), a real Prometheus scraping the
sample app, whose service stops reporting right after its deploy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from loop.api.app import build_app
from loop.config import load_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts
from tests.loop_rig import BASELINE, FINAL, STEP
from tests.prometheus_server import PrometheusServer
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
    steps, the deploy's view shows it, and no revert PR is opened."""
    sample_app.configure(SERVICE, rate=200.0, error_ratio=0.005)
    series = f'http_requests_total{{service="{SERVICE}",code="200"}}'
    query = f"count_over_time({series}[{BASELINE + STEP}s])"
    wait_for(lambda: prometheus.instant(f"{query} >= {BASELINE}"), within=120,
             what=f"a baseline of {SERVICE} in Prometheus", interval=0.25)  # fmt: skip
    async with (
        FakeGitHub(tmp_path / "github", repo="acme/shop") as github,
        FakeSlack() as slack,
    ):
        config = write_config(tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb",
                              prometheus=prometheus.url, github=github.url, slack=slack.url,
                              service=SERVICE)  # fmt: skip
        app = build_app(load_settings(config, environment(github, slack)))
        async with TestClient(TestServer(app)) as client:
            api = Api(client.session, str(client.make_url("")))
            try:
                deploy_id, _ = await regress(api, github, SERVICE, "Rename the metrics port")
                sample_app.forget(SERVICE)
                deployed = time.time()
                (warning,) = await poll(lambda: _async(_warnings(slack)), bool, 60,
                                        "a warning notice")  # fmt: skip
                view = await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                                  lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
            finally:
                sample_app.forget(SERVICE)

    # Within five steps of the deploy (one more for the evaluation that sees the fifth).
    assert float(warning.ts) - deployed <= 6 * STEP
    texts = " ".join(mrkdwn_texts(warning))
    assert "http_errors" in texts
    assert "vanished" in texts.lower()
    assert mentions(warning) == set()
    assert len(_warnings(slack)) == 1  # once per Watch and reason, however many steps saw it
    assert view["phase"] == "inconclusive", view  # missing data never reverts anything
    assert github.created_pulls() == []
    (kept,) = view["warnings"]
    assert kept["status"] == "completed"
    assert kept["detail"]["sli"] == "http_errors"
    assert kept["detail"]["reason"] == "vanished"


async def _async(value: list[FakeMessage]) -> list[FakeMessage]:
    return value
