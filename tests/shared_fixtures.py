"""Where the real public samples in `../shared/fixtures` live, from one setting.

`REARGUARD_SHARED_FIXTURES` names the folder; by default it is `../shared/fixtures` beside the
repository. A user's fresh clone has no such folder: tests that need it are skipped with a message
saying so, except under CI (`CI=true`), where its absence is a failure.

Samples are read inside tests and fixtures, never at import or collection time (a skip there
would stop the whole run). A test whose fixtures read them, or that starts servers before it
does, carries `@pytest.mark.shared_samples` so it skips before any fixture runs (conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT = REPO_ROOT.parent / "shared" / "fixtures"


def shared_fixtures_dir() -> Path:
    """The fixtures folder, or skip (fail under CI) with a message naming the setting."""
    path = Path(os.environ.get("REARGUARD_SHARED_FIXTURES", str(DEFAULT)))
    if not path.is_dir():
        message = (
            f"shared fixtures not found at {path}: set REARGUARD_SHARED_FIXTURES to the "
            "shared/fixtures folder (real GitHub/Slack/Prometheus samples) to run this test"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        # At collection (a sample in a parametrize list) this skips the module; in a test, the test.
        pytest.skip(message, allow_module_level=True)
    return path


def load_json(relative: str) -> Any:
    """Parse one JSON sample, e.g. `github-webhooks/pull_request/closed.payload.json`."""
    return json.loads((shared_fixtures_dir() / relative).read_text())
