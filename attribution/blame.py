"""Where each PR's changed lines stand at the deploy's head, as `git blame` would say.

A PR's line ranges are read from its own diff: they are line numbers in the file just after that
PR. A stack frame after the deploy points into the file at the deploy's head, after every later
PR of the same deploy. When a later PR edited the same file above the earlier PR's lines, they
moved; when it rewrote them, they are the later PR's lines now. Without carrying the ranges
forward, a frame on the culprit's line misses it by the later PR's offset and matches nothing
(or an innocent PR's range), which is what confused two PRs touching one shared file.

Each PR's ranges are carried through the edits (`attribution.diffs.changed_edits`) of every PR
merged after it that changed the same file (following renames). A PR whose edits are unknown
(files recorded before edits were kept) moves nothing, as before. A PR's diff is against its
merge base, so when a later PR branched before the earlier one merged its offsets are close but
not exact; the `near` slack of `attribution.frames` absorbs the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from attribution.diffs import Edit, FileChange, LineRange
from attribution.evidence import PrChange


def carry(ranges: Sequence[LineRange], edits: Sequence[Edit]) -> tuple[LineRange, ...]:
    """`ranges` of a file mapped through a later change's `edits`: lines before an edit keep
    their place, lines after it shift by its size, lines it removed are dropped."""
    out: list[LineRange] = []
    ordered = sorted(edits)
    for first, last in ranges:
        current, delta = first, 0
        for old_first, old_count, _, new_count in ordered:
            if current > last:
                break
            if old_first > current:
                out.append((current + delta, min(last, old_first - 1) + delta))
            current = max(current, old_first + old_count)
            delta += new_count - old_count
        if current <= last:
            out.append((current + delta, last + delta))
    return tuple(out)


def _later_edit(later: PrChange, path: str) -> tuple[str, tuple[Edit, ...]] | None:
    """The path `path` has after `later` (renamed or not) and `later`'s edits to it."""
    for f in later.files:
        if f.previous_path == path or (f.path == path and f.previous_path is None):
            return f.path, f.edits
    return None


def _to_head(
    path: str, ranges: tuple[LineRange, ...], later: Sequence[PrChange]
) -> tuple[str, tuple[LineRange, ...]]:
    """`path` and its `ranges` carried through the edits of the `later` PRs, in merge order."""
    for change in later:
        found = _later_edit(change, path)
        if found is not None:
            path, edits = found
            ranges = carry(ranges, edits)
    return path, ranges


def at_head(changes: Sequence[PrChange]) -> list[PrChange]:
    """Each PR with its files' paths and ranges, and its line records, as they stand after the
    last PR of the deploy (merge order: `merged_at`, then number); the order of `changes` is
    kept. A line record is carried like the changed lines: it is in the same frame."""
    ordered = sorted(changes, key=lambda c: (c.pr.merged_at, c.number))
    moved: dict[int, PrChange] = {}
    for i, change in enumerate(ordered):
        later = ordered[i + 1 :]
        files = []
        for f in change.files:
            path, ranges = _to_head(f.path, f.ranges, later)
            files.append(f if path == f.path and ranges == f.ranges else _moved(f, path, ranges))
        lines = []
        for record in change.lines:
            path, ranges = _to_head(record.path, record.ranges, later)
            if ranges:
                lines.append(replace(record, path=path, ranges=ranges))
        moved[change.number] = replace(change, files=tuple(files), lines=tuple(lines))
    return [moved[c.number] for c in changes]


def _moved(f: FileChange, path: str, ranges: tuple[LineRange, ...]) -> FileChange:
    previous = f.previous_path if path == f.path else (f.previous_path or f.path)
    return replace(f, path=path, ranges=ranges, previous_path=previous)
