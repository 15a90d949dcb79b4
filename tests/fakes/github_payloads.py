"""JSON bodies `FakeGitHub` answers with, and the webhook payloads it hands to tests.

REST bodies start from a skeleton built from githubkit's own models (every required field, so
githubkit's validation passes as its schema moves: 2026-03-10 added `Label.archived_by`), then lay
the scenario's values over it. Webhook payloads start from GitHub's real samples in the shared
fixtures (`tests.shared_fixtures.load_json`) and lay the pull request's values over them.
"""

from __future__ import annotations

import types
import typing
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal, Union

from githubkit_schemas.latest import models
from pydantic import BaseModel

from tests.shared_fixtures import load_json

Json = dict[str, Any]
MergeMethod = Literal["merge", "squash", "rebase"]

_MAX_DEPTH = 8
_EPOCH = "2026-01-01T00:00:00Z"


@dataclass
class FakePR:
    """One pull request the fake knows: merged by a scenario, or opened through the API."""

    number: int
    node_id: str
    title: str
    body: str
    author: str
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str
    html_url: str
    created_at: str
    state: Literal["open", "closed"] = "open"
    merged: bool = False
    merge_sha: str | None = None
    merged_at: str | None = None
    merge_method: MergeMethod | None = None
    draft: bool = False
    labels: list[str] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    opened_by_api: bool = False
    auto_merge: str | None = None
    assignees: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Site:
    """Where payload URLs point: the fake's API root and the repository's `owner/name`."""

    api: str
    full_name: str

    @property
    def owner(self) -> str:
        """The repository owner's login."""
        return self.full_name.split("/", maxsplit=1)[0]

    @property
    def name(self) -> str:
        """The repository's name without owner."""
        return self.full_name.split("/", maxsplit=1)[1]

    @property
    def repo_api(self) -> str:
        """The repository's REST root."""
        return f"{self.api}/repos/{self.full_name}"


def skeleton(model: type[BaseModel], depth: int = 0) -> Json:
    """Every required field of `model` with a placeholder value, keyed by its JSON name."""
    out: Json = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            out[info.alias or name] = _placeholder(info.annotation, name, depth + 1)
    return out


def _placeholder(annotation: Any, name: str, depth: int) -> Any:  # noqa: PLR0911 (one per type)
    """A value of `annotation`: nested models are filled, optional scalars are None."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return typing.get_args(annotation)[0]
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models_first = sorted(members, key=lambda a: not _is_model(a))
        if not models_first or (not _is_model(models_first[0]) and len(members) < 2):
            return None
        return _placeholder(models_first[0], name, depth)
    if origin is list:
        return []
    if origin is dict or annotation is dict:
        return {}
    if _is_model(annotation):
        return skeleton(annotation, depth) if depth < _MAX_DEPTH else None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(iter(annotation)).value
    scalars: dict[Any, Any] = {bool: False, int: 0, float: 0.0, datetime: _EPOCH, type(None): None}
    if annotation in scalars:
        return scalars[annotation]
    return f"https://github.invalid/{name}" if name.endswith("url") else ""


def _stable_id(text: str) -> int:
    """A numeric id that is the same in every run (`hash` is salted per process)."""
    return zlib.crc32(text.encode()) % 10**7


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def over(base: Json, values: Json) -> Json:
    """`base` with `values` laid over it, nested dicts merged rather than replaced."""
    out = dict(base)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = over(out[key], value)
        else:
            out[key] = value
    return out


def user(login: str, site: Site) -> Json:
    """A `SimpleUser` for `login`."""
    values = {
        "login": login,
        "id": _stable_id(login),
        "node_id": f"U_{login}",
        "url": f"{site.api}/users/{login}",
        "html_url": f"https://github.com/{login}",
        "type": "Bot" if login.endswith("[bot]") else "User",
    }
    return over(skeleton(models.SimpleUser), values)


def label(name: str, site: Site) -> Json:
    """A `Label` as add-labels answers and pull requests embed."""
    values = {
        "id": _stable_id(name),
        "node_id": f"LA_{name}",
        "name": name,
        "url": f"{site.repo_api}/labels/{name}",
        "color": "ededed",
    }
    return over(skeleton(models.Label), values)


def pull_request(pr: FakePR, site: Site, *, simple: bool = False) -> Json:
    """A `PullRequest` (or the `PullRequestSimple` of list answers) for `pr`."""
    repo = over(skeleton(models.Repository), {"full_name": site.full_name, "name": site.name})

    def end(ref: str, sha: str) -> Json:
        label = f"{site.owner}:{ref}"
        return {
            "label": label,
            "ref": ref,
            "sha": sha,
            "repo": repo,
            "user": user(site.owner, site),
        }

    values: Json = {
        "url": f"{site.repo_api}/pulls/{pr.number}",
        "id": 1000 + pr.number,
        "node_id": pr.node_id,
        "html_url": pr.html_url,
        "number": pr.number,
        "state": pr.state,
        "title": pr.title,
        "body": pr.body,
        "user": user(pr.author, site),
        "labels": [label(name, site) for name in pr.labels],
        "created_at": pr.created_at,
        "updated_at": pr.merged_at or pr.created_at,
        "closed_at": pr.merged_at,
        "merged_at": pr.merged_at,
        "draft": pr.draft,
        "head": end(pr.head_ref, pr.head_sha),
        "base": end(pr.base_ref, pr.base_sha),
        "author_association": "MEMBER",
        "assignees": [user(a, site) for a in pr.assignees],
        "requested_reviewers": [user(r, site) for r in pr.reviewers],
    }
    if simple:
        return over(skeleton(models.PullRequestSimple), values)
    full = {"merged": pr.merged, "mergeable_state": "clean", "changed_files": len(pr.files)}
    return over(skeleton(models.PullRequest), values | full)


def diff_entry(
    site: Site, path: str, status: str, counts: tuple[int, int], patch: str | None, *,
    previous: str | None,
) -> Json:  # fmt: skip
    """A `DiffEntry` of a PR's files list: `counts` is (additions, deletions)."""
    values: Json = {
        "sha": f"{_stable_id(path):040x}"[-40:],
        "filename": path,
        "status": status,
        "additions": counts[0],
        "deletions": counts[1],
        "changes": sum(counts),
        "blob_url": f"https://github.com/{site.full_name}/blob/main/{path}",
        "raw_url": f"https://github.com/{site.full_name}/raw/main/{path}",
        "contents_url": f"{site.repo_api}/contents/{path}",
    }
    if patch is not None:
        values["patch"] = patch
    if previous is not None:
        values["previous_filename"] = previous
    return over(skeleton(models.DiffEntry), values)


