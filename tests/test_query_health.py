"""Which SLI queries fail now: set by a failing evaluation, cleared by one that answered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from loop.watch.query_health import QueryHealth
from loop.watch.warnings import failure_key
from observer.verdict import SliResult, Status, Verdict

Q = {"bad": "x", "total": "y"}


def _verdict(*results: tuple[str, str, dict[str, str]]) -> Verdict:
    return Verdict(Status.OBSERVING, "", tuple(
        SliResult(sli, Status.OBSERVING, f"because {cause}", failure=cause, queries=queries)
        for sli, cause, queries in results
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("evaluations", "new", "failing"),
    [
        ([[("errors", "query_rejected", Q)]], [1], {"errors": "query_rejected"}),
        ([[("errors", "query_rejected", Q)]] * 3, [1, 0, 0], {"errors": "query_rejected"}),
        ([[("errors", "query_rejected", Q)], [("errors", "", Q)]], [1, 0], {}),  # works again
        ([[("errors", "no_series", Q)], [("errors", "source_unavailable", Q)]], [1, 1],
         {"errors": "source_unavailable"}),  # another cause is news
        ([[("errors", "query_rejected", Q)], [("errors", "", {})]], [1, 0],
         {"errors": "query_rejected"}),  # not queried tells nothing
        ([[("errors", "query_rejected", Q), ("latency", "", Q)]], [1],
         {"errors": "query_rejected"}),
    ],
)  # fmt: skip
def test_failures_are_new_once_and_clear_when_the_query_answers(
    evaluations: list[list[tuple[str, str, dict[str, str]]]], new: list[int],
    failing: dict[str, str],
) -> None:  # fmt: skip
    """Each evaluation reports only failures not seen before; the last state is what fails."""
    health = QueryHealth()
    assert [len(health.record("shop", _verdict(*e))) for e in evaluations] == new
    assert {f.sli: f.cause for f in health.current()} == failing


def test_every_failed_evaluation_is_counted() -> None:
    """Counts grow with every failing evaluation, by service, SLI and cause."""
    health = QueryHealth()
    for _ in range(3):
        health.record("shop", _verdict(("errors", "query_rejected", Q)))
    assert health.counts == {("shop", "errors", "query_rejected"): 3}


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("2026-12-02T00:00:01", "2026-12-02T23:59:59", True),  # one notice a day
        ("2026-12-02T23:59:59", "2026-12-03T00:00:01", False),  # the next day posts again
        ("2026-12-02T12:00:00", "2027-03-02T12:00:00", False),  # a failure that comes back
    ],
)
def test_a_query_failure_is_posted_once_a_day_per_service_and_cause(
    first: str, second: str, same: bool
) -> None:
    at = [datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() for t in (first, second)]
    keys = [failure_key("checkout", "query_rejected", t) for t in at]
    assert (keys[0] == keys[1]) is same
    assert failure_key("checkout", "query_rejected", at[0]) != failure_key(
        "checkout", "source_unavailable", at[0]
    )
