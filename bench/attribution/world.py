"""The benchmark's world: real git repositories of a service, built from a seed.

One `Stream` is one repository and a sequence of deploys. Its tree is a service of a few hundred
files (`svc/src/<area>/*.py`, shared `svc/src/lib/*.py`, tests); each deploy carries 2-20 PRs
from several simulated agent sessions (and people), some touching shared library code, some the
same files as another PR of the deploy, some renaming a file, landed by merge commit, squash or
rebase. History is written with `git fast-import` (one process per stream, which keeps the run
to minutes on two cores); every PR's files and changed line ranges are then read back from real
`git log -p` output through the same parsers production uses (`rollback.localgit.parse_git_diff`,
`attribution.diffs.changed_ranges`), and each deploy's PRs are resolved from the commit range by
`attribution.changes.change_set`, as the Watch does.

Every line of every file remembers which PR wrote it, so a culprit's buggy line can be found at
the deploy's head even after later PRs of the same deploy moved it.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from attribution.changes import RangeCommit, change_set
from attribution.diffs import FileChange, changed_edits, changed_ranges, matches
from attribution.evidence import PrChange
from attribution.identity import identify
from attribution.records import MergedPR
from bench.attribution.markers import RULES, Shape, shape
from rollback.localgit import parse_git_diff

AREAS = ("checkout", "payments", "cart", "search", "users", "inventory", "shipping", "notify")
FILES_PER_AREA = 30
LIB_FILES = 24
TEST_FILES = 40
REPO = "acme/shop"  # stream N is acme/shopN
ROUTE_FILES = 5
ROUTES = {
    f"/{a}/{r}": tuple(
        f"svc/src/{a}/{a}_{i:02d}*.py" for i in range(r * ROUTE_FILES, (r + 1) * ROUTE_FILES)
    )
    for a in AREAS
    for r in range(FILES_PER_AREA // ROUTE_FILES)
}


def route_of(path: str) -> str | None:
    """The route whose handler files include `path` (library and test files serve none)."""
    return next((r for r, globs in ROUTES.items() if matches(path, globs)), None)


# name, model, how often it writes PRs, how prone it is to regressions (hidden ground truth)
AGENTS = (
    ("claude-code", "claude-sonnet-4-6", 3.0, 1.0),
    ("codex", "gpt-5-codex", 2.0, 2.5),
    ("devin", "devin-2", 1.0, 1.0),
    ("copilot", "gpt-4.1", 1.5, 1.6),
    (None, None, 1.0, 0.6),  # people
)
PEOPLE = ("alice", "bob", "chen")

Line = tuple[str, int]  # text, the PR number that wrote it (0: the initial tree)


@dataclass
class Pr:
    """A simulated PR: who wrote it, how it landed, and what it did to the tree."""

    number: int
    agent: str | None
    model: str | None
    session: str
    author: str
    area: str
    method: str
    propensity: float
    lines: int = 0
    touched: dict[str, str | None] = field(default_factory=dict)  # path -> renamed-from
    record: MergedPR | None = None
    shape: Shape | None = None
    change: PrChange | None = None


@dataclass
class Deploy:
    base: str
    head: str
    prs: list[Pr]
    changes: list[PrChange] = field(default_factory=list)


class Stream:
    """One repository and its deploys, built from `rng`."""

    def __init__(self, index: int, rng: random.Random, workdir: Path) -> None:
        self.index = index
        self.rng = rng
        self.path = workdir / f"stream-{index:02d}"
        self.files: dict[str, list[Line]] = {}
        self.next_number = 1
        self.deploys: list[Deploy] = []
        self._marks = 0
        self._out: list[bytes] = []
        self._time = 1_780_000_000 + index * 10_000_000

    # -- the tree ------------------------------------------------------------------------------

    def _content(self, path: str, origin: int, n: int) -> list[Line]:
        stem = path.rsplit("/", 1)[-1].removesuffix(".py")
        return [
            (f"def {stem}_{origin}_{i}(x):  # {self.rng.random():.6f}", origin) for i in range(n)
        ]

    def initial_tree(self) -> None:
        for area in AREAS:
            for i in range(FILES_PER_AREA):
                path = f"svc/src/{area}/{area}_{i:02d}.py"
                self.files[path] = self._content(path, 0, self.rng.randint(40, 120))
        for i in range(LIB_FILES):
            self.files[f"svc/src/lib/lib_{i:02d}.py"] = self._content(f"lib_{i:02d}", 0, 150)
        for i in range(TEST_FILES):
            self.files[f"svc/tests/test_{i:02d}.py"] = self._content(f"t{i}", 0, 60)
        self._commit("main", "Initial service tree", list(self.files), parents=())

    # -- fast-import ---------------------------------------------------------------------------

    def _mark(self) -> int:
        self._marks += 1
        return self._marks

    def _data(self, text: str) -> None:
        raw = text.encode()
        self._out.append(b"data %d\n" % len(raw) + raw + b"\n")

    def _commit(
        self,
        ref: str,
        message: str,
        paths: list[str],
        parents: tuple[int, ...],
        deleted: tuple[str, ...] = (),
    ) -> int:
        mark = self._mark()
        self._time += 60
        who = f"Bench <bench@example.invalid> {self._time} +0000"
        self._out.append(f"commit refs/heads/{ref}\nmark :{mark}\n".encode())
        self._out.append(f"author {who}\ncommitter {who}\n".encode())
        self._data(message)
        if parents:
            self._out.append(f"from :{parents[0]}\n".encode())
        for p in parents[1:]:
            self._out.append(f"merge :{p}\n".encode())
        for path in deleted:
            self._out.append(f"D {path}\n".encode())
        for path in paths:
            self._out.append(f"M 100644 inline {path}\n".encode())
            self._data("\n".join(t for t, _ in self.files[path]) + "\n")
        return mark

    def write(self) -> dict[int, str]:
        """Run `git fast-import` over everything generated; marks to commit shas."""
        self.path.mkdir(parents=True)
        _git(self.path, "init", "-q", "-b", "main")
        marks = self.path / ".git" / "bench-marks"
        _git(
            self.path,
            "fast-import",
            "--quiet",
            f"--export-marks={marks}",
            stdin=b"".join(self._out),
        )
        found = {}
        for line in marks.read_text().splitlines():
            mark, sha = line.split()
            found[int(mark[1:])] = sha
        return found


def _git(path: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(  # noqa: S603 - fixed git arguments
        ["git", *args],  # noqa: S607 - git from PATH, as production's LocalGitForge runs it
        cwd=path,
        input=stdin,
        capture_output=True,
        check=True,
        env=env,
    )
    return done.stdout.decode(errors="replace")


def new_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="rearguard-bench-attribution-")


def patches(path: Path) -> dict[str, list[FileChange]]:
    """Each mainline commit's files against its first parent, read from `git log -p`."""
    out = _git(
        path,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "-p",
        "-M",
        "--no-color",
        "--format=%x00%H",
        "main",
    )
    found = {}
    for record in out.split("\x00")[1:]:
        sha, _, diff = record.partition("\n")
        files = parse_git_diff(diff.strip("\n"))
        found[sha.strip()] = [
            FileChange(
                f.path,
                f.status,
                f.additions,
                f.deletions,
                changed_ranges(f.patch) if f.patch else (),
                f.previous_path,
                changed_edits(f.patch) if f.patch else (),
            )
            for f in files
        ]
    return found


