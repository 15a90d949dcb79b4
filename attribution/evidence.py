"""The evidence attribution weighs, as plain values: what the loop gathered, already parsed.

Each source (Sentry frames, Alertmanager labels, the SLI's route split, priors from the store)
has a small pure module that turns its evidence into per-PR `Score`s: a likelihood ratio against
a PR the evidence says nothing about, and a reason a person can read. `attribution.suspects`
multiplies them with the priors into probabilities. Nothing here does I/O: the loop fetches PR
files, webhook payloads and series, and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from attribution.diffs import FileChange
from attribution.line_records import LineRecord
from attribution.records import MergedPR


@dataclass(frozen=True, slots=True)
class Frame:
    """One in-app stack frame: the path the SDK reported, its line, and its function."""

    path: str
    line: int | None
    function: str | None = None

    def where(self) -> str:
        at = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{at} in {self.function}" if self.function else at


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error signature (Sentry issue) first seen at `first_seen`; frames innermost last."""

    key: str
    title: str
    first_seen: float
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class FiringAlert:
    """An Alertmanager alert that was firing, with its labels."""

    name: str
    labels: Mapping[str, str] = field(hash=False)
    starts_at: float


@dataclass(frozen=True, slots=True)
class RouteCounts:
    """Bad and total events of one value of the split label, before and after the deploy."""

    value: str
    baseline_bad: float
    baseline_total: float
    watch_bad: float
    watch_total: float


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything gathered about one incident besides the PRs and the history."""

    errors: tuple[ErrorEvent, ...] = ()
    alerts: tuple[FiringAlert, ...] = ()
    routes: tuple[RouteCounts, ...] = ()
    route_label: str = "route"
    route_globs: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Which sources have something to say (for reasons and the benchmark's tables)."""
        found = []
        if any(e.frames for e in self.errors):
            found.append("trace")
        if self.routes:
            found.append("route_split")
        if self.alerts:
            found.append("alert")
        return tuple(found)


@dataclass(frozen=True, slots=True)
class PrChange:
    """A PR as attribution weighs it: the record, its files with line ranges, its CI history,
    and the line records of its landing commit."""

    pr: MergedPR
    files: tuple[FileChange, ...] = ()
    ci_attempts: int = 0
    ci_failures: int = 0
    lines: tuple[LineRecord, ...] = ()
    """Who wrote which of its lines, where the repository records it (git-ai, Agent Trace)."""

    @property
    def number(self) -> int:
        return self.pr.number

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the PR touched, including the old path of a rename."""
        if not self.files:
            return self.pr.files
        found = [f.path for f in self.files]
        found += [f.previous_path for f in self.files if f.previous_path]
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Score:
    """One source's word on one PR: a likelihood ratio (1 says nothing) and why."""

    number: int
    ratio: float
    reason: str
