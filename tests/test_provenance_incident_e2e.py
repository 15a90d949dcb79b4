"""PR-level provenance on the path a real deployment takes: the app as `serve` builds it from its
config file, a real Prometheus seeing the regression, and a squash-merged PR opened by the Copilot
coding agent (bot author `Copilot`, a `copilot/` branch, a session link, no `Agent-*` trailers)
learned by signed webhook. The incident, the Slack notice and the revert PR each name it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack_messages import mrkdwn_texts, render
from tests.loop_rig import FINAL
from tests.prometheus_server import PrometheusServer
from tests.slack_rig import Api, deliver_and_deploy, first_messages, poll, served

pytestmark = pytest.mark.prometheus

SERVICE = "e2e-provenance-copilot"
BRANCH = "copilot/fix-payment-retries"


async def test_a_copilot_pr_regression_names_copilot_everywhere(
    tmp_path: Path, prometheus: PrometheusServer, traffic: SampleApp
) -> None:
    """A squash-merged Copilot PR with no trailers regresses its deploy: the incident names agent
    copilot, its branch and session link; the Slack notice and the revert PR show provenance."""
    try:
        async with served(tmp_path, prometheus.url, SERVICE) as loop:
            api, github, slack = loop.api, loop.github, loop.slack
            traffic.configure(SERVICE, error_ratio=0.05)
            deploy_id, session = await _merge_and_deploy(api, github)
            view = await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                              lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
            assert view["phase"] == "reverted", view
            incident = await api.get(f"/v1/incidents/{view['incident_id']}")
    finally:
        traffic.configure(SERVICE, error_ratio=0.005)

    source = f"body link {session}; bot author Copilot; branch {BRANCH}"
    provenance = (
        f"agent copilot, session {session}, branch {BRANCH} (known at pr level, from {source})"
    )
    # (a) The incident names the agent, its branch and session, and where that came from.
    [pr] = [s["pr"] for s in incident["suspects"] if s["pr"]]
    assert (pr["author"], pr["head_ref"]) == ("Copilot", BRANCH)
    agent = pr["agent"]
    assert (agent["kind"], agent["name"], agent["session"]) == ("agent", "copilot", session)
    assert (agent["source"], agent["grain"], agent["provenance"]) == (source, "pr", provenance)

    # (b) The Slack notice shows the provenance line: agent, session and source.
    (first,) = first_messages(slack, view["incident_id"])
    shown = "\n".join(render(t).text for t in mrkdwn_texts(first))
    assert provenance in shown

    # (c) The revert PR's body has a Provenance section naming copilot.
    (revert,) = github.created_pulls()
    section = revert.body.split("### Provenance\n", 1)[1].split("\n\n", 1)[0]
    assert section == f"- `#{pr['number']}: {provenance}`"


async def _merge_and_deploy(api: Api, github: FakeGitHub) -> tuple[str, str]:
    """Squash-merge the Copilot PR, deliver its signed webhook and deploy it; the deploy id and
    the PR's session link (in the shape Copilot's session page has on github.com)."""
    initial = github.head_sha()
    number = github.next_number()
    session = f"https://github.com/acme/shop/pull/{number}/agent-sessions/9c1f2e3d-aaaa-bbbb"
    body = f"Retry payments sooner.\n\nFixes #3\n\n[View session]({session})"
    pr = github.merge_pr("Retry payments sooner", body, {"services/shop/retry.py": "# sooner\n"},
                         author="Copilot", method="squash", branch=BRANCH)  # fmt: skip
    assert pr.number == number
    return await deliver_and_deploy(api, github, SERVICE, pr, initial), session
