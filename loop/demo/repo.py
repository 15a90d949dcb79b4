"""The demo's git repository: a small checkout service and the PRs that were merged into it.

`build_demo_repo` writes a real repository (`acme/checkout`) on disk: an initial commit on `main`,
then six PRs, five written by simulated coding-agent sessions and one by a person, merged the way
GitHub merges them (`--no-ff` merge commits, and one squash merge), each agent PR naming its
session in git trailers as DESIGN.md "Identity" describes. One agent PR, the culprit (#103),
removes the retry and the missing-token check from the payment path; it reverts cleanly, while
#104 alone does not (#106 appended next to its lines). `DemoRepo` is the ground truth the demo
and the tests check Rearguard against: the `MergedPR` records, the deploy plan, the culprit.

Each `MergedPR.identity` is the session the PR's trailers were written from, not a parse of them,
so attribution's trailer parser can be tested against it; its `spec` is `owner/repo#N`, also for
the PR that only says `Closes #N`. Every identity and date is fixed, so the shas are the same on
every run and every machine. Git runs synchronously: this happens once, before the demo starts.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from attribution.records import MergedPR
from loop.demo.data import (
    CULPRIT_NUMBER,
    GITHUB_COMMITTER,
    MERGER,
    PR_SPECS,
    REPO,
    Person,
    PRSpec,
)
from loop.demo.files import INITIAL_FILES

DEFAULT_BRANCH = "main"
# Deploy 1 ships #101 and #102, deploy 2 the culprit alone, deploy 3 the rest.
DEPLOY_GROUPS: tuple[tuple[int, ...], ...] = ((101, 102), (103,), (104, 105, 106))
# 2025-03-03T09:00:00Z: the initial commit; each PR lands an hour after the one before.
_EPOCH = 1_740_992_400


@dataclass(frozen=True, slots=True)
class DemoDeploy:
    """One deploy of the demo service: `sha` goes out over `previous_sha`, landing these PRs."""

    sha: str
    previous_sha: str
    pr_numbers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DemoRepo:
    """The built repository and the truth about it: what merged, what deployed, what broke."""

    path: Path
    repo: str
    default_branch: str
    initial_sha: str
    prs: tuple[MergedPR, ...]
    deploys: tuple[DemoDeploy, ...]
    culprit_number: int

    def pr(self, number: int) -> MergedPR:
        """The merged PR with this number."""
        for pr in self.prs:
            if pr.number == number:
                return pr
        raise KeyError(number)

    @property
    def culprit(self) -> MergedPR:
        """The PR that introduced the regression."""
        return self.pr(self.culprit_number)


def build_demo_repo(path: Path) -> DemoRepo:
    """Write the demo repository at `path` (absent or empty) and return the truth about it."""
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"demo repository path {path} is not empty")
    path.mkdir(parents=True, exist_ok=True)
    git = _Git(path)
    git.run("init", "--quiet", f"--initial-branch={DEFAULT_BRANCH}")
    _write(path, INITIAL_FILES)
    git.run("add", "--all")
    initial = git.commit("Initial checkout service", author=MERGER, committer=MERGER, when=_EPOCH)
    prs = tuple(_land(git, spec, _EPOCH + 3600 * (i + 1)) for i, spec in enumerate(PR_SPECS))
    merge_sha = {pr.number: pr.merge_sha for pr in prs}
    deploys, previous = [], initial
    for group in DEPLOY_GROUPS:
        deploys.append(DemoDeploy(merge_sha[group[-1]], previous, group))
        previous = merge_sha[group[-1]]
    return DemoRepo(
        path=path,
        repo=REPO,
        default_branch=DEFAULT_BRANCH,
        initial_sha=initial,
        prs=prs,
        deploys=tuple(deploys),
        culprit_number=CULPRIT_NUMBER,
    )


def _land(git: _Git, spec: PRSpec, when: int) -> MergedPR:
    """Commit the PR's branch off `main` (kept as `refs/pull/N/head`, as on GitHub), then merge
    it: a merge commit by the reviewer, or a squash commit authored by the PR's author."""
    git.run("checkout", "--quiet", "--detach", DEFAULT_BRANCH)
    for index, (message, files) in enumerate(spec.commits):
        _write(git.path, files)
        git.run("add", "--all")
        git.commit(message, author=spec.author, committer=spec.author, when=when + 600 * index)
    head = git.rev("HEAD")
    git.run("update-ref", f"refs/pull/{spec.number}/head", head)
    git.run("checkout", "--quiet", DEFAULT_BRANCH)
    body = _body(spec)
    merged_at = when + 3000
    if spec.squash:
        git.run("merge", "--quiet", "--squash", head)
        message = f"{spec.title} (#{spec.number})\n\n{body}"
        git.commit(message, author=spec.author, committer=GITHUB_COMMITTER, when=merged_at)
    else:
        owner = REPO.partition("/")[0]
        message = f"Merge pull request #{spec.number} from {owner}/{spec.branch}"
        message = f"{message}\n\n{spec.title}\n\n{body}"
        git.run(
            "merge", "--quiet", "--no-ff", "--no-edit", "-m", message, head,
            author=MERGER, committer=GITHUB_COMMITTER, when=merged_at,
        )  # fmt: skip
    merge_sha = git.rev("HEAD")
    changed = git.run("diff", "--name-only", "-z", f"{merge_sha}^1", merge_sha).split("\0")
    return MergedPR(
        repo=REPO,
        number=spec.number,
        title=spec.title,
        author=spec.author.login,
        url=f"https://github.com/{REPO}/pull/{spec.number}",
        merge_sha=merge_sha,
        head_sha=head,
        base_ref=DEFAULT_BRANCH,
        merged_at=float(merged_at),
        body=body,
        identity=spec.identity,
        labels=spec.labels,
        files=tuple(sorted(name for name in changed if name)),
    )


