"""SIGKILL right after the first Slack message landed, before its answer reached Rearguard:
the restarted `rearguard serve` posts no second first message, however busy the channel got
meanwhile, and uploads the SLI plot into the thread once. SIGKILL right after a False alarm
click was answered, its revert PR not yet closed: the restarted server closes it and redraws the
message. The server runs as a real process
with a TOML config, against a real Prometheus and the GitHub and Slack stand-ins."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts, render
from tests.loop_rig import FINAL, SLACK_CHANNEL
from tests.prometheus_server import PrometheusServer
from tests.slack_rig import (
    Api,
    click,
    environment,
    first_messages,
    poll,
    regress,
    signed,
    thread_files,
)
from tests.slack_rig import write_config as write_slack_config
from tests.test_crash_resume import Server

pytestmark = pytest.mark.prometheus


@pytest.fixture
async def stand_ins(tmp_path: Path) -> AsyncIterator[tuple[FakeGitHub, FakeSlack, dict[str, str]]]:
    """The GitHub and Slack stand-ins, and the server's environment: this one's, less any real
    GitHub or Slack credentials, plus the stand-ins' secrets."""
    github = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await github.start()
    slack = FakeSlack()
    await slack.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "SLACK"))}
    yield github, slack, env | environment(github, slack)
    await slack.close()
    await github.close()


async def _ready(api: Api, server: Server) -> None:
    async def ready() -> int:
        try:
            async with api.session.get(f"{api.base}/readyz") as response:
                return response.status
        except aiohttp.ClientError:
            return 0

    await poll(ready, lambda status: status == 200, 30, f"readiness\n{server.tail()}")


@pytest.mark.parametrize(
    "case", [("e2e-slack-crash-busy", 150), ("e2e-slack-crash-plot", 0)], ids=["busy", "quiet"]
)
async def test_sigkill_after_the_first_message_resumes_to_one_message_and_one_plot(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    stand_ins: tuple[FakeGitHub, FakeSlack, dict[str, str]],
    case: tuple[str, int],
) -> None:
    """Killed once Slack holds the first message, `others` messages posted before the restart:
    exactly one first message for the incident, and one plot in its thread."""
    (service, others), (github, slack, env) = case, stand_ins
    port = unused_port()
    config = write_slack_config(
        tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb", prometheus=prometheus.url,
        github=github.url, slack=slack.url, service=service, listen=f"127.0.0.1:{port}",
    )  # fmt: skip
    server = Server(config, env, port, tmp_path / "server.log")
    # Slack keeps the first message and never answers: the kill lands before Rearguard knows.
    slack.drop_after_next(1, method="chat.postMessage", hold=120)
    server.start()
    try:
        # No kept-alive connection outlives the server it was made to: one connection a request.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(session, server.url)
            await _ready(api, server)
            traffic.configure(service, error_ratio=0.05)
            deploy_id, _ = await regress(api, github, service, "Retry payments faster")
            await poll(_top_level(slack), bool, 90, f"the first message\n{server.tail()}")
            server.kill()
            traffic.configure(service, error_ratio=0.005)
            for i in range(others):
                slack.post_as(SLACK_CHANNEL, f"deploy chatter {i}")

            server.start()
            await _ready(api, server)
            view = await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                              lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
            incident = await api.incident(deploy_id)  # final: every follow-up action is done
    finally:
        server.stop()
        traffic.configure(service, error_ratio=0.005)
    assert view["phase"] == "reverted", view
    (first,) = first_messages(slack, incident["id"])
    (plot,) = thread_files(slack, first.ts)
    assert plot.data.startswith(b"\x89PNG")
    assert len(github.created_pulls()) == 1


def _top_level(slack: FakeSlack) -> Any:
    async def read() -> list[Any]:
        return [m for m in slack.messages if m.thread_ts is None and m.metadata]

    return read


async def test_sigkill_after_a_click_was_answered_finishes_its_work_on_restart(
    tmp_path: Path,
    prometheus: PrometheusServer,
    traffic: SampleApp,
    stand_ins: tuple[FakeGitHub, FakeSlack, dict[str, str]],
) -> None:
    """A False alarm answered 200 while GitHub holds the close: SIGKILL. The restarted server
    takes the click up from the journal, closes the revert PR and redraws the message."""
    service, (github, slack, env) = "e2e-slack-crash-click", stand_ins
    port = unused_port()
    config = write_slack_config(
        tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb", prometheus=prometheus.url,
        github=github.url, slack=slack.url, service=service, listen=f"127.0.0.1:{port}",
    )  # fmt: skip
    server = Server(config, env, port, tmp_path / "server.log")
    server.start()
    try:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = Api(session, server.url)
            await _ready(api, server)
            traffic.configure(service, error_ratio=0.05)
            deploy_id, _ = await regress(api, github, service, "Retry payments faster")
            view = await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                              lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
            assert view["phase"] == "reverted", view
            traffic.configure(service, error_ratio=0.005)
            github.delay(8.0)  # the close waits on GitHub: the kill lands before it is done
            body = click(view["incident_id"], "rearguard_false_alarm", action_ts=f"{time.time()}")
            status, answer = await api.post("/v1/webhooks/slack", data=body,
                                            headers=signed(body, time.time()))  # fmt: skip
            assert status == 200, answer
            server.kill()
            github.delay(0)
            assert [p.state for p in github.created_pulls()] == ["open"]

            server.start()
            await _ready(api, server)

            async def shown() -> str:
                (first,) = first_messages(slack, view["incident_id"])
                return " ".join(render(t).text for t in mrkdwn_texts(first))

            text = await poll(shown, lambda t: "closed as a false alarm" in t, 60,
                              f"the redrawn message\n{server.tail()}")  # fmt: skip
    finally:
        server.stop()
        traffic.configure(service, error_ratio=0.005)
    assert "False alarm, says ana" in text
    assert [p.state for p in github.created_pulls()] == ["closed"]