def range_commits(path: Path, base: str, head: str) -> list[RangeCommit]:
    out = _git(
        path, "log", "-z", "--reverse", "--topo-order", "--format=%H%x1f%P%x1f%B", f"{base}..{head}"
    )
    commits = []
    for record in out.split("\0"):
        if record:
            sha, parents, message = record.split("\x1f", 2)
            commits.append(RangeCommit(sha, message.rstrip("\n"), tuple(parents.split())))
    return commits


def resolve(
    stream: Stream,
    marks: dict[int, str],
    pr_marks: dict[int, int],
    deploy_marks: list[tuple[int, int]],
) -> None:
    """Fill in every PR's record and files and every deploy's change set from the real repo."""
    files = patches(stream.path)
    repo = f"{REPO}{stream.index}"
    records = []
    for deploy in stream.deploys:
        for pr in deploy.prs:
            sha = marks[pr_marks[pr.number]]
            pr.shape = shape(pr.number, pr.agent, pr.author, stream.index)
            body = pr.shape.body
            pr.record = MergedPR(
                repo=repo,
                number=pr.number,
                title=f"{pr.area}: change {pr.number}",
                author=pr.shape.author,
                url=f"https://github.com/{repo}/pull/{pr.number}",
                merge_sha=sha,
                head_sha=sha,
                base_ref="main",
                merged_at=float(pr.number),
                body=body,
                identity=identify(
                    pr.shape.author, body, repo=repo, head_ref=pr.shape.branch, rules=RULES
                ),
                head_ref=pr.shape.branch,
                files=tuple(pr.touched),
            )
            pr.change = PrChange(pr.record, tuple(files.get(sha, ())))
            records.append(pr.record)
    for deploy, (base_mark, head_mark) in zip(stream.deploys, deploy_marks, strict=True):
        deploy.base, deploy.head = marks[base_mark], marks[head_mark]
        commits = range_commits(stream.path, deploy.base, deploy.head)
        found = change_set(commits, records)
        by_number = {p.number: p for p in deploy.prs}
        deploy.changes = [by_number[p.number].change for p in found.prs if p.number in by_number]  # type: ignore[misc]
