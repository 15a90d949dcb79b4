"""Ingest: incoming deploys and webhooks, checked and parsed into records where they enter.

Signature checks compare in constant time over the raw body; a payload becomes a frozen record
here or is refused with an `IngestError` carrying the HTTP status and a message a sender can act
on. No `dict` from a payload travels further than this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from githubkit.webhooks import verify as verify_github

from attribution.identity import identify
from attribution.records import Deploy, MergedPR
from loop.api.fields import (
    NOT_CONFIGURED,
    Ignored,
    IngestError,
    bad_field,
    parse_time,
    read_field,
    read_number,
    read_repo,
    read_sha,
    read_url,
)
from loop.config import ENV_API_TOKEN, Settings


def check_bearer(
    header: str | None, expected: str | tuple[str, ...] | None, setting: str = ENV_API_TOKEN
) -> None:
    """Refuse a request without one of the configured bearer tokens, or when none is set (503
    naming `setting`, the variable that would set it)."""
    tokens = (expected,) if isinstance(expected, str) else expected or ()
    if not tokens:
        raise IngestError(503, "not_configured", f"{setting} is not set on the server")
    scheme, _, token = (header or "").partition(" ")
    # Every token is compared, so the time taken says nothing about which one came close.
    matches = [hmac.compare_digest(token.encode(), t.encode()) for t in tokens]
    if scheme.lower() != "bearer" or not any(matches):
        raise IngestError(401, "unauthorized", "missing or wrong bearer token")


def check_read(header: str | None, settings: Settings) -> None:
    """The read endpoints' check: the read or API token, unless `[server] open_reads`."""
    if settings.open_reads:
        return
    if not settings.read_tokens():
        raise IngestError(
            503, "not_configured",
            "set REARGUARD_READ_TOKEN (or REARGUARD_API_TOKEN) on the server, or "
            "`open_reads = true` in [server] to serve reads without a token",
        )  # fmt: skip
    check_bearer(header, settings.read_tokens())


def check_github_signature(
    body: bytes, event: str, delivery: str, signature: str | None, secret: str | None
) -> None:
    """Verify the delivery headers and `X-Hub-Signature-256` (SHA-1 is refused, never used)."""
    if not delivery or not event:
        raise IngestError(
            400, "missing_header", "X-GitHub-Event and X-GitHub-Delivery are required"
        )
    if secret is None:
        raise IngestError(503, "not_configured",
                          "REARGUARD_GITHUB_WEBHOOK_SECRET is not set on the server")  # fmt: skip
    if not signature or not signature.startswith("sha256="):
        raise IngestError(401, "bad_signature", "missing X-Hub-Signature-256 header")
    if not verify_github(secret, body, signature):
        raise IngestError(401, "bad_signature", "X-Hub-Signature-256 does not match the body")


def deploy_id_for(service: str, environment: str, sha: str, finished_at: float) -> str:
    """Deterministic, so a CD hook that posts the same deploy twice makes one deploy."""
    digest = hashlib.sha256(f"{service}|{environment}|{sha}|{finished_at:.3f}".encode())
    return "dep_" + digest.hexdigest()[:16]


