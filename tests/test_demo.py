"""`rearguard demo` as a user runs it: a real process, a real git repository and DuckDB file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loop.cli.main", "demo", "--dir", str(tmp_path / "demo"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_demo_json_names_the_culprit_pr_and_its_agent_session(tmp_path: Path) -> None:
    """`demo --json` exits 0 and names PR #103 and its agent session as the culprit."""
    done = _demo(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [pr["number"] for pr in document["culprit_prs"]] == [103]
    assert document["culprit_prs"][0]["agent"]["session"] == "cx-2b81d0c4"
    assert [d["phase"] for d in document["deploys"]] == [
        "healthy", "recovered", "healthy", "healthy"]  # fmt: skip
    (incident,) = document["incidents"]
    assert incident["sli"] == "http_errors"
    (first,) = incident["recovery"]["rounds"]
    assert (first["outcome"], first["deploy_id"]) == ("recovered", "demo-deploy-4")
    assert incident["time_to_restore_seconds"] > 0
    assert {a["kind"]: a["status"] for a in document["actions"]} == {
        "revert": "completed",
        "notify": "completed",
        "upload": "completed",
        "reply": "completed",
        "fix": "completed",
    }
    (fix,) = document["fixes"]
    assert fix["detail"]["kind"] == "bug_issue"
    issue = Path(fix["url"].removeprefix("file://")).read_text()
    for needle in ("#103", "Given ", "When ", "Then ", "critical", "no Anthropic key"):
        assert needle in issue
    first, *rest = document["notices"]
    assert "#103" in first["text"]
    replies = [n for n in rest if n.get("thread_ts")]
    assert "Revert PR opened" in replies[0]["text"]
    assert "Bug issue opened" in replies[1]["text"]
    assert any("RECOVERED" in n["text"] for n in rest)
    store = duckdb.connect(document["store"], read_only=True)
    try:
        assert store.execute("SELECT count(*) FROM incidents").fetchall() == [(1,)]
        assert store.execute("SELECT count(*) FROM pull_requests").fetchall() == [(6,)]
    finally:
        store.close()
    branch = subprocess.run(
        ["git", "-C", document["repository"], "branch", "--list", "rearguard/*"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"rearguard/revert-{incident['id']}" in branch


def test_demo_prints_a_readable_timeline_and_the_store_path(tmp_path: Path) -> None:
    """The text demo shows each transition, the Slack payload and where the store is."""
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stderr
    for needle in ("observing -> regressed", "rolling_back -> reverted", '"blocks"',
                   "reverted -> recovered", "time to restore",
                   "culprit PR #103", str(tmp_path / "demo" / "rearguard.duckdb")):  # fmt: skip
        assert needle in done.stdout


def test_demo_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    """A non-empty --dir is refused with exit 2 and nothing is written."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep.txt").write_text("mine")
    done = _demo(tmp_path)
    assert done.returncode == 2
    assert "not empty" in done.stderr
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["keep.txt"]
