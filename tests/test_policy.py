"""Policy gates (`rollback.policy`) and revert planning (`rollback.revert`): pure, so tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rollback.forge import PullRef
from rollback.policy import BASE_LABELS, DEFAULT_HUMAN_GATES, Mode, Plan, gated_paths, plan
from rollback.revert import RevertContext, revert_key, revert_request

UNGATED = ("checkout/cart.py", "tests/test_cart.py")
GATED = ("checkout/cart.py", "db/migrations/002_orders.sql")
GATED_LABELS = (*BASE_LABELS, "needs-human")


@pytest.mark.parametrize(
    ("mode", "unit", "paths", "expected"),
    [
        pytest.param(Mode.OBSERVE, (103,), UNGATED, Plan(False, False, False, (), ()),
                     id="observe-ungated"),
        pytest.param(Mode.OBSERVE, (103,), GATED, Plan(False, False, False, (), ()),
                     id="observe-gated"),
        pytest.param(Mode.OBSERVE, (), (), Plan(False, False, False, (), ()), id="observe-empty"),
        pytest.param(Mode.PROPOSE, (103,), UNGATED, Plan(True, False, False, BASE_LABELS, ()),
                     id="propose-ungated"),
        pytest.param(Mode.PROPOSE, (103, 104), GATED, Plan(True, False, True, GATED_LABELS, ()),
                     id="propose-gated"),
        pytest.param(Mode.PROPOSE, (), UNGATED, Plan(False, False, False, (), ()),
                     id="propose-empty"),
        pytest.param(Mode.ACT, (103,), UNGATED, Plan(True, True, False, BASE_LABELS, ()),
                     id="act-ungated"),
        pytest.param(Mode.ACT, (103,), GATED, Plan(True, False, True, GATED_LABELS, ()),
                     id="act-gated-never-auto-merges"),
        pytest.param(Mode.ACT, (), GATED, Plan(False, False, False, (), ()), id="act-empty"),
        pytest.param(Mode.ACT, (103,), (), Plan(True, True, False, BASE_LABELS, ()),
                     id="act-no-paths"),
    ],
)  # fmt: skip
def test_plan_follows_mode_gates_and_revert_unit(
    mode: Mode, unit: tuple[int, ...], paths: tuple[str, ...], expected: Plan
) -> None:
    """Observe only notifies; propose opens; act auto-merges unless a human gate is touched."""
    got = plan(mode, unit, paths, DEFAULT_HUMAN_GATES, unknown=())
    assert replace(got, reasons=()) == expected
    assert len(got.reasons) == 1


@pytest.mark.parametrize(
    ("mode", "unit", "words"),
    [
        (Mode.OBSERVE, (1,), "observe mode"),
        (Mode.PROPOSE, (), "escalate"),
        (Mode.PROPOSE, (1,), "a person merges"),
        (Mode.ACT, (1,), "auto-merge requested"),
    ],
)
def test_plan_says_why(mode: Mode, unit: tuple[int, ...], words: str) -> None:
    """Each plan carries a reason a person can read."""
    assert words in plan(mode, unit, UNGATED, DEFAULT_HUMAN_GATES, unknown=()).reasons[0]


MERGE = ", a person must merge it"


def _gated(*reasons: str) -> Plan:
    return Plan(True, False, True, GATED_LABELS, reasons)


@pytest.mark.parametrize(
    ("mode", "unit", "paths", "unknown", "expected"),
    [
        pytest.param(Mode.ACT, (103,), (), (103,),
                     _gated("files of PR #103 unknown: treated as gated" + MERGE),
                     id="act-unknown"),
        pytest.param(Mode.ACT, (103, 104), UNGATED, (104,),
                     _gated("files of PR #104 unknown: treated as gated" + MERGE),
                     id="act-one-of-two-unknown"),
        pytest.param(Mode.ACT, (103, 104), (), (103, 104),
                     _gated("files of PR #103, PR #104 unknown: treated as gated" + MERGE),
                     id="act-both-unknown"),
        pytest.param(Mode.ACT, (103, 104), GATED, (104,),
                     _gated("touches human-gated paths (db/migrations/002_orders.sql): "
                            "a person must merge it",
                            "files of PR #104 unknown: treated as gated" + MERGE),
                     id="act-gated-and-unknown"),
        pytest.param(Mode.PROPOSE, (103,), (), (103,),
                     _gated("files of PR #103 unknown: treated as gated" + MERGE),
                     id="propose-unknown"),
        pytest.param(Mode.OBSERVE, (103,), (), (103,),
                     Plan(False, False, False, (), ("observe mode: notify only",)),
                     id="observe-unknown"),
        pytest.param(Mode.ACT, (), (), (103,),
                     Plan(False, False, False, (),
                          ("no PR on record to revert: escalate to people",)),
                     id="act-empty-unit-unknown"),
    ],
)  # fmt: skip
def test_plan_treats_unknown_files_as_gated(
    mode: Mode,
    unit: tuple[int, ...],
    paths: tuple[str, ...],
    unknown: tuple[int, ...],
    expected: Plan,
) -> None:
    """A PR whose files are unknown gates its revert as a gated path would: needs-human, never
    auto-merged, and the reason names the PR."""
    assert plan(mode, unit, paths, DEFAULT_HUMAN_GATES, unknown=unknown) == expected


def test_gated_reason_names_the_paths_and_elides_the_rest() -> None:
    """The gated reason lists up to five gated paths, then an ellipsis."""
    paths = [f"db/migrations/{i:03}.sql" for i in range(7)]
    reason = plan(Mode.ACT, (1,), paths, DEFAULT_HUMAN_GATES, unknown=()).reasons[0]
    assert "db/migrations/004.sql" in reason
    assert "db/migrations/005.sql" not in reason
    assert "…" in reason


@pytest.mark.parametrize(
    ("path", "gated"),
    [
        ("migrations/001_init.sql", True),
        ("db/migrations/002_orders.py", True),
        ("services/api/db/migrations/x.py", True),
        ("schema.graphql", True),
        ("db/schema.sql", True),
        ("queries.sql", True),
        ("db/queries.sql", True),
        ("auth/session.py", True),
        ("src/auth/tokens.py", True),
        ("payments/charge.py", True),
        ("src/payments/charge.py", True),
        ("jobs/delete_stale_users.py", True),
        ("package.json", True),
        ("web/package.json", True),
        ("services/api/requirements-dev.txt", True),
        ("requirements.txt", True),
        ("go.sum", True),
        ("crates/core/Cargo.toml", True),
        ("pyproject.toml", True),
        ("checkout/cart.py", False),
        ("checkout/payment.py", False),
        ("src/oauth_client.py", False),
        ("docs/authors.md", False),
        ("web/package.json.md", False),
        ("README.md", False),
    ],
)
def test_default_gates_match_at_the_root_and_nested(path: str, gated: bool) -> None:
    """Default human gates catch migrations, schema, auth, payments, deletes and manifests."""
    assert gated_paths([path], DEFAULT_HUMAN_GATES) == ((path,) if gated else ())


@pytest.mark.parametrize(
    ("gate", "path", "gated"),
    [
        ("**/secrets/**", "secrets/prod.yaml", True),  # `**/` also at the root
        ("**/secrets/**", "deploy/secrets/prod.yaml", True),
        ("**/secrets/**", "deploy/not-secrets/prod.yaml", False),
        ("**/*.tf", "main.tf", True),
        ("**/*.tf", "infra/prod/main.tf", True),
        ("secrets/**", "deploy/secrets/prod.yaml", False),  # no `**/`: anchored at the root
        ("Dockerfile", "Dockerfile", True),
        ("Dockerfile", "images/Dockerfile", False),
    ],
)
def test_gated_paths_reads_globs(gate: str, path: str, gated: bool) -> None:
    """A `**/` gate matches at the root and at any depth; other globs match from the root."""
    assert gated_paths([path], [gate]) == ((path,) if gated else ())


def test_gated_paths_keeps_order_and_lists_each_path_once() -> None:
    """A path matching several gates is listed once, in the order given."""
    paths = ["db/schema.sql", "a.py", "migrations/1.sql"]
    assert gated_paths(paths, ["**/*.sql", "**/schema*", "migrations/**"]) == (
        "db/schema.sql",
        "migrations/1.sql",
    )


# -- revert_request ------------------------------------------------------------------------------

CONTEXT = RevertContext(
    incident_id="inc_0123456789ab",
    service="checkout",
    environment="production",
    deploy_sha="1046c3a3bb90ec639ec3f4eaaf4bba2a4bd642e7",
    sli="http_errors",
    before="0.50%",
    after="5.00%",
    statistic="log-LR 42.1 >= 6.91",
    suspects=("#103 (p=0.91): touches checkout/payment.py, in the new errors' stack",),
    agent_sessions=("cx-2b81d0c4",),
    incident_url="https://rearguard.example.com/v1/incidents/inc_0123456789ab",
)
PR_103 = PullRef(103, "352731f0c4d2e8b19a7f6e5d4c3b2a1908f7e6d5", "Simplify charge()")
PR_104 = PullRef(104, "18bf542aa1b2c3d4e5f60718293a4b5c6d7e8f90", "Index orders by customer")


@pytest.mark.parametrize(
    ("prs", "title"),
    [
        ((PR_103,), "Revert #103: Simplify charge()"),
        ((PR_103, PR_104), "Revert #103, #104 (checkout)"),
    ],
)
def test_revert_title_names_the_prs(prs: tuple[PullRef, ...], title: str) -> None:
    """One PR is named with its title; several by number with the service."""
    request = revert_request("acme/checkout", "main", prs, CONTEXT, BASE_LABELS)
    assert request.title == title
    assert request.prs == prs
    assert request.labels == BASE_LABELS
    assert (request.repo, request.base_branch) == ("acme/checkout", "main")


def test_revert_body_carries_the_evidence_and_the_idempotency_marker() -> None:
    """The body shows the SLI, the numbers, the suspects and sessions, and the hidden key."""
    request = revert_request("acme/checkout", "main", [PR_103, PR_104], CONTEXT, ())
    key = revert_key(CONTEXT.incident_id)
    assert request.key == key == "revert-inc_0123456789ab"
    assert request.branch == "rearguard/revert-inc_0123456789ab"
    body = request.body
    assert body.endswith(f"<!-- rearguard-key: {key} -->")
    for evidence in (
        "**http_errors**",
        "**checkout** (production)",
        "`1046c3a3bb`",
        "0.50% before, **5.00%** after (log-LR 42.1 >= 6.91)",
        "- #103 Simplify charge() (`352731f0c4`)",
        "- #104 Index orders by customer (`18bf542aa1`)",
        "- #103 (p=0.91): touches checkout/payment.py",
        "Agent sessions: `cx-2b81d0c4`",
        "never pushes to main",
        f"Incident: {CONTEXT.incident_url}",
    ):
        assert evidence in body


def test_revert_body_without_suspects_sessions_or_link() -> None:
    """Missing suspects, sessions and incident URL read as such instead of vanishing."""
    bare = RevertContext(
        "inc_1", "checkout", "staging", "abc", "errors", "1%", "9%", "x", (), (), None
    )
    body = revert_request("acme/checkout", "trunk", [PR_103], bare, ()).body
    assert "- none on record" in body
    assert "none recorded" in body
    assert "Incident:" not in body
    assert "never pushes to trunk" in body


def test_revert_title_is_capped_for_github() -> None:
    """A very long PR title is cut to fit GitHub's title limit."""
    long_pr = PullRef(7, "f" * 40, "x" * 400)
    assert len(revert_request("a/b", "main", [long_pr], CONTEXT, ()).title) == 250


def test_revert_without_prs_is_refused() -> None:
    """Asking for a revert of nothing is a `ValueError`."""
    with pytest.raises(ValueError, match="at least one PR"):
        revert_request("acme/checkout", "main", [], CONTEXT, BASE_LABELS)