def repo_commit(site: Site, sha: str, message: str, parents: list[str]) -> Json:
    """A `Commit` as compare and list-commits answer."""
    values = {
        "sha": sha,
        "node_id": f"C_{sha}",
        "url": f"{site.repo_api}/commits/{sha}",
        "html_url": f"https://github.com/{site.full_name}/commit/{sha}",
        "commit": {"message": message, "author": None, "committer": None},
        "author": None,
        "committer": None,
        "parents": [{"sha": p, "url": f"{site.repo_api}/commits/{p}"} for p in parents],
    }
    return over(skeleton(models.Commit), values)


def comparison(
    site: Site, status: str, counts: tuple[int, int], commits: list[Json], *, base: Json,
    merge_base: Json,
) -> Json:  # fmt: skip
    """A `CommitComparison`: `counts` is (ahead_by, behind_by); `commits` is one page."""
    ahead, behind = counts
    values = {
        "url": f"{site.repo_api}/compare",
        "status": status,
        "ahead_by": ahead,
        "behind_by": behind,
        "total_commits": ahead,
        "commits": commits,
        "base_commit": base,
        "merge_base_commit": merge_base,
    }
    return over(skeleton(models.CommitComparison), values)


def git_ref(site: Site, ref: str, sha: str) -> Json:
    """A `GitRef` pointing `ref` (e.g. `refs/heads/main`) at commit `sha`."""
    target = {"type": "commit", "sha": sha, "url": f"{site.repo_api}/git/commits/{sha}"}
    values = {"ref": ref, "node_id": f"REF_{ref}", "url": f"{site.repo_api}/git/{ref}"}
    return over(skeleton(models.GitRef), values | {"object": target})


def git_commit(
    site: Site, sha: str, *, message: str, tree: str, parents: list[str], date: str
) -> Json:
    """A `GitCommit` (Git Data API) for `sha`."""
    person = {"name": "Rearguard Fake", "email": "fake@example.invalid", "date": date}
    unsigned = {"verified": False, "reason": "unsigned", "payload": None, "signature": None}
    links = [{"sha": p, "url": f"{site.repo_api}/git/commits/{p}", "html_url": ""} for p in parents]
    values = {
        "sha": sha,
        "node_id": f"C_{sha}",
        "url": f"{site.repo_api}/git/commits/{sha}",
        "message": message,
        "author": person,
        "committer": person,
        "tree": {"sha": tree, "url": f"{site.repo_api}/git/trees/{tree}"},
        "parents": links,
        "verification": unsigned,
    }
    return over(skeleton(models.GitCommit), values)


def git_tree(site: Site, sha: str, entries: list[Json]) -> Json:
    """A `GitTree`; `entries` carry path, mode, type and sha."""
    values = {"sha": sha, "url": f"{site.repo_api}/git/trees/{sha}", "tree": entries}
    return over(skeleton(models.GitTree), values)


def error(message: str, status: int) -> Json:
    """GitHub's error body."""
    return {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(status),
    }


def pull_request_closed_webhook(pr: FakePR, site: Site) -> Json:
    """The `pull_request` closed+merged delivery for `pr`, over GitHub's real sample."""
    sample = load_json("github-webhooks/pull_request/closed.payload.json")
    values = {
        "merged": pr.merged,
        "merged_at": pr.merged_at,
        "closed_at": pr.merged_at,
        "merge_commit_sha": pr.merge_sha,
        "number": pr.number,
        "node_id": pr.node_id,
        "title": pr.title,
        "body": pr.body,
        "html_url": pr.html_url,
        "state": "closed",
        "labels": [label(name, site) for name in pr.labels],
        "user": {"login": pr.author},
        "head": {"sha": pr.head_sha, "ref": pr.head_ref},
        "base": {"ref": pr.base_ref, "sha": pr.base_sha, "repo": {"full_name": site.full_name}},
    }
    repository = {"full_name": site.full_name, "name": site.name, "owner": {"login": site.owner}}
    top = {"action": "closed", "number": pr.number, "pull_request": values}
    return over(sample, top | {"repository": repository})


def deployment_status_webhook(sha: str, site: Site, environment: str, state: str) -> Json:
    """A `deployment_status` delivery for `sha`, over GitHub's real sample."""
    sample = load_json("github-webhooks/deployment_status/payload.json")
    deployment = {"sha": sha, "environment": environment, "original_environment": environment}
    values = {
        "deployment_status": {"state": state, "environment": environment},
        "deployment": deployment,
        "repository": {"full_name": site.full_name, "name": site.name},
    }
    return over(sample, values)
