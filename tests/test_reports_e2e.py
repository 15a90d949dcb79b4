"""A loop metric end to end: signed GitHub webhooks into `rearguard serve` (a child process on a
TOML config), read back by `rearguard report loop --url` with the read token from the environment,
and a store the server holds refused to `--store`."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loop.cli.main import main
from loop.config import ENV_GITHUB_WEBHOOK_SECRET, ENV_READ_TOKEN
from tests import report_payloads as payloads
from tests.serve_rig import serving

pytestmark = pytest.mark.shared_samples

SECRET = "e2e-webhook-secret"
READ_TOKEN = "e2e-read-token"
REPO = "acme/checkout"


def _post(port: int, event: str, delivery: str, payload: Any) -> int:
    body = json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/webhooks/github", data=body, method="POST",
        headers={"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                 "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


def test_loop_report_through_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {ENV_GITHUB_WEBHOOK_SECRET: SECRET, ENV_READ_TOKEN: READ_TOKEN}
    with serving(tmp_path, env) as port:
        deliveries = [
            ("workflow_run", "w-1", payloads.workflow_run(REPO, 5, 1, "failure",
                                                          "2026-10-06T09:20:00Z")),
            ("workflow_run", "w-2", payloads.workflow_run(REPO, 5, 2, "success",
                                                          "2026-10-06T09:40:00Z")),
            ("workflow_run", "w-2", payloads.workflow_run(REPO, 5, 2, "success",
                                                          "2026-10-06T09:40:00Z")),  # again
            ("pull_request_review", "r-1", payloads.review(REPO, 3, "approved",
                                                           "2026-10-06T10:00:00Z")),
            ("pull_request", "p-1", payloads.merged_pr(REPO, "2026-10-06T11:00:00Z",
                                                       opened_at="2026-10-06T07:00:00Z")),
        ]  # fmt: skip
        for event, delivery, payload in deliveries:
            assert _post(port, event, delivery, payload) in (200, 202)
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv(ENV_READ_TOKEN, READ_TOKEN)
        assert main(["report", "loop", "--url", url, "--json", "--repo", REPO,
                     "--since", "2026-10-01T00:00:00Z"]) == 0  # fmt: skip
        [row] = json.loads(capsys.readouterr().out)["rows"]
        assert (row["week"], row["prs"]) == ("2026-W41", 1)
        assert row["open_to_merge"]["value"] == 4 * 3600
        assert (row["ci_attempts"]["value"], row["verification_pass_rate"]["value"]) == (2, 0.0)
        assert row["review_rounds"]["value"] == 1
        assert main(["report", "loop", "--url", url, "--repo", REPO]) == 0
        out = capsys.readouterr().out
        assert "verification pass rate" in out
        assert "0.0% (0%-79%, n=1)" in out
        assert main(["report", "dora", "--store", str(tmp_path / "store.duckdb")]) == 1
        assert "a server holds it: use --url" in capsys.readouterr().err
        monkeypatch.setenv(ENV_READ_TOKEN, "wrong")
        assert main(["report", "dora", "--url", url]) == 1
        assert "the server answered 401" in capsys.readouterr().err
