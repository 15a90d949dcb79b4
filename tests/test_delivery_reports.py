"""Delivery reports: the pure metrics (`attribution.delivery`) by tables of cases, and a year of
history written through the store's write path, read by `rearguard report` on the store file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from attribution.delivery import dora_row, loop_incident_row, loop_pr_row, metric, rate, wilson
from attribution.evidence import PrChange
from attribution.feedback import report
from attribution.records import AgentIdentity, MergedPR
from attribution.reports import REGRESSIONS, build_report
from attribution.store import Store
from attribution.store_reports import Window
from loop.api.fields import IngestError
from loop.api.reports import parse_since
from loop.cli.main import main
from tests import delivery_history as history


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        pytest.param(0, 0, None, id="no-trials"),
        pytest.param(0, 10, (0.0, 0.2775), id="none-of-ten"),
        pytest.param(10, 10, (0.7225, 1.0), id="all-of-ten"),
        pytest.param(1, 2, (0.0945, 0.9055), id="half-of-two-is-wide"),
        pytest.param(500, 1000, (0.4691, 0.5309), id="half-of-thousand-is-narrow"),
        pytest.param(0.5, 4, (0.0132, 0.6042), id="fractional-culprit-share"),
    ],
)
def test_wilson_interval(successes: float, n: int, expected: tuple[float, float] | None) -> None:
    found = wilson(successes, n)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (round(found[0], 4), round(found[1], 4)) == expected


@pytest.mark.parametrize(
    ("value", "n", "expected_value", "reason"),
    [
        pytest.param(12.5, 3, 12.5, None, id="value"),
        pytest.param(None, 0, None, "why", id="missing-says-why"),
        pytest.param(5.0, 0, None, "why", id="no-samples-is-missing"),
        pytest.param(0.0, 4, 0.0, None, id="zero-is-a-value"),
    ],
)
def test_metric_is_a_value_or_a_reason(
    value: float | None, n: int, expected_value: float | None, reason: str | None
) -> None:
    m = metric(value, n, "seconds", "why")
    assert (m["value"], m["reason"], m["n"]) == (expected_value, reason, n)


def _dora(**agg: Any) -> dict[str, Any]:
    return dora_row({"service": "s", "week": "2026-W01", "week_start": 0.0} | agg)


@pytest.mark.parametrize(
    ("agg", "metric_key", "value", "reason"),
    [
        pytest.param({}, "deployment_frequency", 0, None, id="no-deploys-is-zero-frequency"),
        pytest.param({}, "change_failure_rate", None, "no deploys this week", id="cfr-no-deploys"),
        pytest.param({"deploys": 4, "failed": 1}, "change_failure_rate", 0.25, None, id="cfr"),
        pytest.param({"deploys": 2, "lead_prs": 3, "lead_n": 0}, "lead_time_for_changes", None,
                     "none of the 3 PRs first deployed this week has an opening time",
                     id="lead-without-opening-times"),
        pytest.param({"deploys": 2}, "lead_time_for_changes", None,
                     "no PR was first deployed this week", id="lead-without-prs"),
        pytest.param({"deploys": 2, "lead_prs": 2, "lead_n": 1, "lead_median": 60.0},
                     "lead_time_for_changes", 60.0, None, id="lead"),
        pytest.param({"deploys": 2}, "failed_deployment_recovery_time", None,
                     "no deploy failed this week", id="recovery-nothing-failed"),
        pytest.param({"deploys": 2, "failed": 1}, "failed_deployment_recovery_time", None,
                     "none of the 1 failed deploys has a verified recovery",
                     id="recovery-not-verified"),
        pytest.param({"deploys": 4, "rework": 1}, "deployment_rework_rate", 0.25, None,
                     id="rework"),
    ],
)  # fmt: skip
def test_dora_row(
    agg: dict[str, Any], metric_key: str, value: float | None, reason: str | None
) -> None:
    m = _dora(**agg)[metric_key]
    assert (m["value"], m["reason"]) == (value, reason)


def test_rates_carry_their_interval() -> None:
    m = rate(1, 4, "never")
    assert (m["value"], m["low"], m["high"]) == (0.25, 0.0456, 0.6994)


@pytest.mark.parametrize(
    ("agg", "metric_key", "value", "reason"),
    [
        pytest.param({"prs": 2}, "spec_to_merge", None,
                     "the store records no time a spec was written", id="spec-time-unknown"),
        pytest.param({"prs": 2}, "verification_pass_rate", None,
                     "no CI run recorded for the PRs merged this week", id="no-ci"),
        pytest.param({"prs": 2, "ci_prs": 2, "first_pass": 1}, "verification_pass_rate", 0.5,
                     None, id="pass-rate"),
        pytest.param({"prs": 2, "ci_prs": 2, "ci_attempts_mean": 1.5, "ci_attempts_max": 2},
                     "ci_attempts", 1.5, None, id="attempts"),
        pytest.param({"prs": 2}, "review_rounds", None,
                     "no review recorded for the PRs merged this week", id="no-reviews"),
        pytest.param({"prs": 2}, "cost_per_pr", None, "no PR merged this week states its cost",
                     id="no-cost"),
    ],
)  # fmt: skip
def test_loop_pr_row(
    agg: dict[str, Any], metric_key: str, value: float | None, reason: str | None
) -> None:
    row = loop_pr_row({"repo": "r", "week": "2026-W01", "week_start": 0.0} | agg)
    assert (row[metric_key]["value"], row[metric_key]["reason"]) == (value, reason)


def test_loop_incident_row_without_onset_says_so() -> None:
    row = loop_incident_row({"service": "s", "week": "w", "week_start": 0.0, "incidents": 2,
                             "tokens_mean": 0.0, "tokens_total": 0})  # fmt: skip
    assert row["onset_to_detection"]["reason"] == (
        "the detector measured no onset for this week's incidents"
    )
    assert row["tokens_per_incident"]["value"] == 0.0  # no Fixer call is a real zero


def test_regression_rows_keep_their_keys_and_add_an_interval() -> None:
    pr = MergedPR("o/r", 1, "t", "a", "https://github.com/o/r/pull/1", "a" * 40, "b" * 40, "main",
                  1.0, "", AgentIdentity("agent", "claude"))  # fmt: skip
    [row] = report("agent", [PrChange(pr)], [], [])
    assert {"agent", "prs", "incidents_blamed", "culprits", "corrections", "regression_rate",
            "smoothed_rate", "overall_rate", "authorship"} <= set(row)  # fmt: skip
    assert (row["regression_rate"], row["regression_rate_low"], row["regression_rate_high"]) == (
        0.0, 0.0, 0.7935)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("90d", 1_000_000.0 - 90 * 86400, id="duration"),
        pytest.param("12h", 1_000_000.0 - 12 * 3600, id="hours"),
        pytest.param("2026-01-05T00:00:00Z", 1_767_571_200.0, id="iso"),
        pytest.param("1767571200", 1_767_571_200.0, id="unix"),
    ],
)
def test_parse_since(text: str | None, expected: float | None) -> None:
    assert parse_since(text, 1_000_000.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "0d", "-5d", "2026-01-05", "", "9" * 30])
def test_bad_since_is_refused(text: str) -> None:
    with pytest.raises(IngestError) as caught:
        parse_since(text, 1_000_000.0)
    assert caught.value.status == 400


@pytest.fixture(scope="module")
def year_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding `delivery_history.build_year` for `checkout`, closed."""
    import asyncio  # noqa: PLC0415 - a module fixture runs outside the test's event loop

    path = tmp_path_factory.mktemp("year") / "store.duckdb"

    async def build() -> None:
        store = await Store.open(path)
        try:
            await history.build_year(store)
        finally:
            await store.close()

    asyncio.run(build())
    return path


