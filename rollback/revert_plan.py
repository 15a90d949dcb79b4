"""Revert planning: which paths to restore, and which conflict, to undo merged PRs on a head.

From each PR's trees (its merge commit's first parent's, and its own) and the current head's,
decide per path the entry that undoes the PRs (None deletes a file they added), or that the path
conflicts because some other commit changed it since. Pure: no I/O. `rollback.github` reads the
trees through GitHub's Git Data API and writes the plan back as a tree with `tree_entries`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollback.forge import PullRef

Entry = tuple[str, str, str]  # (mode, type, sha) of one path in a tree
Tree = Mapping[str, Entry]


@dataclass(frozen=True, slots=True)
class Change:
    """What one merged PR did: its merge commit's first parent's tree and its own."""

    pr: PullRef
    before: Tree
    after: Tree

    @property
    def paths(self) -> set[str]:
        """Paths whose entry differs between the two trees."""
        both = self.before.keys() | self.after.keys()
        return {path for path in both if self.before.get(path) != self.after.get(path)}


def plan_revert(changes: Sequence[Change], head: Tree) -> tuple[dict[str, Entry | None], list[str]]:
    """Entries that undo `changes` on `head` (None deletes), and the paths that conflict.

    Per path, walk back from the head's entry through the PRs that touched it, each PR's `after`
    matching the current entry; a path whose walk breaks was changed by some other commit.
    """
    restore: dict[str, Entry | None] = {}
    conflicts: list[str] = []
    for path in sorted(set().union(*(change.paths for change in changes))):
        pending = [change for change in changes if path in change.paths]
        current = head.get(path)
        while pending:
            match = next((c for c in pending if c.after.get(path) == current), None)
            if match is None:
                conflicts.append(path)
                break
            current = match.before.get(path)
            pending.remove(match)
        else:
            if current != head.get(path):
                restore[path] = current
    return restore, conflicts


def tree_entries(restore: Mapping[str, Entry | None], head: Tree) -> list[Any]:
    """Create-tree entries: each path back to its old blob; `sha: None` deletes an added file."""
    entries = []
    for path, entry in restore.items():
        mode, kind, _ = entry or head[path]
        sha = entry[2] if entry else None
        entries.append({"path": path, "mode": mode, "type": kind, "sha": sha})
    return entries
