"""Which SLI queries fail now: set by a failing evaluation, cleared by one that answered."""

from __future__ import annotations

import pytest

from loop.watch.query_health import QueryHealth
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
