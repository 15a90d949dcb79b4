"""The JSON Schemas of the HTTP interface, for `/openapi.json`: request bodies as the parsers
read them, and the answers (the JSON error shape included).

Rearguard's own bodies (the CD hook, feedback) are described whole, with `additionalProperties:
false`: the server ignores other fields, so they are no part of the contract, and anything the
schema allows is a body the parser takes (a start after the finish aside, which no JSON Schema
can say). The senders' webhooks are theirs to define: their schemas list the fields Rearguard
reads, with the constraints the parsers check, and allow the rest. The patterns are the ones the
parsers use (`COMMIT_ID`, `REPO_NAME`) or, for times, the 1971-2098 years that no zone offset
can move outside the parser's 1970-2100.
"""

from __future__ import annotations

from typing import Any

from loop.api.fields import COMMIT_ID, LATEST, MAX_URL
from loop.config import REPO_NAME

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(name: str) -> Schema:
    """A field GitHub sends as null when it has no value yet (an unmerged PR's merge time)."""
    return {"anyOf": [ref(name), {"type": "null"}]}


_ISO = (
    r"^(?:197[1-9]|19[89][0-9]|20[0-8][0-9]|209[0-8])-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:0[0-9]|1[0-3]):[0-5][0-9])$"
)  # fmt: skip
_INT64_MAX = 2**63 - 1

_SHARED: dict[str, Schema] = {
    "CommitId": {"type": "string", "pattern": f"^{COMMIT_ID.pattern}$",
                 "description": "A commit id: 7 to 64 hex digits."},
    "RepoName": {"type": "string", "pattern": f"^{REPO_NAME.pattern}$",
                 "description": "A repository, `owner/name`."},
    "IsoTime": {"type": "string", "format": "date-time", "pattern": _ISO,
                "description": "ISO 8601 with a zone; Rearguard takes 1970 to 2100."},
    "Time": {"oneOf": [{"$ref": "#/components/schemas/IsoTime"},
                       {"type": "number", "minimum": 0, "exclusiveMaximum": LATEST,
                        "description": "Unix seconds"}]},
    "Url": {"type": "string", "format": "uri", "pattern": "^https?://[^\\s]+$",
            "maxLength": MAX_URL},
    "Number": {"type": "integer", "minimum": 1, "maximum": _INT64_MAX},
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": False,
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }},
    },
}  # fmt: skip

_REQUESTS: dict[str, Schema] = {
    "DeployRequest": {
        "type": "object",
        "required": ["service", "environment", "sha"],
        "additionalProperties": False,
        "properties": {
            "service": {"type": "string", "minLength": 1, "description": "a [services.NAME]"},
            "environment": {"type": "string", "minLength": 1},
            "sha": ref("CommitId"),
            "previous_sha": ref("CommitId"),
            "repo": {**ref("RepoName"), "description": "must be the service's repository"},
            "started_at": {**ref("Time"), "description": "not after finished_at"},
            "finished_at": {**ref("Time"), "description": "default: when it is received"},
            "url": ref("Url"),
        },
    },
    "QueryRequest": {
        "type": "object", "required": ["sql"], "additionalProperties": False,
        "properties": {
            "sql": {"type": "string", "description": "one SELECT (or WITH … SELECT) over the "
                    "public views (README: The public views)"},
            "params": {"type": "array", "description": "values for the SQL's `?` placeholders",
                       "items": {"type": ["string", "number", "boolean", "null"]}},
        },
    },
    "FeedbackRequest": {
        "type": "object",
        "required": ["kind", "actor"],
        "additionalProperties": False,
        "properties": {
            "kind": {"enum": ["confirmed", "false_alarm", "wrong_pr"]},
            "actor": {"type": "string", "pattern": "\\S", "description": "who says so"},
            "pr": {**ref("Number"), "description": "a PR of the incident's deploy"},
            "culprit": {**ref("Number"), "description": "with wrong_pr: the PR to blame"},
            "note": {"type": "string"},
        },
    },
    "GitHubEvent": {
        "type": "object",
        "description": "The fields Rearguard reads of `pull_request`, `deployment_status`, "
        "`workflow_run`, `check_suite` and `pull_request_review` events (the event is "
        "X-GitHub-Event); any other "
        "event is acknowledged and ignored. GitHub's own schemas describe the rest.",
        "properties": {
            "action": {"type": "string"},
            "repository": {"type": "object", "properties": {"full_name": ref("RepoName")}},
            "pull_request": {"type": "object", "properties": {
                "number": ref("Number"), "merged": {"type": "boolean"},
                "merge_commit_sha": _nullable("CommitId"), "merged_at": _nullable("IsoTime"),
                "html_url": ref("Url"), "title": {"type": "string"},
                "body": {"type": ["string", "null"]},
                "head": {"type": "object", "properties": {"sha": ref("CommitId")}},
            }},
            "deployment": {"type": "object", "properties": {
                "id": ref("Number"), "sha": ref("CommitId"), "environment": {"type": "string"},
                "created_at": ref("IsoTime"),
            }},
            "deployment_status": {"type": "object", "properties": {
                "state": {"type": "string"}, "updated_at": ref("IsoTime"),
                "target_url": {"anyOf": [ref("Url"), {"const": ""}, {"type": "null"}]},
            }},
            "workflow_run": ref("CiRun"),
            "check_suite": ref("CiRun"),
            "review": {"type": "object", "properties": {
                "id": ref("Number"), "submitted_at": ref("IsoTime"),
                "state": {"enum": ["approved", "changes_requested", "commented", "dismissed",
                                   "APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"]},
                "commit_id": _nullable("CommitId"),
            }},
        },
    },
    "CiRun": {"type": "object", "properties": {
        "id": ref("Number"), "run_attempt": ref("Number"), "head_sha": ref("CommitId"),
        "updated_at": ref("IsoTime"), "conclusion": {"type": ["string", "null"]},
        "pull_requests": {"type": "array", "items": {
            "type": "object", "required": ["number"], "properties": {"number": ref("Number")}}},
    }},
    "SentryEvent": {
        "type": "object",
        "description": "A Sentry integration webhook (Sentry-Hook-Resource `event_alert`, "
        "`error` or `issue`); the project decides the service (`sentry_projects`).",
        "properties": {"data": {"type": "object", "properties": {
            "event": ref("SentryIssue"), "error": ref("SentryIssue"), "issue": ref("SentryIssue"),
        }}},
    },
    "SentryIssue": {"type": "object", "properties": {
        "id": {"type": ["string", "integer"]}, "firstSeen": ref("IsoTime"),
        "datetime": ref("Time"), "title": {"type": "string"},
    }},
    "AlertmanagerNotification": {
        "type": "object",
        "required": ["status", "alerts"],
        "description": "Alertmanager's webhook (version 4); alerts whose `service`, `app` or "
        "`job` label names a configured service are kept.",
        "properties": {
            "status": {"type": "string"},
            "alerts": {"type": "array", "items": {
                "type": "object", "required": ["labels", "startsAt"],
                "properties": {
                    "status": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "startsAt": ref("IsoTime"),
                },
            }},
        },
    },
    "SlackInteraction": {
        "type": "object",
        "required": ["payload"],
        "description": "Slack's interactivity request: a form field `payload` with the JSON of "
        "a `block_actions` event (the incident message's buttons).",
        "properties": {"payload": {"type": "string", "contentMediaType": "application/json"}},
    },
}  # fmt: skip

