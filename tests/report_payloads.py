"""GitHub webhook bodies for the loop metrics, from the real samples in ../shared/fixtures: a
merged PR, completed workflow runs naming it, and reviews submitted on it.

octokit's samples hold no `pull_request_review` event, so a review is built from the sample PR
and repository with the fields GitHub's webhook schema gives a submitted review (`review.id`,
`state` in lower case, `submitted_at`, `commit_id`, `user`).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.shared_fixtures import load_json

NUMBER = 2  # the sample PR's number
HEAD = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # the sample PR's head


def merged_pr(repo: str, merged_at: str, *, opened_at: str | None = None) -> dict[str, Any]:
    """The sample `pull_request` closed event, as a merge into `repo`."""
    payload: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/pull_request/closed.payload.json")
    )
    payload["repository"]["full_name"] = repo
    pr = payload["pull_request"]
    pr["merged"] = True
    pr["merged_at"] = merged_at
    pr["merge_commit_sha"] = "9f3c2a1b7e6d5c4b3a29187f6e5d4c3b2a190817"
    if opened_at is not None:
        pr["created_at"] = opened_at
    return payload


def workflow_run(repo: str, run_id: int, attempt: int, conclusion: str, at: str) -> dict[str, Any]:
    """The sample `workflow_run` completed event, as an attempt of a run of the sample PR."""
    payload: dict[str, Any] = copy.deepcopy(
        load_json("github-webhooks/workflow_run/completed.with-pull-requests.payload.json")
    )
    payload["repository"]["full_name"] = repo
    run = payload["workflow_run"]
    run.update(id=run_id, run_attempt=attempt, conclusion=conclusion, updated_at=at, head_sha=HEAD)
    run["pull_requests"][0]["number"] = NUMBER
    return payload


def review(repo: str, review_id: int, state: str, at: str) -> dict[str, Any]:
    """A `pull_request_review` submitted on the sample PR."""
    sample = load_json("github-webhooks/pull_request/closed.payload.json")
    sample["repository"]["full_name"] = repo
    return {
        "action": "submitted",
        "review": {
            "id": review_id, "node_id": f"PRR_{review_id}", "user": {"login": "octocat"},
            "body": None, "commit_id": HEAD, "submitted_at": at, "state": state,
            "html_url": f"https://github.com/{repo}/pull/{NUMBER}#pullrequestreview-{review_id}",
            "author_association": "MEMBER",
        },
        "pull_request": sample["pull_request"],
        "repository": sample["repository"],
        "sender": sample["sender"],
    }  # fmt: skip
