"""Unified diffs as data: parse a model-written patch and apply it to file contents, in memory.

A fix patch comes from a model, so it is treated as untrusted input: it is parsed here into the
paths it touches (which `rollback.policy.patch_refusals` then checks) and applied to the contents
the forge read, hunk by hunk, each hunk's context matched exactly (at its stated line or, as
`patch` does, at the nearest offset). Nothing here touches a disk or a repository; the forge
writes the resulting contents as a commit. Exception: `PatchError`, saying which file and hunk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"


class PatchError(ValueError):
    """The patch is malformed or does not apply; the message names the file and the hunk."""


@dataclass(frozen=True, slots=True)
class Hunk:
    """One `@@` block: where it starts in the old file and its lines with their prefix."""

    old_start: int
    lines: tuple[str, ...]  # each starts with " ", "-" or "+"

    @property
    def old(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " -"]

    @property
    def new(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " +"]


@dataclass(frozen=True, slots=True)
class FilePatch:
    """The hunks for one path; `created`/`deleted` when the old or new side is /dev/null."""

    path: str
    hunks: tuple[Hunk, ...]
    created: bool
    deleted: bool
    no_newline: bool


def _path(header: str) -> str | None:
    name = header[4:].split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        name = name[2:]
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise PatchError(f"unsafe or empty path in patch header {header!r}")
    return name


def parse(text: str) -> list[FilePatch]:
    """The file patches in `text` (a unified diff; `diff --git` lines are tolerated)."""
    lines = text.splitlines()
    files: list[FilePatch] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("--- ") or i + 1 >= len(lines):
            i += 1
            continue
        if not lines[i + 1].startswith("+++ "):
            raise PatchError(f"line {i + 2}: expected '+++' after {lines[i]!r}")
        old, new = _path(lines[i]), _path(lines[i + 1])
        path = new or old
        if path is None:
            raise PatchError(f"line {i + 1}: both sides are /dev/null")
        i += 2
        hunks: list[Hunk] = []
        no_newline = False
        while i < len(lines) and (match := _HUNK.match(lines[i])):
            old_len = int(match.group(2) or "1")
            new_len = int(match.group(4) or "1")
            i += 1
            body: list[str] = []
            seen_old = seen_new = 0
            while i < len(lines) and (seen_old < old_len or seen_new < new_len):
                line = lines[i] or " "  # an empty context line may lose its space in transit
                if line.startswith(_NO_NEWLINE):
                    i += 1
                    continue
                if line[0] not in " -+":
                    raise PatchError(f"{path}: line {i + 1} is not part of a hunk: {line!r}")
                seen_old += line[0] in " -"
                seen_new += line[0] in " +"
                body.append(line)
                i += 1
            if i < len(lines) and lines[i].startswith(_NO_NEWLINE):
                no_newline, i = True, i + 1
            hunks.append(Hunk(int(match.group(1)), tuple(body)))
        if not hunks:
            raise PatchError(f"{path}: no hunks")
        files.append(FilePatch(path, tuple(hunks), old is None, new is None, no_newline))
    if not files:
        raise PatchError("no file patches found (expected a unified diff with ---/+++ headers)")
    return files


def _find(lines: list[str], wanted: list[str], near: int) -> int | None:
    """Where `wanted` occurs in `lines`, nearest to `near` first; None if nowhere."""
    if not wanted:
        return min(max(near, 0), len(lines))
    for offset in range(max(near, len(lines)) + 1):
        for at in (near - offset, near + offset):
            if 0 <= at <= len(lines) - len(wanted) and lines[at : at + len(wanted)] == wanted:
                return at
    return None


def apply_file(patch: FilePatch, current: str | None) -> str | None:
    """The new content of `patch.path` (None: deleted) from its `current` content."""
    if patch.created and current is not None:
        raise PatchError(f"{patch.path}: the patch creates it, but it exists")
    if not patch.created and current is None:
        raise PatchError(f"{patch.path}: the patch changes it, but it does not exist")
    lines = (current or "").splitlines()
    shift = 0
    for number, hunk in enumerate(patch.hunks, start=1):
        at = _find(lines, hunk.old, max(hunk.old_start - 1, 0) + shift)
        if at is None:
            raise PatchError(f"{patch.path}: hunk {number} does not apply (context not found)")
        lines[at : at + len(hunk.old)] = hunk.new
        shift += len(hunk.new) - len(hunk.old)
    if patch.deleted:
        if lines:
            raise PatchError(f"{patch.path}: the patch deletes it but leaves lines behind")
        return None
    return "\n".join(lines) + ("" if patch.no_newline or not lines else "\n")


def apply(text: str, contents: Mapping[str, str | None]) -> dict[str, str | None]:
    """Apply every file patch in `text` to `contents` (path -> content, None: absent)."""
    out: dict[str, str | None] = {}
    for patch in parse(text):
        base = out[patch.path] if patch.path in out else contents.get(patch.path)
        out[patch.path] = apply_file(patch, base)
    return out


def paths(text: str) -> list[str]:
    """Every path the patch touches, in order."""
    return [patch.path for patch in parse(text)]
