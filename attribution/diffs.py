"""What a PR changed, file by file: paths, renames, sizes and the changed line ranges.

GitHub's PR files (`DiffEntry`) carry a unified-diff `patch` per file; local git gives the same
text. The line ranges are read on the new side of each hunk, because a stack frame of an error
after the deploy points into the new code: an added line is changed, and a deletion marks the
line that now stands where the deleted lines were. Code areas (the first two directories of a
path) are what priors and reports group by.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_HUNK_BOTH = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")

LineRange = tuple[int, int]
"""Inclusive (first, last) line numbers in the file after the change."""
Edit = tuple[int, int, int, int]
"""One run of removed and added lines: (old first line, old count, new first line, new count).
A pure insertion has old count 0 and its old first line is the line it was inserted before."""


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file of a PR: its path after the change, the path before a rename, size and ranges."""

    path: str
    status: str = "modified"  # added | removed | modified | renamed | copied | changed
    additions: int = 0
    deletions: int = 0
    ranges: tuple[LineRange, ...] = ()
    previous_path: str | None = None
    edits: tuple[Edit, ...] = ()

    def holds(self, line: int, slack: int = 0) -> bool:
        """Whether `line` is in (or within `slack` lines of) a changed range."""
        return any(first - slack <= line <= last + slack for first, last in self.ranges)


def changed_ranges(patch: str) -> tuple[LineRange, ...]:
    """Changed line ranges on the new side of a unified diff (`@@ -a,b +c,d @@` hunks)."""
    lines: list[int] = []
    new_line = 0
    in_hunk = False
    for raw in patch.splitlines():
        header = _HUNK.match(raw)
        if header:
            new_line, in_hunk = int(header.group(1)), True
            continue
        if not in_hunk or raw.startswith("\\"):  # "\ No newline at end of file"
            continue
        if raw.startswith("+"):
            lines.append(new_line)
            new_line += 1
        elif raw.startswith("-"):
            lines.append(max(new_line, 1))  # the deletion point
        else:
            new_line += 1
    return merge_lines(lines)


def changed_edits(patch: str) -> tuple[Edit, ...]:
    """The runs of `-`/`+` lines of a unified diff, with both sides' positions: what a later
    PR did to the lines an earlier PR of the same deploy wrote (`attribution.blame`)."""
    edits: list[Edit] = []
    old = new = 0
    run: list[int] | None = None  # [old first, old count, new first, new count]
    in_hunk = False
    for raw in patch.splitlines():
        if raw.startswith("\\"):  # "\ No newline at end of file"
            continue
        header = _HUNK_BOTH.match(raw)
        changed = in_hunk and not header and raw[:1] in ("-", "+")
        if not changed and run is not None:
            edits.append((run[0], run[1], run[2], run[3]))
            run = None
        if header:
            old, new, in_hunk = int(header.group(1)), int(header.group(2)), True
        elif changed:
            run = run or [old, 0, new, 0]
            side = 1 if raw.startswith("-") else 3
            run[side] += 1
            old, new = (old + 1, new) if side == 1 else (old, new + 1)
        elif in_hunk:
            old, new = old + 1, new + 1
    if run is not None:
        edits.append((run[0], run[1], run[2], run[3]))
    return tuple(edits)


def merge_lines(lines: Iterable[int]) -> tuple[LineRange, ...]:
    """Sorted line numbers folded into inclusive ranges of consecutive lines."""
    ranges: list[LineRange] = []
    for line in sorted(set(lines)):
        if ranges and line == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], line)
        else:
            ranges.append((line, line))
    return tuple(ranges)


def area_of(path: str, depth: int = 2) -> str:
    """The code area of a path: its first `depth` directories (`src/payments`), or `.`."""
    parts = path.split("/")[:-1]
    return "/".join(parts[:depth]) or "."


def matches(path: str, globs: Sequence[str]) -> bool:
    """Whether `path` matches one of `globs` (`*` within a segment, `**` across segments)."""
    return any(_glob(pattern).match(path) for pattern in globs)


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def size(files: Sequence[FileChange]) -> int:
    """Lines added plus lines deleted over all files."""
    return sum(f.additions + f.deletions for f in files)