_ANSWERS: dict[str, Schema] = {
    "DeployAccepted": {"type": "object", "required": ["id", "created"], "properties": {
        "id": {"type": "string"}, "created": {"type": "boolean"}}},
    "Delivery": {"type": "object", "required": ["status"], "properties": {
        "status": {"enum": ["accepted", "ignored", "duplicate", "applied"]},
        "delivery": {"type": "string"}, "reason": {"type": "string"},
        "alerts": {"type": "integer"}}},
    "Feedback": {"type": "object", "required": ["incident", "kind", "recorded"], "properties": {
        "incident": {"type": "string"}, "kind": {"type": "string"},
        "recorded": {"type": "boolean"}}},
    "Deploy": {"type": "object", "required": ["id", "service", "phase"]},
    "Deploys": {"type": "object", "required": ["deploys"],
                "properties": {"deploys": {"type": "array", "items": ref("Deploy")}}},
    "Incident": {"type": "object", "required": ["id", "deploy_id", "verdict"]},
    "Incidents": {"type": "object", "required": ["incidents"],
                  "properties": {"incidents": {"type": "array", "items": ref("Incident")}}},
    "Metric": {
        "type": "object", "required": ["value", "unit", "n", "reason"],
        "description": "A value over `n` samples, or a null value and the `reason` it cannot be "
        "computed; rates add their 95% Wilson interval `low`..`high`, some a `max` or `total`.",
        "properties": {
            "value": {"type": ["number", "null"]}, "unit": {"type": "string"},
            "n": {"type": "integer"}, "reason": {"type": ["string", "null"]},
            "low": {"type": "number"}, "high": {"type": "number"},
            "max": {"type": ["number", "null"]}, "total": {"type": ["number", "null"]},
        },
    },
    "Report": {
        "type": "object", "required": ["report", "window", "definitions", "rows"],
        "description": "`dora`: a row per service and ISO week, each DORA metric a Metric; "
        "`loop`: `rows` per repository and week of merge, `incident_rows` per service and week "
        "of detection; `agents`, `models`, `specs`, `areas`: a row per value with "
        "`regression_rate` and its `regression_rate_low`/`regression_rate_high`.",
        "properties": {
            "report": {"enum": ["dora", "agents", "models", "specs", "areas", "loop"]},
            "window": {"type": "object", "properties": {
                "since": {"type": ["number", "null"]}, "until": {"type": "number"},
                "service": {"type": ["string", "null"]}, "repo": {"type": ["string", "null"]},
            }},
            "definitions": {"type": "object", "additionalProperties": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "object"}},
            "incident_rows": {"type": "array", "items": {"type": "object"}},
        },
    },
    "QueryResult": {
        "type": "object", "required": ["columns", "rows", "row_count", "truncated", "as_of"],
        "properties": {
            "columns": {"type": "array", "items": {
                "type": "object", "required": ["name", "type"],
                "properties": {"name": {"type": "string"},
                               "type": {"type": "string", "description": "DuckDB's type"}}}},
            "rows": {"type": "array", "items": {"type": "array"},
                     "description": "times in ISO 8601, intervals in seconds"},
            "row_count": {"type": "integer"},
            "truncated": {"type": "boolean", "description": "rows past the limit left out"},
            "as_of": {"type": "string", "description": "when the snapshot queried was taken"},
        },
    },
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
}  # fmt: skip

COMPONENTS: dict[str, Schema] = {**_SHARED, **_REQUESTS, **_ANSWERS}
"""Every named schema of the document."""
