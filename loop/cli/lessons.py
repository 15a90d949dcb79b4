"""`rearguard lessons --repo OWNER/NAME`: derive a repository's lessons from the store and
propose them now (the PR opened, or the open one updated), whatever the day's automatic run did.

With `--config` it opens the store file itself, as `rearguard backtest --store` does: DuckDB lets
no other process open a file a writer holds, so while `rearguard serve` runs on the same store it
says so, changes nothing, and names `--url`: the running server then proposes them
(`POST /v1/lessons`, the API token from `REARGUARD_API_TOKEN`).
"""

from __future__ import annotations

import json
import sys
import time

from attribution.store import Store, StoreError
from loop.cli import remote
from loop.config import Settings, is_repo_name
from loop.watch.deps import build_fixer
from loop.watch.learn import propose_lessons
from rollback.anthropic_fixer import AnthropicFixer
from rollback.github import GitHubForge
from rollback.lessons_model import LessonWriter, ModelWriter, TemplateWriter


async def run_lessons(settings: Settings, repo: str, *, as_json: bool = False) -> int:
    """0 when proposed (or nothing needed proposing), 1 when the forge failed, 2 on bad input."""
    if not is_repo_name(repo) or settings.service_for_repo(repo) is None:
        known = ", ".join(sorted({s.repo for s in settings.services.values()}))
        sys.stderr.write(f"rearguard: no service of repository {repo!r} in the config "
                         f"(known: {known})\n")  # fmt: skip
        return 2
    if not settings.lessons.enabled:
        sys.stderr.write("rearguard: [lessons] enabled = false in the config\n")
        return 2
    if settings.github_token is None:
        sys.stderr.write("rearguard: GITHUB_TOKEN is not set: lessons are proposed as a PR\n")
        return 2
    try:
        store = await Store.open(settings.store_path)
    except StoreError as exc:
        sys.stderr.write(f"rearguard: {exc} (is `rearguard serve` running on it? Then ask it: "
                         "`rearguard lessons --repo ... --url http://HOST:PORT`)\n")  # fmt: skip
        return 2
    fixer = build_fixer(settings)
    writer: LessonWriter = ModelWriter(fixer) if isinstance(fixer, AnthropicFixer) else (
        TemplateWriter()
    )  # fmt: skip
    try:
        async with GitHubForge(settings.github_api_url, settings.github_token.reveal()) as forge:
            done = await propose_lessons(settings, store, forge, forge, writer, repo=repo,
                                         now=time.time())  # fmt: skip
    finally:
        if isinstance(fixer, AnthropicFixer):
            await fixer.aclose()
        await store.close()
    if as_json:
        print(json.dumps(done.to_json()))
    else:
        print(f"{repo}: {done.note}")
    return 1 if done.state == "failed" else 0


def run_remote_lessons(url: str, token: str | None, repo: str, *, as_json: bool = False) -> int:
    """`POST /v1/lessons` on a running server: 0 when proposed (or nothing needed proposing), 1
    when the server or the forge failed."""
    try:
        answer = remote.post_json(url, token, "/v1/lessons", {"repo": repo})
    except remote.RemoteError as exc:
        sys.stderr.write(f"rearguard: {exc}\n")
        return 1
    print(json.dumps(answer) if as_json else f"{repo}: {answer['note']}")
    return 1 if answer["state"] == "failed" else 0
