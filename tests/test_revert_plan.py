"""plan_revert: which paths undo a run of merged PRs on the current head, and which conflict."""

from __future__ import annotations

import pytest

from rollback.forge import PullRef
from rollback.revert_plan import Change, plan_revert


def _entry(sha: str) -> tuple[str, str, str]:
    return ("100644", "blob", sha)


@pytest.mark.parametrize(
    ("changes", "head", "restore", "conflicts"),
    [
        pytest.param([({"a": "1"}, {"a": "2"})], {"a": "2"}, {"a": "1"}, [], id="modified"),
        pytest.param([({}, {"a": "1"})], {"a": "1"}, {"a": None}, [], id="added"),
        pytest.param([({"a": "1"}, {})], {}, {"a": "1"}, [], id="deleted"),
        pytest.param([({"a": "1"}, {"a": "2"})], {"a": "3"}, {}, ["a"], id="changed-later"),
        pytest.param(
            [({"a": "1"}, {"a": "2"}), ({"a": "2"}, {"a": "3"})], {"a": "3"}, {"a": "1"}, [],
            id="chain-of-two",
        ),
        pytest.param(
            [({"a": "1"}, {"a": "2"}), ({"a": "5"}, {"a": "6"})], {"a": "6"}, {}, ["a"],
            id="gap-in-chain",
        ),
        pytest.param(
            [({"a": "1"}, {"a": "2"}), ({"a": "2"}, {"a": "1"})], {"a": "1"}, {}, [],
            id="undone-within-range",
        ),
        pytest.param([({}, {"a": "1"}), ({"a": "1"}, {})], {}, {}, [], id="added-then-deleted"),
    ],
)  # fmt: skip
def test_plan_revert(
    changes: list[tuple[dict[str, str], dict[str, str]]],
    head: dict[str, str],
    restore: dict[str, str | None],
    conflicts: list[str],
) -> None:
    """Each path walks back from head through the PRs that touched it, or conflicts."""
    built = [
        Change(
            PullRef(n, f"m{n}", "t"),
            {p: _entry(s) for p, s in before.items()},
            {p: _entry(s) for p, s in after.items()},
        )
        for n, (before, after) in enumerate(changes, start=1)
    ]
    planned, clashes = plan_revert(built, {p: _entry(s) for p, s in head.items()})
    assert planned == {p: _entry(s) if s else None for p, s in restore.items()}
    assert clashes == conflicts
