"""GitRepo: a real git repository on disk with a fake clock, the ground `FakeGitHub` stands on.

Every commit is a real git object, dated by a clock that moves a minute per `tick` (so commits
rewritten the same way still get new shas, as on GitHub), under a fixed author and committer and
no user or system git config. The repository starts with one commit on `main`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

_START = datetime(2026, 1, 1, tzinfo=UTC)


class GitFailed(Exception):
    """A git command failed; the message carries its stderr."""


class GitRepo:
    """The git repository in `workdir`: run git, read refs and files, push commits."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._ticks = 0
        self._init_repo()

    def git(
        self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """Run git in the repository; raise `GitFailed` with stderr when it fails."""
        stamp = f"@{int((_START + timedelta(minutes=self._ticks)).timestamp())} +0000"
        full_env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Fake Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.invalid",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.invalid",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
            **(env or {}),
        }
        # Bytes, decoded here: text mode would turn a blob's CRLF into LF, and GitHub does not.
        done = subprocess.run(
            ["git", *args], cwd=self.workdir, input=stdin.encode() if stdin is not None else None,
            capture_output=True, env=full_env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise GitFailed(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode()

    def tick(self) -> str:
        """Advance the fake clock a minute (so rewritten commits get new shas); ISO time."""
        self._ticks += 1
        return (_START + timedelta(minutes=self._ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def resolve(self, rev: str) -> str | None:
        """The commit sha `rev` names, or None."""
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except GitFailed:
            return None

    def _init_repo(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self._write({"README.md": "# app\n"})
        self.git("commit", "-q", "-m", "Initial commit")

    def _write(self, files: Mapping[str, str | None]) -> None:
        for path, content in files.items():
            if content is None:
                self.git("rm", "-q", "--", path)
            else:
                target = self.workdir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode())
                self.git("add", "--", path)

    def commit(self, files: Mapping[str, str | None], message: str, branch: str = "main") -> str:
        """Push one commit straight to `branch` (None deletes a file); returns its sha."""
        self.tick()
        self.git("checkout", "-q", branch)
        try:
            self._write(files)
            self.git("commit", "-q", "-m", message)
        finally:
            self.git("checkout", "-q", "main")
        return self.head_sha(branch)

    def head_sha(self, branch: str = "main") -> str:
        """The commit `branch` points at."""
        sha = self.resolve(f"refs/heads/{branch}")
        if sha is None:
            raise KeyError(f"no branch {branch!r}")
        return sha

    def read_file(self, path: str, ref: str = "main") -> str | None:
        """`path`'s content at `ref`, or None when it does not exist there."""
        try:
            return self.git("show", f"{ref}:{path}")
        except GitFailed:
            return None
