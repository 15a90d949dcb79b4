"""`GET /openapi.json`: the HTTP interface described as OpenAPI 3.1.

One table lists every route with its summary and how it is authenticated; a test checks that the
table and the app's router list the same routes, so the document cannot drift from the code.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import Any

BEARER = "bearer"
SIGNED = "signed"
OPEN = "open"

# The table reads best one route a line, hence the long lines.
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("POST", "/v1/deploys", BEARER, "Record a deploy from CD (service, environment, sha, ...); 202 with its id."),  # noqa: E501
    ("POST", "/v1/webhooks/github", SIGNED, "GitHub webhooks (X-Hub-Signature-256): pull_request, deployment_status, workflow_run, check_suite."),  # noqa: E501
    ("POST", "/v1/webhooks/sentry", SIGNED, "Sentry issue and event alerts (Sentry-Hook-Signature)."),  # noqa: E501
    ("POST", "/v1/webhooks/alertmanager", BEARER, "Alertmanager notifications (bearer token)."),
    ("POST", "/v1/webhooks/slack", SIGNED, "Slack button clicks (X-Slack-Signature): Confirm, False alarm, Wrong PR."),  # noqa: E501
    ("GET", "/v1/deploys", OPEN, "Recent deploys with their Watch phase and verdict."),
    ("GET", "/v1/deploys/{id}", OPEN, "One deploy: phase, verdict, PRs, timeline."),
    ("GET", "/v1/incidents", OPEN, "Recent incidents."),
    ("GET", "/v1/incidents/{id}", OPEN, "One incident: verdict, evidence, suspects, actions, recovery, timeline."),  # noqa: E501
    ("POST", "/v1/incidents/{id}/feedback", BEARER, "A person's verdict: confirmed, false_alarm or wrong_pr."),  # noqa: E501
    ("GET", "/v1/reports/{kind}", OPEN, "Regression rates per agent, model, spec or code area."),
    ("GET", "/healthz", OPEN, "Liveness; 503 once DuckDB invalidated the store (restart)."),
    ("GET", "/readyz", OPEN, "Readiness: the store commits a write; 503 with why it cannot."),
    ("GET", "/metrics", OPEN, "Rearguard's own metrics in the Prometheus text format."),
    ("GET", "/openapi.json", OPEN, "This document."),
)  # fmt: skip

_ERROR = {
    "description": "An error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _operation(summary: str, auth: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK"}, "4XX": _ERROR, "5XX": _ERROR},
    }
    if auth == BEARER:
        operation["security"] = [{"bearer": []}]
    params = re.findall(r"{(\w+)}", path)
    if params:
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
    return operation


def document() -> dict[str, Any]:
    """The OpenAPI document for every route in `ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, auth, summary in ROUTES:
        paths.setdefault(path, {})[method.lower()] = _operation(summary, auth, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rearguard", "version": version("rearguard")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
    }
