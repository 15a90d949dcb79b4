"""The public views are the contract: their names and columns are pinned here and documented
column by column in the README; over a real run (the demo's store) they join deploys, PRs,
agent sessions and incidents as reports need."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import duckdb
import pytest

from attribution.public_views import SCHEMA, VIEWS
from attribution.store import Store
from loop.cli.main import main
from tests.shared_fixtures import REPO_ROOT

COLUMNS = {
    "deploys": ["deploy_id", "service", "environment", "repo", "sha", "previous_sha",
                "started_at", "deployed_at", "url", "source", "recorded_at", "phase", "verdict",
                "verdict_reason", "incident_id", "pr_count"],
    "prs": ["repo", "number", "title", "author", "url", "merge_sha", "head_sha", "base_ref",
            "head_ref", "opened_at", "merged_at", "labels", "files", "author_kind", "agent_name",
            "agent_session", "agent_model", "agent_role", "agent_source", "agent_grain", "spec",
            "tokens", "cost_usd", "recorded_at"],
    "deploy_prs": ["deploy_id", "repo", "number"],
    "agent_sessions": ["session_id", "agent_name", "model", "role", "first_seen", "tokens",
                       "cost_usd"],
    "incidents": ["incident_id", "deploy_id", "service", "environment", "sli", "opened_at",
                  "verdict", "ambiguous", "confidence", "revert_unit", "reason", "onset_at",
                  "detected_at", "revert_opened_at", "recovered_at", "time_to_revert",
                  "time_to_restore"],
    "suspects": ["incident_id", "rank", "repo", "number", "probability", "reason"],
    "actions": ["action_id", "incident_id", "kind", "status", "attempts", "created_at",
                "updated_at", "url", "error"],
    "revert_rounds": ["incident_id", "round", "prs", "action_id", "decided_at", "reason",
                      "deploy_id", "outcome", "outcome_at", "note"],
    "observations": ["deploy_id", "seq", "observed_at", "sli", "status", "reason", "mode",
                     "baseline_value", "watch_value", "null_value", "baseline_bad",
                     "baseline_total", "watch_bad", "watch_total", "statistic", "threshold",
                     "effect", "onset", "due_at"],
    "feedback": ["feedback_id", "incident_id", "kind", "pr_number", "actor", "source", "note",
                 "created_at"],
    "fixes": ["incident_id", "action_id", "status", "kind", "url", "number", "for_pr", "reason",
              "created_at", "updated_at", "error", "llm_calls", "llm_models", "input_tokens",
              "output_tokens", "cost_usd"],
    "ci_runs": ["run_id", "repo", "number", "kind", "head_sha", "attempt", "conclusion",
                "finished_at"],
    "reviews": ["review_id", "repo", "number", "state", "reviewer", "commit_id",
                "submitted_at"],
}  # fmt: skip
"""Every view and its columns, in order: changing one is changing the contract (and README)."""


def test_the_views_have_the_pinned_columns(tmp_path: Path) -> None:
    """A freshly migrated store has exactly these views in schema `public`, with these columns;
    each partition column is one of its view's columns."""

    async def migrate() -> None:
        await (await Store.open(tmp_path / "store.duckdb")).close()

    asyncio.run(migrate())
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    found: dict[str, list[str]] = {}
    for view, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ? "
        "ORDER BY table_name, ordinal_position", [SCHEMA],
    ).fetchall():  # fmt: skip
        found.setdefault(view, []).append(column)
    assert found == COLUMNS
    assert set(VIEWS) == set(COLUMNS)
    for view, time_column in VIEWS.items():
        assert time_column is None or time_column in COLUMNS[view], view


def test_the_readme_describes_every_column() -> None:
    """Each view of the README's table lists exactly the view's columns."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### The public views", 1)[1]
    table = next(block for block in section.split("\n\n") if block.startswith("| view"))
    documented: dict[str, set[str]] = {}
    view = ""
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        view = cells[0].strip("`") or view
        documented.setdefault(view, set()).update(re.findall(r"`([a-z_]+)`", cells[1]))
    assert documented == {v: set(c) for v, c in COLUMNS.items()}


def test_the_demo_store_answers_who_broke_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over the demo's store: the regressed deploy's PRs with their agent session, model and
    cost, the incident's times and its fix, by joining the views."""
    assert main(["demo", "--json", "--dir", str(tmp_path / "demo")]) == 0
    store = json.loads(capsys.readouterr().out)["store"]
    sql = (
        "SELECT p.number, p.agent_session, s.model, p.cost_usd, i.time_to_restore > 0, f.kind "
        "FROM deploys d JOIN deploy_prs dp USING (deploy_id) "
        "JOIN prs p ON p.repo = dp.repo AND p.number = dp.number "
        "JOIN agent_sessions s ON s.session_id = p.agent_session "
        "JOIN incidents i ON i.deploy_id = d.deploy_id "
        "JOIN fixes f ON f.incident_id = i.incident_id WHERE d.verdict = 'regressed'"
    )
    assert main(["query", sql, "--store", store, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows == [[103, "cx-2b81d0c4", "gpt-5-codex", 1.12, True, "bug_issue"]]
