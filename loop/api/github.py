"""`POST /v1/webhooks/github`: what GitHub tells Rearguard (X-Hub-Signature-256).

Merged PRs (`pull_request` closed by a merge) become PR records with their agent identity and
opening time; a Rearguard revert PR closed unmerged is applied to its incident (a person decided
against it, see `loop.api.revert_events`); `deployment_status` success is a deploy; `workflow_run`
and `check_suite` are CI evidence. Every delivery is journaled and deduplicated on
`X-GitHub-Delivery`; `pull_request_review` submitted is a review round (kept once per review id,
so a review told twice or out of order counts once); anything else is acknowledged as ignored.
A merged PR and a deploy are journaled with their rows in the store's group commit; CI runs,
reviews and closed reverts are applied after their journal row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from attribution.records import Deploy, MergedPR
from attribution.store_journal import Applied, Journaled
from attribution.store_reports import Review
from loop.api.context import DEPS, SETTINGS, wake
from loop.api.evidence import pr_opened, record_ci, record_pr_facts
from loop.api.evidence_ingest import GITHUB_CI_EVENTS, CiRun, parse_ci, parse_review
from loop.api.fields import Ignored, IngestError, read_json
from loop.api.ingest import check_github_signature, parse_deployment_status, parse_merged_pr
from loop.api.revert_events import ClosedRevert, apply_closed_revert, parse_closed_revert
from loop.api.webhook import Parsed, Sender, receive
from loop.watch.phases import Phase


@dataclass(frozen=True, slots=True)
class GitHubEvent:
    """What one delivery holds for Rearguard (at least one field is set)."""

    data: Any
    deploy: Deploy | None
    pr: MergedPR | None
    ci: CiRun | None
    closed: ClosedRevert | None
    review: Review | None = None


def _headers(request: web.Request) -> tuple[str, str]:
    return request.headers.get("X-GitHub-Event", ""), request.headers.get("X-GitHub-Delivery", "")


def _verify(request: web.Request, body: bytes) -> None:
    settings = request.app[SETTINGS]
    event, delivery = _headers(request)
    secret = settings.github_webhook_secret.reveal() if settings.github_webhook_secret else None
    check_github_signature(
        body, event, delivery, request.headers.get("X-Hub-Signature-256"), secret
    )


def _parse(request: web.Request, body: bytes) -> Parsed[GitHubEvent]:
    event, delivery = _headers(request)
    settings = request.app[SETTINGS]
    data = read_json(body)
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    found: Deploy | MergedPR | CiRun | Review | Ignored = Ignored(
        "event is not one Rearguard reads"
    )
    closed = None
    if event == "deployment_status":
        found = parse_deployment_status(data, settings)
    elif event == "pull_request":
        closed = parse_closed_revert(data, settings)
        found = parse_merged_pr(data, settings)
    elif event in GITHUB_CI_EVENTS:
        found = parse_ci(event, data, settings)
    elif event == "pull_request_review":
        found = parse_review(data, settings)
    if isinstance(found, Ignored) and closed is None:
        return Parsed(event, delivery, data, None, found.reason)
    record = None if isinstance(found, Ignored) else found
    return Parsed(event, delivery, data, GitHubEvent(
        data,
        record if isinstance(record, Deploy) else None,
        record if isinstance(record, MergedPR) else None,
        record if isinstance(record, CiRun) else None,
        closed,
        record if isinstance(record, Review) else None,
    ))  # fmt: skip


async def _apply(request: web.Request, found: GitHubEvent) -> dict[str, Any]:
    deps = request.app[DEPS]
    now = deps.clock.now()
    if found.pr is not None:
        await deps.store.prs.record_pr(found.pr, now)
        await record_pr_facts(deps.store, found.pr, found.data)
    if found.ci is not None:
        await record_ci(deps.store, found.ci)
    if found.review is not None:
        await deps.store.reports.record_review(found.review)
    if found.deploy is not None:
        await deps.store.watches.record_deploy(found.deploy, Phase.DEPLOYED, now)
        wake(request.app)
    if found.closed is not None:
        await apply_closed_revert(deps.store, found.closed, now)
        wake(request.app)
    return {}


def _rows(request: web.Request, found: GitHubEvent) -> Applied | None:
    """A merged PR (with when it was opened) or a deploy is rows only, journaled together;
    CI runs, reviews and closed reverts go through `_apply`."""
    if found.ci is not None or found.closed is not None or found.review is not None:
        return None
    opened = pr_opened(found.pr, found.data) if found.pr is not None else None
    return Applied(
        prs=(found.pr,) if found.pr is not None else (),
        opened=(opened,) if opened is not None else (),
        deploys=(found.deploy,) if found.deploy is not None else (),
        phase=Phase.DEPLOYED,
    )


def _applied(request: web.Request, found: GitHubEvent, done: Journaled) -> dict[str, Any]:
    if found.deploy is not None:
        wake(request.app)
    return {}


GITHUB: Sender[GitHubEvent] = Sender(
    "github", _verify, _parse, _apply, rows=_rows, applied=_applied,
)  # fmt: skip


async def post_github(request: web.Request) -> web.Response:
    """Verify, journal (deduped on X-GitHub-Delivery), then apply."""
    return await receive(request, GITHUB)


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/webhooks/github", post_github)]
