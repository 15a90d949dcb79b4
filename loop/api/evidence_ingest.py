"""Ingest of attribution evidence: Sentry and Alertmanager webhooks, GitHub CI events, and GitHub
reviews (review rounds for the loop report).

Each check and parser refuses with an `IngestError` (a 4xx a sender can act on) before anything
is stored, and turns a payload into the frozen records of `attribution.evidence` here, where it
enters. Sentry signs the raw body (`Sentry-Hook-Signature`: hex HMAC-SHA256 with the
integration's client secret) and names each delivery (`Request-ID`); Alertmanager does not sign,
so its webhook is authenticated with the bearer token of its `http_config.authorization`, and a
redelivery is recognised by the digest of its body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from attribution.evidence import ErrorEvent, FiringAlert, Frame
from attribution.store_reports import Review
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
)
from loop.config import ServiceSettings, Settings

SENTRY_RESOURCES = ("event_alert", "error", "issue")
GITHUB_CI_EVENTS = ("workflow_run", "check_suite")
REVIEW_STATES = ("approved", "changes_requested", "commented", "dismissed")


def check_sentry_signature(body: bytes, signature: str | None, secret: str | None) -> None:
    """Verify `Sentry-Hook-Signature` over the raw body, in constant time."""
    if secret is None:
        raise IngestError(
            503, "not_configured", "REARGUARD_SENTRY_CLIENT_SECRET is not set on the server"
        )
    if not signature:
        raise IngestError(401, "bad_signature", "missing Sentry-Hook-Signature header")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise IngestError(401, "bad_signature", "Sentry-Hook-Signature does not match the body")


def body_digest(body: bytes) -> str:
    """A delivery id for senders that give none: the same notification has the same digest."""
    return hashlib.sha256(body).hexdigest()[:32]


def _frames(event: Mapping[str, Any]) -> tuple[Frame, ...]:
    """In-app frames of every exception of `event`, innermost last (Sentry's own order)."""
    values = event.get("exception", {})
    values = values.get("values") if isinstance(values, Mapping) else None
    frames: list[Frame] = []
    for value in values if isinstance(values, list) else []:
        stack = value.get("stacktrace") if isinstance(value, Mapping) else None
        raw = stack.get("frames") if isinstance(stack, Mapping) else None
        for f in raw if isinstance(raw, list) else []:
            if not isinstance(f, Mapping) or f.get("in_app") is not True:
                continue
            path = f.get("filename") or f.get("abs_path")
            if not isinstance(path, str) or not path:
                continue
            if "://" in path:
                path = urlsplit(path).path
            line = f.get("lineno")
            function = f.get("function")
            frames.append(
                Frame(
                    path.lstrip("/"),
                    line if isinstance(line, int) and line > 0 else None,
                    function if isinstance(function, str) else None,
                )
            )
    return tuple(frames)


def _sentry_project(item: Mapping[str, Any]) -> set[str]:
    project = item.get("project")
    if isinstance(project, Mapping):
        return {str(project.get(k)) for k in ("id", "slug") if project.get(k) is not None}
    names = {str(project)} if project is not None else set()
    slug = item.get("project_slug")
    return names | ({str(slug)} if slug else set())


@dataclass(frozen=True, slots=True)
class SentryErrors:
    """The service a Sentry delivery belongs to and the error it reports."""

    service: ServiceSettings
    event: ErrorEvent


def parse_sentry(resource: str, data: Any, settings: Settings) -> SentryErrors | Ignored:
    """An `event_alert`, `error` or `issue` delivery as an error; the reason it is ignored for
    other resources and for projects no service lists in `sentry_projects`."""
    if not resource:
        raise IngestError(400, "missing_header", "Sentry-Hook-Resource is required")
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    if resource not in SENTRY_RESOURCES:
        return Ignored("Sentry-Hook-Resource is not one Rearguard reads")
    inner = {"event_alert": "data.event", "error": "data.error", "issue": "data.issue"}[resource]
    item = read_field(data, inner, Mapping)
    projects = _sentry_project(item)
    service = next(
        (s for s in settings.services.values() if projects & set(s.sentry_projects)), None
    )
    if service is None:
        return Ignored("no service lists this Sentry project in `sentry_projects`")
    if resource == "issue":
        key = str(read_field(data, "data.issue.id", (str, int)))
        seen = parse_time(read_field(data, "data.issue.firstSeen", str), "data.issue.firstSeen")
        title = str(item.get("title") or key)
        return SentryErrors(service, ErrorEvent(key, title, seen, ()))
    when = item.get("datetime") or item.get("timestamp") or item.get("received")
    if when is None:
        raise IngestError(400, "missing_field", f"missing field `{inner}.datetime`")
    seen = parse_time(when, f"{inner}.datetime")
    title = str(item.get("title") or item.get("message") or "error")
    key = str(item.get("issue_id") or item.get("event_id") or title)
    return SentryErrors(service, ErrorEvent(key, title, seen, _frames(item)))


def parse_alertmanager(data: Any, settings: Settings) -> list[tuple[ServiceSettings, FiringAlert]]:
    """Firing alerts of an Alertmanager webhook (`version` 4) whose `service`, `app` or `job`
    label names a configured service; resolved alerts and other services are left out."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    read_field(data, "status", str)
    alerts = read_field(data, "alerts", list)
    found = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, Mapping):
            raise bad_field(where, "must be an object")
        labels = read_field(data, f"{where}.labels", Mapping)
        if not all(isinstance(v, str) for v in labels.values()):
            raise bad_field(f"{where}.labels", "must map to strings")
        starts = parse_time(read_field(data, f"{where}.startsAt", str), f"{where}.startsAt")
        status = alert.get("status", data["status"])
        if status != "firing":
            continue
        names = [labels.get(k) for k in ("service", "app", "job")]
        service = next((settings.service(n) for n in names if n and settings.service(n)), None)
        if service is not None:
            name = str(labels.get("alertname", "alert"))
            found.append((service, FiringAlert(name, dict(labels), starts)))
    return found


@dataclass(frozen=True, slots=True)
class CiRun:
    """One CI run of a PR's head: a workflow run attempt or a check suite."""

    id: str
    repo: str
    kind: str
    head_sha: str
    attempt: int
    conclusion: str | None
    finished_at: float
    numbers: tuple[int, ...]


def parse_ci(event: str, data: Any, settings: Settings) -> CiRun | Ignored:
    """A completed `workflow_run` or `check_suite` of a configured repository, else the reason
    it is ignored."""
    if read_field(data, "action", str) != "completed":
        return Ignored(f"{event} action is not `completed`")
    service = settings.service_for_repo(read_repo(data, "repository.full_name"))
    if service is None:
        return Ignored(NOT_CONFIGURED)
    run_id = read_number(data, f"{event}.id")
    attempt = read_number(data, f"{event}.run_attempt", required=False) or 1
    updated = parse_time(read_field(data, f"{event}.updated_at", str), f"{event}.updated_at")
    pulls = read_field(data, f"{event}.pull_requests", list)
    numbers = tuple(
        read_number(data, f"{event}.pull_requests[{i}].number") for i in range(len(pulls))
    )
    key = (
        f"{event}:{run_id}:{attempt}" if event == "workflow_run" else f"{event}:{run_id}:{updated}"
    )
    return CiRun(
        id=key,
        repo=service.repo,
        kind=event,
        head_sha=read_sha(data, f"{event}.head_sha"),
        attempt=attempt,
        conclusion=read_field(data, f"{event}.conclusion", str, required=False),
        finished_at=updated,
        numbers=numbers,
    )


def parse_review(data: Any, settings: Settings) -> Review | Ignored:
    """A `pull_request_review` submitted on a PR of a configured repository (a review round), else
    the reason it is ignored. The state is lower-cased: webhooks send `approved`, the REST API
    `APPROVED`."""
    if not isinstance(data, Mapping):
        raise IngestError(400, "malformed_body", "body must be a JSON object")
    if read_field(data, "action", str) != "submitted":
        return Ignored("pull_request_review action is not `submitted`")
    service = settings.service_for_repo(read_repo(data, "repository.full_name"))
    if service is None:
        return Ignored(NOT_CONFIGURED)
    state = read_field(data, "review.state", str).lower()
    if state not in REVIEW_STATES:
        raise bad_field("review.state", f"must be one of {', '.join(REVIEW_STATES)}")
    reviewer = read_field(data, "review.user.login", str, required=False)
    return Review(
        id=read_number(data, "review.id"),
        repo=service.repo,
        number=read_number(data, "pull_request.number"),
        state=state,
        reviewer=reviewer,
        commit_id=read_sha(data, "review.commit_id", required=False),
        submitted_at=parse_time(
            read_field(data, "review.submitted_at", str), "review.submitted_at"
        ),
    )