def _body(spec: PRSpec) -> str:
    """The PR description and, for an agent, its session as trailers in the last paragraph."""
    identity = spec.identity
    if not identity.is_agent or identity.spec is None or identity.cost_usd is None:
        return spec.description
    paragraphs = [spec.description]
    trailers = [
        f"Agent-Session: {identity.session}",
        f"Agent-Name: {identity.name}",
        f"Agent-Model: {identity.model}",
        f"Agent-Role: {identity.role}",
    ]
    if spec.closes:
        # Not a trailer line: it would stop git from reading the paragraph as trailers.
        paragraphs.append(f"Closes #{identity.spec.rpartition('#')[2]}")
    else:
        trailers.append(f"Spec: {identity.spec}")
    trailers += [f"Agent-Tokens: {identity.tokens}", f"Agent-Cost-USD: {identity.cost_usd:.2f}"]
    return "\n\n".join([*paragraphs, "\n".join(trailers)])


def _write(root: Path, files: tuple[tuple[str, str], ...]) -> None:
    for name, text in files:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, newline="\n")


class _Git:
    """Synchronous git in the demo repository: no global or system config, and the identities
    and dates given per call (the shas depend on both)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
        self._env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")

    def run(
        self,
        *args: str,
        author: Person = MERGER,
        committer: Person = MERGER,
        when: int = _EPOCH,
    ) -> str:
        """Run git; a failure is a `RuntimeError` with git's stderr (the demo cannot go on)."""
        date = f"{when} +0000"
        env = self._env | {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": date,
        }
        # S603/S607: the program is git from PATH and every argument is built in this module.
        result = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise RuntimeError(f"git {args[0]} failed building the demo: {output}")
        return result.stdout

    def commit(self, message: str, *, author: Person, committer: Person, when: int) -> str:
        """Commit the index with this message, identity and date; return the new sha."""
        self.run(
            "commit", "--quiet", "--cleanup=whitespace", "-m", message,
            author=author, committer=committer, when=when,
        )  # fmt: skip
        return self.rev("HEAD")

    def rev(self, rev: str) -> str:
        return self.run("rev-parse", "--verify", rev).strip()


def merge_branch(path: Path, branch: str, when: float) -> str:
    """Merge `branch` into main as the demo's person would merge a revert PR; the new main sha."""
    git = _Git(path)
    git.run("checkout", "--quiet", "main", when=int(when))
    message = f"Merge branch '{branch}'"
    git.run("merge", "--quiet", "--no-ff", "-m", message, branch, when=int(when))
    return git.rev("main")