def test_report_dora_prints_the_five_metrics_per_week(
    year_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance scenario: `rearguard report dora --service checkout` on a year of history."""
    assert main(["report", "dora", "--service", "checkout", "--store", str(year_store)]) == 0
    out = capsys.readouterr().out
    for name in ("deployment frequency", "lead time for changes", "change failure rate",
                 "failed deployment recovery time", "deployment rework rate"):  # fmt: skip
        assert name in out.splitlines()[2]  # the table's header line
        assert name.capitalize() + ":" in out  # and its definition beneath
    lines = [line for line in out.splitlines() if line.startswith("checkout")]
    assert lines[0].split()[:4] == ["checkout", "2025-W45", "2", "2.0d"]
    assert "50.0% (9%-91%, n=2)" in lines[0]  # the failed week: one of two deploys, reverted
    assert "1.5h" in lines[0]  # recovered 5400 s after the failed deploy
    assert "n/a [" in lines[1]  # the next week recovered nothing: said, not invented
    assert "n/a: no deploy failed this week" in out


def test_report_dora_json_has_every_week(
    year_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "dora", "--json", "--store", str(year_store),
                 "--since", "2025-11-03T00:00:00Z"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    rows = document["rows"]
    assert set(document["definitions"]) == {
        "deployment_frequency", "lead_time_for_changes", "change_failure_rate",
        "failed_deployment_recovery_time", "deployment_rework_rate",
    }  # fmt: skip
    shipped = rows[: history.WEEKS]
    assert [r["week"] for r in shipped[:3]] == ["2025-W45", "2025-W46", "2025-W47"]
    assert all(r["deployment_frequency"]["value"] == 2 for r in shipped)
    assert all(r["lead_time_for_changes"]["value"] == history.LEAD_OPEN for r in shipped)
    failed = [r for r in shipped if r["change_failure_rate"]["value"]]
    assert len(failed) == history.WEEKS // history.FAIL_EVERY
    assert all(r["failed_deployment_recovery_time"]["value"] == history.TO_RESTORE for r in failed)
    assert all(r["deployment_rework_rate"]["value"] == 0.5 for r in failed)
    later = rows[history.WEEKS :]  # the weeks since the history stopped, up to now
    assert all(r["deployment_frequency"]["value"] == 0 for r in later)
    assert all(r["change_failure_rate"]["reason"] == "no deploys this week" for r in later)


def test_report_loop_from_the_store(year_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "loop", "--json", "--store", str(year_store)]) == 0
    document = json.loads(capsys.readouterr().out)
    first = document["rows"][0]
    assert (first["repo"], first["prs"], first["spec_prs"]) == ("acme/checkout", 2, 2)
    assert first["cost_per_pr"]["value"] == 0.5
    assert first["verification_pass_rate"]["reason"] == (
        "no CI run recorded for the PRs merged this week"
    )
    [incidents] = document["incident_rows"][:1]
    assert incidents["detection_to_revert"]["value"] == history.TO_REVERT
    assert incidents["detection_to_attribution"]["value"] == 0.0


@pytest.mark.parametrize("kind", ["agents", "models", "specs", "areas"])
async def test_regression_reports_equal_the_labels_report(year_store: Path, kind: str) -> None:
    """The SQL-counted regression rows are `attribution.feedback.report`'s over every PR."""
    dimension = REGRESSIONS[kind]
    store = await Store.open(year_store)
    try:
        document = await build_report(store, kind, Window(until=time.time()))
        deployed, blames, signals = await store.evidence.learning("acme/checkout")
    finally:
        await store.close()
    expected = [
        {"repo": "acme/checkout", **r} for r in report(dimension, deployed, blames, signals)
    ]
    assert document["rows"] == expected
    assert any(r["culprits"] for r in expected)  # the history blames some: not all zeros
    assert any(r["corrections"] for r in expected)
    if kind == "areas":  # from stored files (a rename counts both paths) and webhook paths
        assert {r["area"] for r in expected} == {".", "lib/core", "old", "src/auth", "src/cart",
                                             "src/pay"}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["report", "weekly", "--store", "x"], "the kinds are dora, agents",
                     id="unknown-kind"),
        pytest.param(["report", "dora", "--store", "/nonexistent/s.duckdb"], "no store at",
                     id="no-store"),
        pytest.param(["report", "dora", "--store", "{store}", "--since", "soon"], "--since",
                     id="bad-since"),
    ],
)  # fmt: skip
def test_report_refuses_bad_use(
    argv: list[str], message: str, year_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.replace("{store}", str(year_store)) for a in argv]) == 2
    assert message in capsys.readouterr().err


