"""Suspect ranking and its evidence modules, as tables of cases over the pure functions."""

from __future__ import annotations

import pytest

from attribution.diffs import FileChange, changed_ranges, matches
from attribution.evidence import ErrorEvent, Evidence, Frame, PrChange, RouteCounts
from attribution.feedback import Blame, Signal, culprits, history
from attribution.frames import suffix_length
from attribution.identity import identify
from attribution.records import MergedPR
from attribution.signals import regressed_values, split_query
from attribution.suspects import rank

BAR = 0.6
REPO = "acme/shop"


def pr(number: int, agent: str = "claude-code") -> MergedPR:
    body = f"Agent-Session: s-{number}\nAgent-Name: {agent}\nAgent-Model: m-1\n"
    return MergedPR(
        REPO,
        number,
        f"change {number}",
        "bot",
        f"https://x/{number}",
        f"sha{number}",
        f"head{number}",
        "main",
        float(number),
        body,
        identify("bot", body, repo=REPO),
    )


def change(number: int, *files: tuple[str, tuple[tuple[int, int], ...]]) -> PrChange:
    made = tuple(FileChange(path, "modified", 5, 2, ranges) for path, ranges in files)
    return PrChange(pr(number), made)


def error(*frames: tuple[str, int]) -> ErrorEvent:
    """An error whose frames are given outermost first (the innermost last, as Sentry sends)."""
    return ErrorEvent(
        "issue-1",
        "ZeroDivisionError: division by zero",
        100.0,
        tuple(Frame(p, line, "charge") for p, line in frames),
    )


@pytest.mark.parametrize(
    ("patch", "ranges"),
    [
        ("@@ -1,3 +1,4 @@\n a\n+b\n c\n d\n", ((2, 2),)),
        ("@@ -10,4 +10,4 @@ def f():\n a\n-b\n+c\n d\n e\n", ((11, 11),)),
        ("@@ -5,3 +5,2 @@\n a\n-b\n c\n", ((6, 6),)),
        ("@@ -0,0 +1,3 @@\n+x\n+y\n+z\n", ((1, 3),)),
        ("@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n", ((1, 1),)),
        ("", ()),
    ],
)
def test_changed_ranges_read_the_new_side_of_hunks(patch: str, ranges: tuple[object, ...]) -> None:
    """Added lines and deletion points become inclusive ranges of the file after the change."""
    assert changed_ranges(patch) == ranges


@pytest.mark.parametrize(
    ("frame", "path", "length"),
    [
        ("/app/svc/src/pay/retry.py", "svc/src/pay/retry.py", 4),
        ("src/pay/retry.py", "svc/src/pay/retry.py", 3),
        ("retry.py", "svc/src/pay/retry.py", 1),
        ("/app/other.py", "svc/src/pay/retry.py", 0),
    ],
)
def test_frames_match_files_by_path_suffix(frame: str, path: str, length: int) -> None:
    """A frame's path matches a repository file by how many trailing segments agree."""
    assert suffix_length(frame, path) == length


@pytest.mark.parametrize(
    ("path", "globs", "expected"),
    [
        ("svc/src/pay/a.py", ("svc/src/pay/**",), True),
        ("svc/src/pay/a.py", ("svc/src/*.py",), False),
        ("db/migrations/001.sql", ("**/migrations/**",), True),
        ("svc/src/cart/a.py", ("svc/src/pay/**",), False),
    ],
)
def test_globs(path: str, globs: tuple[str, ...], expected: bool) -> None:
    """`*` stays within a segment, `**` crosses segments."""
    assert matches(path, globs) is expected


def test_frame_in_one_prs_changed_lines_names_it_among_eight() -> None:
    """A deploy of 8 PRs and an in-app frame on lines one PR changed: it clears the bar, and
    the reason quotes the frame."""
    changes = [change(n, (f"svc/src/area{n}/mod.py", ((10, 20),))) for n in range(1, 9)]
    changes[4] = change(5, ("svc/src/pay/retry.py", ((40, 45),)))
    evidence = Evidence(
        errors=(error(("/app/svc/src/api/handler.py", 12), ("/app/svc/src/pay/retry.py", 42)),)
    )
    ranking = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence)
    top = ranking.suspects[0]
    assert (top.number, ranking.ambiguous, ranking.revert_unit) == (5, False, (5,))
    assert top.probability >= BAR
    assert "/app/svc/src/pay/retry.py:42 in charge" in top.reason
    assert "/app/svc/src/pay/retry.py:42" in ranking.reason


