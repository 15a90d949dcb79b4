"""`/openapi.json` tells the truth about the parsers: each POST documents its request body,
each route its answers (errors in the JSON error shape) and its security scheme; real bodies
validate against the request schemas; and a bounded schemathesis run, signed like the real
senders so that it reaches the parsers, finds no 5xx, no undocumented status and no answer off
its schema on `rearguard serve`, and no body our own schemas allow refused as malformed."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from loop.api import openapi
from loop.api.schemas import ref
from tests.serve_rig import serving
from tests.shared_fixtures import load_json

DOCUMENT = openapi.document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations() if isinstance(result, Ok)]
TOKENS = {"api": "api-fuzz", "alertmanager": "am-fuzz"}
SECRETS = {"github": "gh-fuzz", "sentry": "sentry-fuzz", "slack": "slack-fuzz"}
GITHUB_EVENTS = itertools.cycle(
    ["pull_request", "deployment_status", "workflow_run", "check_suite", "pull_request_review"]
)
SENTRY_RESOURCES = itertools.cycle(["event_alert", "error", "issue"])
OURS = {"/v1/deploys", "/v1/incidents/{id}/feedback"}


def test_each_route_documents_body_answers_and_security() -> None:
    """Every POST has a request body schema; every route its success and error answers (in the
    JSON error shape) and the security scheme of its token or signature; the schemathesis
    loader takes every operation."""
    assert len(OPERATIONS) == len(openapi.ROUTES)
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    names = DOCUMENT["components"]["schemas"]
    for route in openapi.ROUTES:
        operation = DOCUMENT["paths"][route.path][route.method.lower()]
        answers = operation["responses"]
        assert any(code.startswith("2") for code in answers), route
        for code, answer in answers.items():
            if code[0] in "45":
                assert answer["content"]["application/json"]["schema"] == ref("Error")
        if route.method == "POST":
            [(_, body)] = operation["requestBody"]["content"].items()
            assert body["schema"]["$ref"].rsplit("/", 1)[1] in names
            assert {"400", "401", "413"} <= set(answers)
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes)
        assert ("security" in operation) == bool(route.auth), route


def _validator(name: str) -> Any:
    root = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema_rs.validator_for(root, validate_formats=True)


def _merged_pr() -> Any:
    data = copy.deepcopy(load_json("github-webhooks/pull_request/closed.payload.json"))
    data["pull_request"].update(merged=True, merged_at="2026-11-02T09:30:00Z")
    return data


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("DeployRequest", {"service": "checkout", "environment": "production", "sha": "a" * 40,
                           "previous_sha": "b" * 40, "repo": "acme/checkout",
                           "started_at": "2026-11-02T09:58:00+01:00", "finished_at": 1.79e9,
                           "url": "https://ci.example.com/runs/7"}),
        ("FeedbackRequest", {"kind": "wrong_pr", "actor": "alice", "pr": 2, "culprit": 3,
                             "note": "it was #3"}),
        ("GitHubEvent", _merged_pr),
        ("GitHubEvent", partial(load_json, "github-webhooks/pull_request/closed.payload.json")),
        ("GitHubEvent", partial(load_json, "github-webhooks/deployment_status/payload.json")),
        ("GitHubEvent", partial(
            load_json, "github-webhooks/workflow_run/completed.with-pull-requests.payload.json")),
        ("GitHubEvent", partial(load_json, "github-webhooks/check_suite/completed.payload.json")),
        ("SentryEvent", partial(load_json, "sentry/webhooks/event_alert.triggered.json")),
        ("SentryEvent", partial(load_json, "sentry/webhooks/issue.created.json")),
        ("SentryEvent", partial(load_json, "sentry/webhooks/error.created.json")),
        ("AlertmanagerNotification", partial(load_json, "alertmanager/zulip/alert.json")),
        ("AlertmanagerNotification", partial(
            load_json, "alertmanager/prom2teams/all_ok_multiple.json")),
        ("SlackInteraction", {"payload": json.dumps({"type": "block_actions", "actions": []})}),
    ],
)  # fmt: skip
def test_real_bodies_validate_against_the_request_schemas(schema: str, body: Any) -> None:
    """The senders' own samples (and our documented bodies) are bodies the schemas allow."""
    if callable(body):  # a shared sample, read here so a clone without them skips this case only
        body = body()
    errors = [str(e) for e in _validator(schema).iter_errors(body)]
    assert errors == [], errors[:3]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rearguard serve` with every token and secret set, for the fuzzing; its base URL."""
    env = {
        "REARGUARD_API_TOKEN": TOKENS["api"],
        "REARGUARD_ALERTMANAGER_TOKEN": TOKENS["alertmanager"],
        "REARGUARD_GITHUB_WEBHOOK_SECRET": SECRETS["github"],
        "REARGUARD_SENTRY_CLIENT_SECRET": SECRETS["sentry"],
        "SLACK_SIGNING_SECRET": SECRETS["slack"],
    }  # fmt: skip
    with serving(tmp_path_factory.mktemp("fuzz"), env) as port:
        yield f"http://127.0.0.1:{port}"


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(SECRETS[secret].encode(), data, hashlib.sha256).hexdigest()


def _authenticate(path: str, headers: dict[str, str], body: bytes) -> None:
    """Sign or authorise the request as its real sender would, over the bytes it carries."""
    if path == "/v1/webhooks/github":
        headers["X-GitHub-Event"] = next(GITHUB_EVENTS)
        headers["X-GitHub-Delivery"] = str(uuid.uuid4())
        headers["X-Hub-Signature-256"] = "sha256=" + _hmac("github", body)
    elif path == "/v1/webhooks/sentry":
        headers["Sentry-Hook-Resource"] = next(SENTRY_RESOURCES)
        headers["Request-ID"] = str(uuid.uuid4())
        headers["Sentry-Hook-Signature"] = _hmac("sentry", body)
    elif path == "/v1/webhooks/slack":
        now = str(int(time.time()))
        headers["X-Slack-Request-Timestamp"] = now
        headers["X-Slack-Signature"] = "v0=" + _hmac("slack", f"v0:{now}:".encode() + body)
    elif path == "/v1/webhooks/alertmanager":
        headers["Authorization"] = f"Bearer {TOKENS['alertmanager']}"
    else:
        headers["Authorization"] = f"Bearer {TOKENS['api']}"


def _send(session: requests.Session, base_url: str, case: Any) -> requests.Response:
    prepared = requests.Request(**case.as_transport_kwargs(base_url=base_url)).prepare()
    body = prepared.body or b""
    assert isinstance(body, bytes | str)
    raw = body.encode() if isinstance(body, str) else body
    headers: dict[str, str] = {}
    _authenticate(case.operation.path, headers, raw)
    prepared.headers.update(headers)
    return session.send(prepared, timeout=10)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_driven_fuzzing_finds_nothing(served: str, mode: GenerationMode) -> None:
    """Ten cases per operation and mode, each signed or authorised: every answer documented,
    none a 5xx; our own bodies that the schema allows are never refused as malformed."""
    with requests.Session() as session:
        _fuzz(session, served, mode)


def _fuzz(session: requests.Session, served: str, mode: GenerationMode) -> None:
    for operation in OPERATIONS:

        @settings(max_examples=10, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(mode))
        def run(case: Any) -> None:
            response = _send(session, served, case)
            case.validate_response(response, checks=CHECKS)
            if mode is GenerationMode.POSITIVE and case.operation.path in OURS:
                error = response.json().get("error", {}) if response.status_code == 400 else {}
                # No JSON Schema orders two fields: a start after the finish, a culprit
                # without wrong_pr are the parser's to refuse.
                assert not error or "after" in error["message"] or "culprit" in error["message"], (
                    case.body, error)  # fmt: skip

        try:
            run()
        except Unsatisfiable:
            # An operation with nothing to make invalid (no body, no parameters): no negative
            # cases exist, and its positive ones ran.
            assert mode is GenerationMode.NEGATIVE
