"""Loud query failures on the path a real deployment takes: the app as `serve` builds it from its
config file, a real Prometheus refusing one SLI's PromQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fakes.slack import FakeMessage, FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts
from tests.loop_rig import FINAL
from tests.prometheus_server import PrometheusServer
from tests.slack_rig import links, mentions, poll, regress, served

pytestmark = pytest.mark.prometheus

SERVICE = "e2e-loop-typo"
TYPO = 'sum(increase(http_requests_total{code=~"5.."}[$step])) <> 0'
"""`<>` is no PromQL operator: Prometheus answers 400 with its parse error, which names `>`."""


def _with_typo(config: str) -> str:
    """The config with its `bad` query replaced by `TYPO`."""
    start = config.index("bad = '") + len("bad = '")
    return config[:start] + TYPO + config[config.index("'", start) :]


def _notices(slack: FakeSlack) -> list[FakeMessage]:
    key = f"query-failure-{SERVICE}-query_rejected-"  # and the UTC day
    keys = [
        (m, str((m.metadata or {}).get("event_payload", {}).get("key"))) for m in slack.messages
    ]
    return [m for m, k in keys if k.startswith(key)]


async def test_a_promql_typo_is_logged_once_shown_by_readyz_counted_and_posted_once(
    tmp_path: Path, prometheus: PrometheusServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One SLI's `bad` query has a typo: the first evaluation logs it, /readyz is degraded
    naming the service, SLI and Prometheus' error, /metrics counts it, and one Slack notice
    (escaped) names the SLI, however many evaluations failed."""
    caplog.set_level(logging.ERROR, logger="loop.watch.steps")
    async with served(tmp_path, prometheus.url, SERVICE, edit=_with_typo) as loop:
        api, github, slack = loop.api, loop.github, loop.slack
        ready = await api.get("/readyz")
        assert ready == {"status": "ready"}
        deploy_id, _ = await regress(api, github, SERVICE, "Count errors differently")
        ready = await poll(lambda: api.get("/readyz"), lambda v: v["status"] == "degraded",
                           30, "a degraded /readyz")  # fmt: skip
        await poll(lambda: api.get(f"/v1/deploys/{deploy_id}"),
                   lambda v: v["phase"] in FINAL, 90, "a final phase")  # fmt: skip
        async with api.session.get(f"{api.base}/readyz") as response:
            assert response.status == 200  # degraded is not down
        async with api.session.get(f"{api.base}/metrics") as response:
            metrics = await response.text()

    (failure,) = ready["failures"]
    assert (failure["service"], failure["sli"], failure["cause"]) == (
        SERVICE, "http_errors", "query_rejected")  # fmt: skip
    assert "parse error" in failure["reason"]
    logged = [r for r in caplog.records if "cannot be evaluated" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]  # the first evaluation, once
    assert "http_errors" in logged[0].getMessage()
    line = next(x for x in metrics.splitlines()
                if x.startswith("rearguard_sli_query_failures_total{"))  # fmt: skip
    assert f'service="{SERVICE}"' in line
    assert 'cause="query_rejected"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 2  # every failed evaluation, though posted once
    (notice,) = _notices(slack)
    texts = " ".join(mrkdwn_texts(notice))
    assert "http_errors" in texts
    assert "parse error" in texts
    assert "&gt;" in texts  # Prometheus' `>` shown literally, not as markup
    assert mentions(notice) == set()
    assert links(notice) == []
    assert github.created_pulls() == []