@pytest.mark.parametrize(
    ("line", "first", "ambiguous", "unit"),
    [(42, 2, False, (2,)), (90, None, True, (1, 2))],
)
def test_two_prs_in_the_top_frames_file(
    line: int, first: int | None, ambiguous: bool, unit: tuple[int, ...]
) -> None:
    """Both PRs changed the frame's file: the one whose lines hold the frame ranks first; when
    neither does, the incident is ambiguous and the revert unit is both PRs."""
    changes = [
        change(1, ("svc/src/lib/money.py", ((10, 15),))),
        change(2, ("svc/src/lib/money.py", ((40, 44),))),
        change(3, ("svc/src/cart/cart.py", ((1, 5),))),
        change(4, ("svc/src/search/find.py", ((1, 5),))),
    ]
    evidence = Evidence(errors=(error(("svc/src/lib/money.py", line)),))
    ranking = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence)
    if first is not None:
        assert ranking.suspects[0].number == first
    assert ranking.ambiguous is ambiguous
    assert ranking.revert_unit == unit


@pytest.mark.parametrize(("count", "ambiguous"), [(1, False), (5, True)])
def test_no_evidence_beyond_the_sli(count: int, ambiguous: bool) -> None:
    """With nothing but the SLI, a deploy of one PR names it; a deploy of five is ambiguous."""
    prs = [pr(n) for n in range(1, count + 1)]
    ranking = rank(prs, BAR)
    assert ranking.ambiguous is ambiguous
    assert ranking.revert_unit == tuple(range(1, count + 1))


def test_route_split_points_at_the_prs_touching_the_regressed_route() -> None:
    """Only /pay regressed; the one PR touching its paths is the top suspect."""
    changes = [
        change(1, ("svc/src/pay/a.py", ((1, 2),))),
        change(2, ("svc/src/cart/b.py", ((1, 2),))),
    ]
    counts = (RouteCounts("/pay", 20, 4000, 30, 1000), RouteCounts("/cart", 20, 4000, 5, 1000))
    evidence = Evidence(
        routes=counts, route_globs={"/pay": ("svc/src/pay/**",), "/cart": ("svc/src/cart/**",)}
    )
    ranking = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence)
    assert ranking.suspects[0].number == 1
    assert "route='/pay' regressed" in ranking.suspects[0].reason


def test_regressed_values_need_a_significant_rise() -> None:
    """A tenfold rise is a regression; noise on a small route is not."""
    found = regressed_values(
        [RouteCounts("/a", 20, 4000, 50, 1000), RouteCounts("/b", 1, 100, 1, 30)]
    )
    assert [v for v, _ in found] == ["/a"]


@pytest.mark.parametrize(
    ("query", "split"),
    [
        ("sum(increase(x[1m]))", "sum by (route) (increase(x[1m]))"),
        ("sum (rate(x[1m]))", "sum by (route) (rate(x[1m]))"),
        ("rate(x[1m])", None),
    ],
)
def test_split_query(query: str, split: str | None) -> None:
    """Only a plain outer `sum(` can be split by the route label."""
    assert split_query(query, "route") == split


def test_reranking_after_a_revert_that_did_not_help() -> None:
    """The PR reverted without restoring health drops, and the next suspect leads."""
    changes = [change(1, ("svc/a.py", ((1, 2),))), change(2, ("svc/b.py", ((1, 2),)))]
    evidence = Evidence(errors=(error(("svc/a.py", 1)),))
    first = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence)
    again = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence, reverted={1})
    assert first.suspects[0].number == 1
    assert again.suspects[0].number == 2
    assert "did not restore health" in again.suspects[1].reason


BLAME = Blame("i1", REPO, (7, 8), False, (7,))


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ((), {7: 1.0}),
        ((Signal("i1", "wrong_pr"),), {}),
        ((Signal("i1", "wrong_pr"), Signal("i1", "confirmed", 8)), {8: 1.0}),
        ((Signal("i1", "false_alarm"), Signal("i1", "confirmed")), {}),
        ((Signal("i1", "not_recovered"),), {}),
        ((Signal("i1", "recovered"),), {7: 1.0}),
    ],
)
def test_culprit_labels_follow_the_signals(
    signals: tuple[Signal, ...], expected: dict[int, float]
) -> None:
    """Each outcome or verdict moves the incident's culprit label as the feedback module says."""
    assert culprits(BLAME, signals) == expected


def test_wrong_pr_restores_the_agents_prior() -> None:
    """Blamed then corrected: the agent's tally is back to what it was before the incident."""
    deployed = [PrChange(pr(7, "codex")), PrChange(pr(8, "devin"))]
    before = history(deployed, [], []).rate("agent", "codex")[0]
    blamed = history(deployed, [BLAME], []).rate("agent", "codex")[0]
    corrected = history(deployed, [BLAME], [Signal("i1", "wrong_pr")]).rate("agent", "codex")[0]
    assert blamed > before
    assert corrected == before
