"""`GET /v1/reports/{kind}` and the webhooks behind the loop metrics, over loopback: refusals
change nothing, and deliveries out of order or twice count once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp.plugin import AiohttpClient

from loop.api.context import DEPS
from tests import report_payloads as payloads
from tests.api_rig import REPO, Client, bearer, github_headers, start_app, table_counts

pytestmark = pytest.mark.shared_samples


async def _post(client: Client, event: str, delivery: str, payload: Any) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    response = await client.post(
        "/v1/webhooks/github", data=body, headers=github_headers(body, event, delivery)
    )
    return response.status, await response.json()


async def _report(client: Client, kind: str, query: str = "") -> tuple[int, Any]:
    response = await client.get(f"/v1/reports/{kind}{query}", headers=bearer())
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param("weekly", 404, "the kinds are dora, agents, models, specs, areas, loop",
                     id="unknown-kind"),
        pytest.param("dora?since=soon", 400, "since", id="bad-since"),
        pytest.param("dora?since=0d", 400, "since", id="empty-duration"),
        pytest.param("loop?service=nope", 404, "service 'nope'", id="unknown-service"),
        pytest.param("agents?repo=o/r", 404, "repository 'o/r'", id="unknown-repo"),
    ],
)  # fmt: skip
async def test_bad_report_requests_are_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path, path: str, status: int, message: str
) -> None:
    client = await start_app(aiohttp_client, tmp_path)
    found, answer = await _report(client, path)
    assert found == status
    assert message in answer["error"]["message"]


async def test_reports_need_the_read_token(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start_app(aiohttp_client, tmp_path)
    assert (await client.get("/v1/reports/dora")).status == 401


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param(lambda p: p["review"].pop("id"), "missing_field", id="no-review-id"),
        pytest.param(lambda p: p["review"].update(state="lgtm"), "bad_field", id="bad-state"),
        pytest.param(lambda p: p["review"].update(submitted_at="noon"), "bad_field",
                     id="bad-time"),
        pytest.param(lambda p: p["pull_request"].update(number="2"), "bad_field",
                     id="number-as-text"),
    ],
)  # fmt: skip
async def test_bad_review_changes_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, change: Any, code: str
) -> None:
    client = await start_app(aiohttp_client, tmp_path)
    before = await table_counts(client)
    payload = payloads.review(REPO, 7, "approved", "2026-09-01T10:00:00Z")
    change(payload)
    status, answer = await _post(client, "pull_request_review", "bad-1", payload)
    assert (status, answer["error"]["code"]) == (400, code)
    assert await table_counts(client) == before


async def test_loop_metrics_count_each_delivery_once(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Reviews and CI runs before the PR's merge, redelivered, and told twice under new delivery
    ids, count once each; the PR's lead time comes from its `created_at`."""
    client = await start_app(aiohttp_client, tmp_path)
    deliveries = [
        ("pull_request_review", "r-1", payloads.review(REPO, 7, "changes_requested",
                                                       "2026-09-01T09:00:00Z")),
        ("workflow_run", "w-2", payloads.workflow_run(REPO, 11, 2, "success",
                                                      "2026-09-01T09:40:00Z")),
        ("workflow_run", "w-1", payloads.workflow_run(REPO, 11, 1, "failure",
                                                      "2026-09-01T09:20:00Z")),
        ("pull_request_review", "r-1", payloads.review(REPO, 7, "changes_requested",
                                                       "2026-09-01T09:00:00Z")),  # redelivered
        ("pull_request_review", "r-1b", payloads.review(REPO, 7, "changes_requested",
                                                        "2026-09-01T09:00:00Z")),  # told again
        ("workflow_run", "w-1b", payloads.workflow_run(REPO, 11, 1, "failure",
                                                       "2026-09-01T09:20:00Z")),
        ("pull_request_review", "r-2", payloads.review(REPO, 8, "approved",
                                                       "2026-09-01T10:00:00Z")),
        ("pull_request_review", "r-3", payloads.review(REPO, 9, "commented",
                                                       "2026-09-01T10:05:00Z")),
        ("pull_request", "p-1", payloads.merged_pr(REPO, "2026-09-01T11:00:00Z",
                                                   opened_at="2026-09-01T08:00:00Z")),
    ]  # fmt: skip
    for event, delivery, payload in deliveries:
        status, _ = await _post(client, event, delivery, payload)
        assert status in (200, 202)
    status, document = await _report(client, "loop", f"?repo={REPO}")
    assert status == 200
    [row] = document["rows"]
    assert (row["repo"], row["week"], row["prs"]) == (REPO, "2026-W36", 1)
    assert row["open_to_merge"]["value"] == 3 * 3600
    assert row["ci_attempts"]["value"] == 2  # attempt 1 failed, attempt 2 passed
    assert row["verification_pass_rate"]["value"] == 0.0
    assert row["review_rounds"]["value"] == 2  # changes requested, then approved; a comment not
    assert row["merge_to_deploy"]["reason"] == "none of the 1 PRs merged this week was deployed yet"
    assert document["incident_rows"] == []
    [(reviews,)] = await client.app[DEPS].store.fetch("SELECT count(*) FROM pr_reviews")
    assert reviews == 3
