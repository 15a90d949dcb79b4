"""Carrying a PR's changed lines to the deploy's head: diff edits, the line map, and ranking."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribution.blame import at_head, carry
from attribution.diffs import FileChange, changed_edits
from attribution.evidence import ErrorEvent, Evidence, Frame, PrChange
from attribution.store import Store
from attribution.suspects import rank
from tests.test_suspects import BAR, pr


@pytest.mark.parametrize(
    ("patch", "edits"),
    [
        ("@@ -1,3 +1,4 @@\n a\n+b\n c\n d\n", ((2, 0, 2, 1),)),
        ("@@ -10,4 +10,4 @@ def f():\n a\n-b\n+c\n d\n e\n", ((11, 1, 11, 1),)),
        ("@@ -5,3 +5,2 @@\n a\n-b\n c\n", ((6, 1, 6, 0),)),
        ("@@ -0,0 +1,3 @@\n+x\n+y\n+z\n", ((0, 0, 1, 3),)),
        ("@@ -1 +1 @@\n-a\n+b\n\\ No newline at end of file\n", ((1, 1, 1, 1),)),
        (
            "@@ -1,2 +1,2 @@\n-a\n+b\n c\n@@ -20,2 +20,4 @@\n x\n+y\n+z\n w\n",
            ((1, 1, 1, 1), (21, 0, 21, 2)),
        ),
        ("@@ -3,2 +3,2 @@\n---x\n+++y\n z\n", ((3, 1, 3, 1),)),
        ("", ()),
    ],
)
def test_changed_edits_keep_both_sides(patch: str, edits: tuple[object, ...]) -> None:
    """Each run of removed and added lines, with its place on both sides of the diff (a
    removed line whose text starts with `--` is still a removed line)."""
    assert changed_edits(patch) == edits


@pytest.mark.parametrize(
    ("ranges", "edits", "expected"),
    [
        (((10, 20),), ((5, 0, 5, 3),), ((13, 23),)),  # three lines inserted above: shifted
        (((10, 20),), ((30, 1, 30, 4),), ((10, 20),)),  # an edit below: unmoved
        (((10, 20),), ((12, 2, 12, 1),), ((10, 11), (13, 19))),  # two rewritten as one: split
        (((10, 20),), ((1, 30, 1, 2),), ()),  # all rewritten: none left
        (((10, 12), (40, 41)), ((20, 5, 20, 0),), ((10, 12), (35, 36))),  # five deleted between
        (((10, 20),), (), ((10, 20),)),  # no edits known
    ],
)
def test_carry_maps_lines_through_a_later_change(
    ranges: tuple[tuple[int, int], ...],
    edits: tuple[tuple[int, int, int, int], ...],
    expected: tuple[tuple[int, int], ...],
) -> None:
    """Lines above an edit stay, lines below shift by its size, lines it rewrote are gone."""
    assert carry(ranges, edits) == expected


def _file(
    path: str,
    ranges: tuple[tuple[int, int], ...],
    edits: tuple[tuple[int, int, int, int], ...],
    previous: str | None = None,
) -> FileChange:
    return FileChange(path, "renamed" if previous else "modified", 5, 2, ranges, previous, edits)


def test_at_head_follows_later_prs_and_renames() -> None:
    """#1's lines move down by #2's insertion above them, then follow #3's rename."""
    first = PrChange(pr(1), (_file("lib/money.py", ((90, 95),), ((90, 0, 90, 6),)),))
    second = PrChange(pr(2), (_file("lib/money.py", ((10, 17),), ((10, 0, 10, 8),)),))
    third = PrChange(pr(3), (_file("lib/cash.py", (), (), previous="lib/money.py"),))
    moved = at_head([second, first, third])
    assert [c.number for c in moved] == [2, 1, 3]
    assert moved[1].files[0].path == "lib/cash.py"
    assert moved[1].files[0].ranges == ((98, 103),)
    assert moved[0].files[0].ranges == ((10, 17),)


def test_a_frame_on_a_moved_line_names_the_pr_that_wrote_it() -> None:
    """The frame is at the deploy's head, below #2's insertion: #1 wrote that line."""
    changes = [
        PrChange(pr(1), (_file("svc/lib/money.py", ((90, 95),), ((90, 0, 90, 6),)),)),
        PrChange(pr(2), (_file("svc/lib/money.py", ((10, 17),), ((10, 0, 10, 8),)),)),
    ]
    frames = (Frame("/app/svc/lib/money.py", 101, "charge"),)
    evidence = Evidence(errors=(ErrorEvent("e1", "KeyError", 1.0, frames),))
    ranking = rank([c.pr for c in changes], BAR, changes=changes, evidence=evidence)
    assert ranking.suspects[0].number == 1
    assert not ranking.ambiguous


async def test_edits_survive_the_store(tmp_path: Path) -> None:
    """A PR's files go into DuckDB and come back with their edits, so the Watch carries lines."""
    store = await Store.open(tmp_path / "rearguard.duckdb")
    try:
        record = pr(7)
        await store.prs.record_pr(record, 1.0)
        kept = _file("svc/lib/money.py", ((10, 17),), ((10, 0, 10, 8), (40, 2, 48, 1)))
        await store.evidence.record_pr_files(record.repo, 7, [kept])
        [back] = await store.evidence.changes([record])
        assert back.files == (kept,)
    finally:
        await store.close()