async def test_migration_summarises_the_ci_runs_kept_before_it(tmp_path: Path) -> None:
    """A store from before migration 012 (its tables dropped, its version forgotten) gets each
    PR's CI summary from the runs it kept: workflow runs preferred over check suites."""
    path = tmp_path / "store.duckdb"
    store = await Store.open(path)
    await store.evidence.record_ci_run("workflow_run:1:1", "o/r", [4], "workflow_run", "a" * 40,
                                       1, "failure", 100.0)  # fmt: skip
    await store.evidence.record_ci_run("workflow_run:1:2", "o/r", [4], "workflow_run", "a" * 40,
                                       2, "success", 200.0)  # fmt: skip
    await store.evidence.record_ci_run("check_suite:9:x", "o/r", [4], "check_suite", "a" * 40,
                                       1, "success", 200.0)  # fmt: skip
    summary = "SELECT ci_runs, ci_attempt, ci_failed, reviews FROM pr_loop"
    assert await store.fetch(summary) == [(2, 2, True, 0)]
    await store.fetch("DROP TABLE pr_loop")
    await store.fetch("DROP TABLE pr_reviews")
    await store.fetch("DELETE FROM schema_migrations WHERE version = 12")
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.fetch(summary) == [(2, 2, True, 0)]
    finally:
        await store.close()