def parse_deploy_request(data: Any, settings: Settings, now: float) -> Deploy:
    """The generic CD hook body: service, environment, sha, and optional range and times.

    Its shape is checked first (400 naming the field), then what it names (422 for a service,
    environment or repository the config does not hold)."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    service = read_field(data, "service", str)
    environment = read_field(data, "environment", str)
    sha = read_sha(data, "sha")
    previous_sha = read_sha(data, "previous_sha", required=False)
    repo = read_repo(data, "repo", required=False)
    url = read_url(data, "url")
    finished = data.get("finished_at")
    finished_at = parse_time(finished, "finished_at") if finished is not None else now
    started = data.get("started_at")
    started_at = parse_time(started, "started_at") if started is not None else None
    if started_at is not None and started_at > finished_at:
        raise bad_field("started_at", "is after `finished_at`")
    known = settings.service(service)
    if known is None:
        raise IngestError(422, "unknown_service", f"service {service!r} is not in the config")
    if environment not in known.environments:
        raise IngestError(
            422, "unknown_environment",
            f"service {service!r} is watched in {list(known.environments)}, not {environment!r}",
        )  # fmt: skip
    if repo is not None and repo.lower() != known.repo.lower():
        # Rearguard reads, reverts and comments in the service's repository, never in one the
        # caller names.
        raise IngestError(422, "unknown_repository",
                          f"service {service!r} deploys from {known.repo}, not {repo}")  # fmt: skip
    return Deploy(
        id=deploy_id_for(service, environment, sha, finished_at),
        service=service,
        environment=environment,
        sha=sha,
        finished_at=finished_at,
        source="cd",
        repo=known.repo,
        previous_sha=previous_sha,
        started_at=started_at,
        url=url,
    )


def parse_deployment_status(data: Any, settings: Settings) -> Deploy | Ignored:
    """A GitHub `deployment_status` event: a deploy when its state is `success` and it is of a
    configured service and environment (`deployment.payload.service` names the service where a
    repository holds several), else the reason it is ignored."""
    if read_field(data, "deployment_status.state", str) != "success":
        return Ignored("deployment state is not `success`")
    repo = read_repo(data, "repository.full_name")
    payload = read_field(data, "deployment.payload", (Mapping, str), required=False)
    named = payload.get("service") if isinstance(payload, Mapping) else None
    if named is not None:
        service = settings.service(named) if isinstance(named, str) else None
        if service is None or service.repo.lower() != repo.lower():
            return Ignored(
                "`deployment.payload.service` is no configured service of this repository"
            )
    else:
        service = settings.service_for_repo(repo)
    if service is None:
        return Ignored(NOT_CONFIGURED)
    environment = read_field(data, "deployment.environment", str)
    if environment not in service.environments:
        return Ignored("environment is not one the service watches")
    finished_at = _time(data, "deployment_status.updated_at")
    started_at = _time(data, "deployment.created_at")
    if started_at > finished_at:
        raise bad_field("deployment.created_at", "is after `deployment_status.updated_at`")
    return Deploy(
        id=f"gh_{read_number(data, 'deployment.id')}",
        service=service.name,
        environment=environment,
        sha=read_sha(data, "deployment.sha"),
        finished_at=finished_at,
        source="github",
        repo=service.repo,
        started_at=started_at,
        url=read_url(data, "deployment_status.target_url"),
    )


def parse_merged_pr(data: Any, settings: Settings) -> MergedPR | Ignored:
    """A GitHub `pull_request` event: the merged PR of a configured repository when it was
    closed by a merge, else the reason it is ignored."""
    if read_field(data, "action", str) != "closed":
        return Ignored("pull request action is not `closed`")
    if not read_field(data, "pull_request.merged", bool, required=False):
        return Ignored("pull request was closed without a merge")
    service = settings.service_for_repo(read_repo(data, "repository.full_name"))
    if service is None:
        return Ignored(NOT_CONFIGURED)
    labels = tuple(
        str(label.get("name")) for label in read_field(data, "pull_request.labels", list)
        if isinstance(label, Mapping) and label.get("name")
    )  # fmt: skip
    body = read_field(data, "pull_request.body", str, required=False) or ""
    author = read_field(data, "pull_request.user.login", str)
    head_ref = read_field(data, "pull_request.head.ref", str, required=False)
    repo = service.repo
    return MergedPR(
        repo=repo,
        number=read_number(data, "pull_request.number"),
        title=read_field(data, "pull_request.title", str),
        author=author,
        url=read_url(data, "pull_request.html_url", required=True),
        merge_sha=read_sha(data, "pull_request.merge_commit_sha"),
        head_sha=read_sha(data, "pull_request.head.sha"),
        base_ref=read_field(data, "pull_request.base.ref", str),
        merged_at=_time(data, "pull_request.merged_at"),
        body=body,
        identity=identify(
            author, body, labels=labels, repo=repo, head_ref=head_ref, rules=settings.marker_rules
        ),
        labels=labels,
        node_id=read_field(data, "pull_request.node_id", str, required=False),
        head_ref=head_ref,
    )


def _time(data: Any, path: str) -> float:
    return parse_time(read_field(data, path, str), path)
