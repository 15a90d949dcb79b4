"""`GET /openapi.json`: the HTTP interface described as OpenAPI 3.1.

One table lists every route: its summary, how it is authenticated, the headers it needs, its
request body (schemas in `loop.api.schemas`) and its answers, errors in the JSON error shape. A
test keeps the table equal to the app's router, validates real bodies against the request
schemas and fuzzes the served app from this document, so it cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any, NamedTuple

from loop.api.schemas import COMPONENTS, ref

API = "apiToken"
READ = "readToken"
ALERTMANAGER = "alertmanagerToken"
GITHUB = "githubSignature"
SENTRY = "sentrySignature"
SLACK = "slackSignature"
OPEN = ""

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    API: {"type": "http", "scheme": "bearer", "description": "REARGUARD_API_TOKEN"},
    READ: {"type": "http", "scheme": "bearer",
           "description": "REARGUARD_READ_TOKEN (the API token is taken too)"},
    ALERTMANAGER: {"type": "http", "scheme": "bearer", "description":
                   "REARGUARD_ALERTMANAGER_TOKEN (Alertmanager's http_config.authorization)"},
    GITHUB: {"type": "apiKey", "in": "header", "name": "X-Hub-Signature-256", "description":
             "`sha256=` and the hex HMAC-SHA256 of the raw body, keyed by "
             "REARGUARD_GITHUB_WEBHOOK_SECRET (SHA-1 signatures are refused)"},
    SENTRY: {"type": "apiKey", "in": "header", "name": "Sentry-Hook-Signature", "description":
             "hex HMAC-SHA256 of the raw body, keyed by REARGUARD_SENTRY_CLIENT_SECRET"},
    SLACK: {"type": "apiKey", "in": "header", "name": "X-Slack-Signature", "description":
            "`v0=` and the hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw body}`, keyed "
            "by SLACK_SIGNING_SECRET; timestamps over five minutes off are refused"},
}  # fmt: skip


class Route(NamedTuple):
    """One route: `body` is (media type, schema name); `answers` maps a status to the schema
    name of its body (None: no JSON body); `also` are the error statuses the route answers
    beyond those of every authenticated route; `headers` are required header parameters and
    `query` optional query parameters."""

    method: str
    path: str
    auth: str
    summary: str
    body: tuple[str, str] | None
    answers: Mapping[str, str | None]
    also: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    query: tuple[str, ...] = ()


JSON = "application/json"
_DELIVERY = {"202": "Delivery", "200": "Delivery"}

# The table reads best one route a line, hence the long lines.
ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/deploys", API, "Record a deploy from CD; 202 with its id (the same deploy twice is one deploy).", (JSON, "DeployRequest"), {"202": "DeployAccepted"}, ("422",)),  # noqa: E501
    Route("POST", "/v1/webhooks/github", GITHUB, "GitHub webhooks: pull_request, deployment_status, workflow_run, check_suite, pull_request_review.", (JSON, "GitHubEvent"), _DELIVERY, (), ("X-GitHub-Event", "X-GitHub-Delivery")),  # noqa: E501
    Route("POST", "/v1/webhooks/sentry", SENTRY, "Sentry issue and event alerts.", (JSON, "SentryEvent"), _DELIVERY, (), ("Sentry-Hook-Resource",)),  # noqa: E501
    Route("POST", "/v1/webhooks/alertmanager", ALERTMANAGER, "Alertmanager notifications.", (JSON, "AlertmanagerNotification"), _DELIVERY),  # noqa: E501
    Route("POST", "/v1/webhooks/slack", SLACK, "Slack button clicks: Confirm, False alarm, Wrong PR.", ("application/x-www-form-urlencoded", "SlackInteraction"), {"200": "Delivery"}, ("404",), ("X-Slack-Request-Timestamp",)),  # noqa: E501
    Route("GET", "/v1/deploys", READ, "Recent deploys with their Watch phase and verdict.", None, {"200": "Deploys"}),  # noqa: E501
    Route("GET", "/v1/deploys/{id}", READ, "One deploy: phase, verdict, PRs, timeline.", None, {"200": "Deploy"}, ("404",)),  # noqa: E501
    Route("GET", "/v1/incidents", READ, "Recent incidents.", None, {"200": "Incidents"}),
    Route("GET", "/v1/incidents/{id}", READ, "One incident: verdict, evidence, suspects, actions, recovery, timeline.", None, {"200": "Incident"}, ("404",)),  # noqa: E501
    Route("POST", "/v1/incidents/{id}/feedback", API, "A person's verdict: confirmed, false_alarm or wrong_pr.", (JSON, "FeedbackRequest"), {"201": "Feedback", "200": "Feedback"}, ("404", "422")),  # noqa: E501
    Route("GET", "/v1/reports/{kind}", READ, "Reports: dora, loop (delivery metrics per ISO week), agents, models, specs, areas (regression rates with 95% Wilson intervals); since is an ISO 8601 time, Unix seconds or a duration back from now (90d).", None, {"200": "Report"}, ("400", "404"), (), ("since", "service", "repo")),  # noqa: E501
    Route("POST", "/v1/query", READ, "One read-only SELECT over the public views (a snapshot at most 5 s old); time, row and memory limits.", (JSON, "QueryRequest"), {"200": "QueryResult"}, ("403", "408", "429")),  # noqa: E501
    Route("GET", "/v1/export/{view}.parquet", READ, "One public view as a Parquet file (application/vnd.apache.parquet), read live.", None, {"200": None}, ("404",)),  # noqa: E501
    Route("GET", "/healthz", OPEN, "Liveness; 503 once DuckDB invalidated the store (restart).", None, {"200": "Status", "503": "Error"}),  # noqa: E501
    Route("GET", "/readyz", OPEN, "Readiness: the store commits a write; 503 when it cannot.", None, {"200": "Status", "503": "Error"}),  # noqa: E501
    Route("GET", "/metrics", OPEN, "Rearguard's own metrics in the Prometheus text format.", None, {"200": None}),  # noqa: E501
    Route("GET", "/openapi.json", OPEN, "This document.", None, {"200": None}),
)  # fmt: skip

_ERRORS = {
    "400": "The body, a field or a header cannot be what it says (the message names it).",
    "401": "Not the sender's: a missing or wrong token or signature.",
    "403": "The SQL is not a single SELECT, or reaches for files, network or extensions.",
    "404": "No such deploy, incident, report or view.",
    "408": "The query ran past its time limit and was stopped.",
    "413": "The body is over 5 MiB (a query: its SQL over 100,000 characters, or it needs more "
    "memory than allowed).",
    "422": "Well-formed, but names a service, environment, repository or PR Rearguard does "
    "not know.",
    "429": "Too many queries are running; try again when one is done.",
    "500": "An internal error (see the server log).",
    "503": "The token or secret this route needs is not set on the server.",
}
_REFUSALS = {"POST": ("400", "401", "413", "500", "503"), "GET": ("401", "500", "503")}


def _answers(route: Route) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, schema in route.answers.items():
        body = {"application/json": {"schema": ref(schema)}} if schema else None
        answers[status] = {"description": "OK", **({"content": body} if body else {})}
    codes = [*(_REFUSALS[route.method] if route.auth else ("500",)), *route.also]
    for code in sorted(set(codes) - set(answers)):
        content = {"application/json": {"schema": ref("Error")}}
        answers[code] = {"description": _ERRORS[code], "content": content}
    return answers


def _operation(route: Route, open_reads: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "responses": _answers(route)}
    if route.auth == READ and not open_reads:
        operation["security"] = [{READ: []}, {API: []}]
    elif route.auth and route.auth != READ:
        operation["security"] = [{route.auth: []}]
    params = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in re.findall(r"{(\w+)}", route.path)
    ]
    params += [
        {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
        for h in route.headers
    ]
    params += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in route.query]
    if params:
        operation["parameters"] = params
    if route.body is not None:
        media, schema = route.body
        operation["requestBody"] = {"required": True, "content": {media: {"schema": ref(schema)}}}
    return operation


def document(*, open_reads: bool = False) -> dict[str, Any]:
    """The OpenAPI document for every route in `ROUTES` (reads without security when the
    running server serves them without a token)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, open_reads)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rearguard", "version": version("rearguard")},
        "paths": paths,
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": COMPONENTS},
    }
