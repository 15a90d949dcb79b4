"""Ingest: incoming deploys and webhooks, checked and parsed into records where they enter.

Signature checks compare in constant time over the raw body; a payload becomes a frozen record
here or is refused with an `IngestError` carrying the HTTP status and a message a sender can act
on. No `dict` from a payload travels further than this module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from githubkit.webhooks import verify as verify_github

from attribution.identity import identify
from attribution.records import Deploy, MergedPR
from loop.config import Settings


class IngestError(Exception):
    """A request was refused: `status` and `code` go into the JSON error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_bearer(header: str | None, expected: str | None) -> None:
    """Refuse a request without the configured bearer token (or when none is configured)."""
    if expected is None:
        raise IngestError(503, "not_configured", "REARGUARD_API_TOKEN is not set on the server")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise IngestError(401, "unauthorized", "missing or wrong bearer token")


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


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(400, "malformed_body", f"body is not valid JSON: {exc}") from exc


def read_field(
    data: Any, path: str, kind: type | tuple[type, ...], *, required: bool = True
) -> Any:
    """`data[a][b]…` for `path` "a.b…", type-checked; IngestError names the missing field."""
    value = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            if required:
                raise IngestError(422, "missing_field", f"missing field `{path}`")
            return None
        value = value[part]
    if not isinstance(value, kind) or (
        isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise IngestError(422, "bad_field", f"field `{path}` has the wrong type")
    return value


_YEAR_10000 = 253_402_300_800  # Unix seconds at 10000-01-01, past what ISO 8601 strings reach


def parse_time(value: Any, path: str) -> float:
    """Unix seconds from an ISO 8601 string (with offset or Z) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # JSON numbers include NaN, Infinity and 1e300, which the store cannot hold as times.
        if math.isfinite(value) and 0 <= value < _YEAR_10000:
            return float(value)
        raise IngestError(422, "bad_field", f"field `{path}` is not a time between 1970 and 9999")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise IngestError(422, "bad_field", f"field `{path}` must be an ISO 8601 time with a zone")


def deploy_id_for(service: str, environment: str, sha: str, finished_at: float) -> str:
    """Deterministic, so a CD hook that posts the same deploy twice makes one deploy."""
    digest = hashlib.sha256(f"{service}|{environment}|{sha}|{finished_at:.3f}".encode())
    return "dep_" + digest.hexdigest()[:16]


def parse_deploy_request(data: Any, settings: Settings, now: float) -> Deploy:
    """The generic CD hook body: service, environment, sha, and optional range and times."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    service = read_field(data, "service", str)
    known = settings.service(service)
    if known is None:
        raise IngestError(422, "unknown_service", f"service {service!r} is not in the config")
    environment = read_field(data, "environment", str)
    if environment not in known.environments:
        raise IngestError(
            422, "unknown_environment",
            f"service {service!r} is watched in {list(known.environments)}, not {environment!r}",
        )  # fmt: skip
    sha = read_field(data, "sha", str)
    if not (7 <= len(sha) <= 64) or any(c not in "0123456789abcdef" for c in sha.lower()):  # noqa: PLR2004
        raise IngestError(422, "bad_field", "field `sha` must be a hex commit id")
    started = data.get("started_at")
    finished = data.get("finished_at")
    finished_at = parse_time(finished, "finished_at") if finished is not None else now
    repo = read_field(data, "repo", str, required=False) or known.repo
    return Deploy(
        id=deploy_id_for(service, environment, sha, finished_at),
        service=service,
        environment=environment,
        sha=sha,
        finished_at=finished_at,
        source="cd",
        repo=repo,
        previous_sha=read_field(data, "previous_sha", str, required=False),
        started_at=parse_time(started, "started_at") if started is not None else None,
        url=read_field(data, "url", str, required=False),
    )


def parse_deployment_status(data: Any, settings: Settings) -> Deploy | None:
    """A GitHub `deployment_status` event: a deploy when its state is `success`, else None."""
    if read_field(data, "deployment_status.state", str) != "success":
        return None
    repo = read_field(data, "repository.full_name", str)
    payload = read_field(data, "deployment.payload", (Mapping, str), required=False)
    named = payload.get("service") if isinstance(payload, Mapping) else None
    service = settings.service(named) if isinstance(named, str) else None
    service = service or settings.service_for_repo(repo)
    if service is None:
        raise IngestError(422, "unknown_service",
                          f"no configured service for repository {repo!r}")  # fmt: skip
    environment = read_field(data, "deployment.environment", str)
    if environment not in service.environments:
        return None  # a deploy to an environment this service does not watch
    finished_at = parse_time(read_field(data, "deployment_status.updated_at", str), "updated_at")
    return Deploy(
        id=f"gh_{read_field(data, 'deployment.id', int)}",
        service=service.name,
        environment=environment,
        sha=read_field(data, "deployment.sha", str),
        finished_at=finished_at,
        source="github",
        repo=repo,
        started_at=parse_time(
            read_field(data, "deployment.created_at", str), "deployment.created_at"
        ),
        url=read_field(data, "deployment_status.target_url", str, required=False) or None,
    )


def parse_merged_pr(data: Any) -> MergedPR | None:
    """A GitHub `pull_request` event: the merged PR when it was closed by a merge, else None."""
    if read_field(data, "action", str) != "closed":
        return None
    if not read_field(data, "pull_request.merged", bool, required=False):
        return None
    labels = tuple(
        str(label.get("name")) for label in read_field(data, "pull_request.labels", list)
        if isinstance(label, Mapping) and label.get("name")
    )  # fmt: skip
    body = read_field(data, "pull_request.body", str, required=False) or ""
    author = read_field(data, "pull_request.user.login", str)
    repo = read_field(data, "repository.full_name", str)
    return MergedPR(
        repo=repo,
        number=read_field(data, "pull_request.number", int),
        title=read_field(data, "pull_request.title", str),
        author=author,
        url=read_field(data, "pull_request.html_url", str),
        merge_sha=read_field(data, "pull_request.merge_commit_sha", str),
        head_sha=read_field(data, "pull_request.head.sha", str),
        base_ref=read_field(data, "pull_request.base.ref", str),
        merged_at=parse_time(read_field(data, "pull_request.merged_at", str), "merged_at"),
        body=body,
        identity=identify(author, body, labels=labels, repo=repo),
        labels=labels,
        node_id=read_field(data, "pull_request.node_id", str, required=False),
    )
