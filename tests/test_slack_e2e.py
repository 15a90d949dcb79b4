"""What reaches Slack, on the path a real deployment takes: the app as `serve` builds it from its
config file (slack_sdk and githubkit pointed at the stand-ins), a real Prometheus seeing the
regression, the culprit learned by webhook. Each test has its own service."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.sample_app import SampleApp
from tests.fakes.slack_messages import mrkdwn_texts, render
from tests.loop_rig import FINAL
from tests.prometheus_server import PrometheusServer
from tests.slack_rig import (
    Loop,
    click,
    first_messages,
    links,
    mentions,
    poll,
    regress,
    served,
    signed,
    thread_files,
)

pytestmark = pytest.mark.prometheus


Serve = Callable[[str], contextlib.AbstractAsyncContextManager[Loop]]


@pytest.fixture
def serve(tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp) -> Serve:
    """Serve the app for one service, as `rearguard serve --config` would (`served`), the
    service's error ratio back at 0.5% afterwards."""

    @contextlib.asynccontextmanager
    async def serving(service: str) -> AsyncIterator[Loop]:
        try:
            async with served(tmp_path, prometheus.url, service) as loop:
                yield loop
        finally:
            traffic.configure(service, error_ratio=0.005)

    return serving


async def _final(loop: Loop, deploy_id: str) -> Any:
    view = await poll(lambda: loop.api.get(f"/v1/deploys/{deploy_id}"),
                      lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
    assert view["phase"] == "reverted", view
    return view


@pytest.mark.parametrize(
    ("service", "method"),
    [("e2e-slack-lost-post", "chat.postMessage"),
     ("e2e-slack-lost-upload", "files.completeUploadExternal")],
    ids=["message", "plot"],
)  # fmt: skip
async def test_an_answer_lost_after_slack_posted_leaves_one_message_and_one_plot(
    serve: Serve, traffic: SampleApp, service: str, method: str
) -> None:
    """Slack posts the first message (or shares the plot), then answers 503: the retry looks
    first and finds it, and exactly one first message and one plot exist."""
    async with serve(service) as loop:
        loop.slack.fail_after_next(1, 503, method=method)
        traffic.configure(service, error_ratio=0.05)
        deploy_id, _ = await regress(loop.api, loop.github, service, "Retry payments faster")
        view = await _final(loop, deploy_id)

    lost = loop.slack.calls.index(method)
    assert loop.slack.calls[lost + 1].startswith("conversations.")  # the retry looked first
    (first,) = first_messages(loop.slack, view["incident_id"])
    (plot,) = thread_files(loop.slack, first.ts)
    assert plot.data.startswith(b"\x89PNG")


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


async def test_a_long_retry_after_is_handed_back_to_the_loop(
    serve: Serve, traffic: SampleApp
) -> None:
    """Slack answering 429 with Retry-After: 30 to the first message: the Watch step does not
    sleep it; the notice stays pending and the Watch is due again in 30 s."""
    service = "e2e-slack-429"
    async with serve(service) as loop:
        loop.slack.rate_limit_next(1000, retry_after=30, method="chat.postMessage")
        traffic.configure(service, error_ratio=0.05)
        deploy_id, _ = await regress(loop.api, loop.github, service, "Batch the retries")
        await poll(lambda: loop.api.incident(deploy_id), _reverted, 60, "a completed revert")
        incident = await poll(lambda: loop.api.incident(deploy_id), _notice_erred, 10,
                              "the rate-limited notice handed back to the loop")  # fmt: skip
        view = await loop.api.get(f"/v1/deploys/{deploy_id}")

    (notify,) = [a for a in incident["actions"] if a["kind"] == "notify"]
    assert notify["status"] == "pending"
    assert "rate limited for 30s" in notify["error"]
    assert view["phase"] == "rolling_back"
    assert "retrying in 30s" in view["reason"]
    assert loop.slack.calls.count("chat.postMessage") == 1
    assert loop.slack.messages == []


def _reverted(incident: Any) -> bool:
    actions = incident["actions"] if incident else []
    return any(a["kind"] == "revert" and a["status"] == "completed" for a in actions)


def _notice_erred(incident: Any) -> bool:
    return any(a["kind"] == "notify" and a["error"] for a in incident["actions"])


async def test_clicks_are_answered_within_3s_while_github_is_slow_and_the_message_says_who(
    serve: Serve, traffic: SampleApp
) -> None:
    """GitHub answering each request in 5 s: Confirm and False alarm are each answered within
    Slack's 3 s; then the revert PR is closed and the incident's message, edited in place, says
    who confirmed and who called it a false alarm, with neither button offered again."""
    service = "e2e-slack-buttons"
    async with serve(service) as loop:
        traffic.configure(service, error_ratio=0.05)
        deploy_id, _ = await regress(loop.api, loop.github, service, "Retry refunds faster")
        view = await _final(loop, deploy_id)
        incident_id = view["incident_id"]
        loop.github.delay(5.0)
        for user, action in (("ana", "rearguard_confirm"), ("bo", "rearguard_false_alarm")):
            body = click(incident_id, action, user=user, action_ts=f"{time.time():.6f}")
            started = time.monotonic()
            status, answer = await loop.api.post("/v1/webhooks/slack", data=body,
                                                 headers=signed(body, time.time()))  # fmt: skip
            took = time.monotonic() - started
            assert status == 200, answer
            assert took < 3.0, f"{action} answered in {took:.1f}s"

        def shown() -> str:
            (first,) = first_messages(loop.slack, incident_id)
            return " ".join(render(t).text for t in mrkdwn_texts(first))

        await poll(lambda: _async(shown), lambda text: "closed as a false alarm" in text, 60,
                   "the message saying the revert PR was closed")  # fmt: skip
        loop.github.delay(0)
        (first,) = first_messages(loop.slack, incident_id)
        incident = await loop.api.get(f"/v1/incidents/{incident_id}")

    text = shown()
    assert "Confirmed by ana" in text
    assert "False alarm, says bo" in text
    assert first.edited
    buttons = [e["action_id"] for b in first.blocks or [] if b["type"] == "actions"
               for e in b["elements"]]  # fmt: skip
    assert buttons == ["rearguard_wrong_pr"]
    (close,) = [a for a in incident["actions"] if a["kind"] == "close"]
    assert close["status"] == "completed"


async def _async(read: Callable[[], Any]) -> Any:
    return read()
