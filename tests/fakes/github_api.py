"""GitHubApi: the REST and GraphQL routes `FakeGitHub` answers, over its repository and PRs.

The paths githubkit calls for `rollback.github.GitHubForge`: compare, commits, pulls, issue
labels, Git Data refs/commits/trees, and GraphQL `revertPullRequest`. Each handler reads or
changes the fake's git repository and PR list, and answers with `tests.fakes.github_payloads`
bodies; a handler refuses by raising `ApiError`, which `FakeGitHub`'s middleware turns into
GitHub's error body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from githubkit_schemas.latest.models import FullRepository

from tests.fakes import github_payloads as payloads
from tests.fakes.git_repo import GitFailed
from tests.fakes.github_changes_api import GitHubChangesApi
from tests.fakes.github_payloads import FakePR, Json

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub


class ApiError(Exception):
    """An error answer: the middleware turns it into GitHub's error body with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GitHubApi:
    """The routes of one `FakeGitHub`; `refusal`, when set, fails every `revertPullRequest`."""

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = fake
        self.refusal: str | None = None
        self.changes = GitHubChangesApi(fake)

    def register(self, app: web.Application) -> None:
        """Add every route to `app`."""
        repo, add = "/repos/{owner}/{repo}", app.router.add_route
        add("GET", repo, self._get_repo)
        add("GET", f"{repo}/compare/{{basehead}}", self._compare)
        add("GET", f"{repo}/commits", self._list_commits)
        add("GET", f"{repo}/pulls", self._list_pulls)
        add("POST", f"{repo}/pulls", self._create_pull)
        add("GET", f"{repo}/pulls/{{number:\\d+}}", self._get_pull)
        add("GET", f"{repo}/pulls/{{number:\\d+}}/files", self._pull_files)
        add("GET", f"{repo}/commits/{{sha}}/pulls", self._commit_pulls)
        # A ref may hold slashes (a branch), but not the check-run and status routes beneath it.
        add("GET", f"{repo}/commits/{{ref:(?!.*/(?:check-runs|status|statuses)$).+}}",
            self._get_repo_commit)  # fmt: skip
        add("POST", f"{repo}/issues/{{number:\\d+}}/labels", self._add_labels)
        add("GET", f"{repo}/git/ref/{{ref:.+}}", self._get_ref)
        add("POST", f"{repo}/git/refs", self._create_ref)
        add("PATCH", f"{repo}/git/refs/{{ref:.+}}", self._update_ref)
        add("GET", f"{repo}/git/commits/{{sha}}", self._get_commit)
        add("POST", f"{repo}/git/commits", self._create_commit)
        add("GET", f"{repo}/git/trees/{{sha}}", self._get_tree)
        add("POST", f"{repo}/git/trees", self._create_tree)
        add("POST", "/graphql", self._graphql)
        self.changes.register(app)

    def _log(self, *args: str) -> list[Json]:
        """`git log` records as `Commit` payloads."""
        fake = self._fake
        out = fake.git("log", "--format=%H%x00%P%x00%B%x1e", *args)
        commits = []
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            sha, parents, message = record.lstrip("\n").split("\x00", 2)
            commits.append(
                payloads.repo_commit(fake.site, sha, message.rstrip("\n"), parents.split())
            )
        return commits

    async def _get_repo(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}`: a `FullRepository` whose `permissions` are the token's
        (`fake.permissions`), with `X-OAuth-Scopes` when the fake plays a classic token."""
        fake = self._fake
        owner, name = fake.full_name.split("/", 1)
        body = payloads.over(
            payloads.skeleton(FullRepository),
            {"full_name": fake.full_name, "name": name, "owner": payloads.user(owner, fake.site),
             "private": True, "default_branch": "main", "permissions": dict(fake.permissions)},
        )  # fmt: skip
        headers = {} if fake.oauth_scopes is None else {"X-OAuth-Scopes": fake.oauth_scopes}
        return web.json_response(body, headers=headers)

    async def _compare(self, request: web.Request) -> web.Response:
        fake = self._fake
        base_ref, sep, head_ref = request.match_info["basehead"].partition("...")
        base, head = fake.resolve(base_ref), fake.resolve(head_ref)
        if not sep or base is None or head is None:
            raise ApiError(404, "Not Found")
        commits = self._log("--reverse", "--date-order", f"{base}..{head}")
        behind = int(fake.git("rev-list", "--count", f"{head}..{base}"))
        if {"page", "per_page"} & set(request.query):
            shown = _page(commits, request.query)
        else:
            shown = commits[-250:]
        statuses = {(True, True): "identical", (False, True): "ahead", (True, False): "behind"}
        status = statuses.get((not commits, behind == 0), "diverged")
        merge_base = fake.git("merge-base", base, head).strip()
        body = payloads.comparison(
            fake.site, status, (len(commits), behind), shown,
            base=self._log("-1", base)[0], merge_base=self._log("-1", merge_base)[0],
        )  # fmt: skip
        return web.json_response(body)

    async def _list_commits(self, request: web.Request) -> web.Response:
        start = self._fake.resolve(request.query.get("sha", "main"))
        if start is None:
            raise ApiError(404, "Not Found")
        path = request.query.get("path")
        records = self._log(start, *(["--", path] if path else []))
        return web.json_response(_page(records, request.query))

    async def _list_pulls(self, request: web.Request) -> web.Response:
        fake = self._fake
        q = request.query
        state, head, base = q.get("state", "open"), q.get("head"), q.get("base")
        chosen = [
            pr for pr in fake.pulls
            if state in ("all", pr.state)
            and head in (None, f"{fake.owner}:{pr.head_ref}")
            and base in (None, pr.base_ref)
        ]  # fmt: skip
        if q.get("direction", "desc") == "desc":
            chosen.reverse()
        shown = _page(chosen, q)
        return web.json_response(
            [payloads.pull_request(pr, fake.site, simple=True) for pr in shown]
        )

    async def _create_pull(self, request: web.Request) -> web.Response:
        fake = self._fake
        data = await request.json()
        head, base = str(data["head"]).split(":")[-1], str(data["base"])
        head_sha = fake.resolve(f"refs/heads/{head}")
        if head_sha is None or fake.resolve(f"refs/heads/{base}") is None:
            raise ApiError(422, "Validation Failed: head or base is not a branch")
        if any(p.state == "open" and (p.head_ref, p.base_ref) == (head, base) for p in fake.pulls):
            raise ApiError(422, f"A pull request already exists for {fake.owner}:{head}.")
        if fake.git("rev-list", "--count", f"{base}..{head_sha}").strip() == "0":
            raise ApiError(422, f"No commits between {base} and {head}")
        pr = fake.new_pr(
            fake.next_number(), str(data.get("title", head)), str(data.get("body") or ""),
            author="rearguard-bot", head_ref=head, head_sha=head_sha,
        )  # fmt: skip
        pr.base_ref, pr.draft, pr.opened_by_api = base, bool(data.get("draft", False)), True
        return web.json_response(payloads.pull_request(pr, fake.site), status=201)

    def _pull_or_404(self, request: web.Request) -> FakePR:
        number = int(request.match_info["number"])
        found = [pr for pr in self._fake.pulls if pr.number == number]
        if not found:
            raise ApiError(404, "Not Found")
        return found[0]

    async def _get_pull(self, request: web.Request) -> web.Response:
        return web.json_response(payloads.pull_request(self._pull_or_404(request), self._fake.site))

    async def _pull_files(self, request: web.Request) -> web.Response:
        """`DiffEntry`s of the PR: its merge commit against the first parent once merged."""
        fake, pr = self._fake, self._pull_or_404(request)
        old, new = (
            (f"{pr.merge_sha}^1", pr.merge_sha) if pr.merge_sha else (pr.base_sha, pr.head_sha)
        )
        entries = []
        for line in fake.git("diff", "--name-status", "-M", old, new).splitlines():
            code, *paths = line.split("\t")
            path, previous = paths[-1], (paths[0] if code.startswith("R") else None)
            text = fake.git("diff", "-M", old, new, "--", *([previous] if previous else []), path)
            patch = text[text.index("@@") :] if "@@" in text else None
            body = (patch or "").splitlines()
            adds = sum(ln.startswith("+") for ln in body)
            dels = sum(ln.startswith("-") for ln in body)
            status = {"A": "added", "D": "removed", "R": "renamed"}.get(code[0], "modified")
            entries.append(
                payloads.diff_entry(fake.site, path, status, (adds, dels), patch, previous=previous)
            )
        return web.json_response(_page(entries, request.query))

    async def _get_repo_commit(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/commits/{ref}`: a sha, a sha prefix, a branch or
        `refs/tags/NAME`; GitHub answers 422 "No commit found for SHA" for one it cannot name
        (also an ambiguous prefix)."""
        ref = request.match_info["ref"]
        sha = None if ref.startswith("-") else self._fake.resolve(ref)
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return web.json_response(self._log("-1", sha)[0])

    async def _commit_pulls(self, request: web.Request) -> web.Response:
        """The PRs whose merge commit (or head) is the commit, as `PullRequestSimple`s."""
        fake = self._fake
        sha = fake.resolve(request.match_info["sha"])
        if sha is None:
            raise ApiError(422, "No commit found for SHA")
        found = [pr for pr in fake.pulls if sha in (pr.merge_sha, pr.head_sha)]
        return web.json_response(
            [payloads.pull_request(pr, fake.site, simple=True) for pr in found]
        )

    async def _add_labels(self, request: web.Request) -> web.Response:
        pr = self._pull_or_404(request)
        data = await request.json()
        items = data.get("labels", []) if isinstance(data, dict) else data
        for item in items:
            name = item if isinstance(item, str) else str(item["name"])
            if name not in pr.labels:
                pr.labels.append(name)
        return web.json_response([payloads.label(name, self._fake.site) for name in pr.labels])

    async def _get_ref(self, request: web.Request) -> web.Response:
        fake = self._fake
        ref = f"refs/{request.match_info['ref']}"
        sha = fake.resolve(ref)
        if sha is None:
            raise ApiError(404, "Not Found")
        return web.json_response(payloads.git_ref(fake.site, ref, sha))

    async def _create_ref(self, request: web.Request) -> web.Response:
        fake = self._fake
        data = await request.json()
        ref, sha = str(data["ref"]), str(data["sha"])
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have two slashes")
        if fake.resolve(ref) is not None:
            raise ApiError(422, "Reference already exists")
        if fake.resolve(sha) != sha:
            raise ApiError(422, "Object does not exist")
        fake.git("update-ref", ref, sha)
        self._follow(ref, sha)
        return web.json_response(payloads.git_ref(fake.site, ref, sha), status=201)

    async def _update_ref(self, request: web.Request) -> web.Response:
        fake = self._fake
        ref = f"refs/{request.match_info['ref']}"
        data = await request.json()
        sha, current = str(data["sha"]), fake.resolve(ref)
        if current is None:
            raise ApiError(422, "Reference does not exist")
        if fake.resolve(sha) != sha:
            raise ApiError(422, "Object does not exist")
        if not data.get("force") and fake.git("merge-base", current, sha).strip() != current:
            raise ApiError(422, "Update is not a fast forward")
        fake.git("update-ref", ref, sha)
        self._follow(ref, sha)
        return web.json_response(payloads.git_ref(fake.site, ref, sha))

    def _follow(self, ref: str, sha: str) -> None:
        """An open PR's head is its branch: a push to the branch moves the PR's head."""
        for pr in self._fake.pulls:
            if pr.state == "open" and f"refs/heads/{pr.head_ref}" == ref:
                pr.head_sha = sha

    async def _get_commit(self, request: web.Request) -> web.Response:
        return web.json_response(self._git_commit(request.match_info["sha"]))

    def _git_commit(self, sha: str) -> Json:
        fake = self._fake
        if fake.resolve(sha) != sha:
            raise ApiError(404, "Not Found")
        tree, parents, date, message = fake.git(
            "show", "-s", "--format=%T%x00%P%x00%cI%x00%B", sha
        ).split("\x00", 3)
        return payloads.git_commit(
            fake.site, sha, message=message.rstrip("\n"), tree=tree, parents=parents.split(),
            date=date,
        )  # fmt: skip

    async def _create_commit(self, request: web.Request) -> web.Response:
        fake = self._fake
        data = await request.json()
        tree, parents = str(data["tree"]), [str(p) for p in data.get("parents", [])]
        if self._tree_sha(tree) != tree or any(fake.resolve(p) != p for p in parents):
            raise ApiError(422, "Tree or parent SHA does not exist")
        fake.tick()
        args = [arg for parent in parents for arg in ("-p", parent)]
        sha = fake.git("commit-tree", tree, *args, "-F", "-", stdin=str(data["message"])).strip()
        return web.json_response(self._git_commit(sha), status=201)

    def _tree_sha(self, rev: str) -> str | None:
        try:
            return self._fake.git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}").strip()
        except GitFailed:
            return None

    def _tree_json(self, tree: str, *, recursive: bool) -> Json:
        fake = self._fake
        listing = fake.git("ls-tree", *(["-r", "-t"] if recursive else []), tree)
        entries = []
        for line in listing.splitlines():
            meta, path = line.split("\t", 1)
            mode, kind, sha = meta.split()
            entries.append({"path": path, "mode": mode, "type": kind, "sha": sha})
        return payloads.git_tree(fake.site, tree, entries)

    async def _get_tree(self, request: web.Request) -> web.Response:
        tree = self._tree_sha(request.match_info["sha"])
        if tree is None:
            raise ApiError(404, "Not Found")
        recursive = request.query.get("recursive", "") not in ("", "0", "false")
        return web.json_response(self._tree_json(tree, recursive=recursive))

    async def _create_tree(self, request: web.Request) -> web.Response:
        fake = self._fake
        data = await request.json()
        index = {"GIT_INDEX_FILE": str(fake.workdir / ".git" / "fake-api-index")}
        base = data.get("base_tree")
        fake.git("read-tree", *([str(base)] if base else ["--empty"]), env=index)
        for entry in data["tree"]:
            path, sha = str(entry["path"]), entry.get("sha")
            if entry.get("content") is not None:
                sha = fake.git("hash-object", "-w", "--stdin", stdin=str(entry["content"])).strip()
            if sha is None:
                if not fake.git("ls-files", "--", path, env=index).strip():
                    raise ApiError(422, f"GitRPC::BadObjectState: {path} is not in the base tree")
                fake.git("update-index", "--force-remove", "--", path, env=index)
            else:
                cacheinfo = f"{entry['mode']},{sha},{path}"
                fake.git("update-index", "--add", "--cacheinfo", cacheinfo, env=index)
        tree = fake.git("write-tree", env=index).strip()
        return web.json_response(self._tree_json(tree, recursive=False), status=201)

    async def _graphql(self, request: web.Request) -> web.Response:
        fake = self._fake
        data = await request.json()
        arguments = (data.get("variables") or {}).get("input") or {}
        if "enablePullRequestAutoMerge" in str(data.get("query", "")):
            return self.changes.enable_auto_merge(str(arguments.get("pullRequestId")))
        if "revertPullRequest" not in str(data.get("query", "")):
            return graphql_error("UNPROCESSABLE", "the fake speaks only revertPullRequest")
        found = [pr for pr in fake.pulls if pr.node_id == arguments.get("pullRequestId")]
        if not found:
            return graphql_error("NOT_FOUND", "Could not resolve to a node with the global id")
        original = found[0]
        if self.refusal is not None or not original.merged or not original.merge_sha:
            return graphql_error("UNPROCESSABLE", self.refusal or "PR is not merged")
        branch = f"revert-{original.number}-{original.head_ref}"
        try:
            head_sha = self._revert_on_branch(original.merge_sha, branch)
        except GitFailed:
            return graphql_error(
                "UNPROCESSABLE", "This pull request can't be reverted automatically"
            )
        revert = fake.new_pr(
            fake.next_number(), str(arguments.get("title") or f'Revert "{original.title}"'),
            str(arguments.get("body") or f"Reverts {fake.full_name}#{original.number}"),
            author="rearguard-bot", head_ref=branch, head_sha=head_sha,
        )  # fmt: skip
        revert.draft, revert.opened_by_api = bool(arguments.get("draft", False)), True
        payload = {"pullRequest": _graphql_pr(original), "revertPullRequest": _graphql_pr(revert)}
        return web.json_response({"data": {"revertPullRequest": payload}})

    def _revert_on_branch(self, merge_sha: str, branch: str) -> str:
        """Revert `merge_sha` (its first parent as mainline) on a new `branch` off main."""
        fake = self._fake
        mainline = (
            ["-m", "1"] if len(fake.git("show", "-s", "--format=%P", merge_sha).split()) > 1 else []
        )
        fake.tick()
        fake.git("checkout", "-q", "-b", branch, "main")
        try:
            fake.git("revert", "--no-edit", *mainline, merge_sha)
        except GitFailed:
            with contextlib.suppress(GitFailed):
                fake.git("revert", "--abort")
            fake.git("checkout", "-q", "main")
            fake.git("branch", "-q", "-D", branch)
            raise
        fake.git("checkout", "-q", "main")
        return fake.head_sha(branch)


def _page(items: list[Any], query: Mapping[str, str]) -> list[Any]:
    """One page of `items` per GitHub's `page`/`per_page` (default 30, at most 100)."""
    per_page = min(int(query.get("per_page", "30")), 100)
    page = max(int(query.get("page", "1")), 1)
    return items[(page - 1) * per_page : page * per_page]


def _graphql_pr(pr: FakePR) -> Json:
    """The fields of a GraphQL `PullRequest` the forge selects."""
    return {"id": pr.node_id, "number": pr.number, "url": pr.html_url, "title": pr.title,
            "headRefName": pr.head_ref, "headRefOid": pr.head_sha}  # fmt: skip


def graphql_error(kind: str, message: str) -> web.Response:
    """GitHub's GraphQL failure: HTTP 200 with `errors` and a null field."""
    error = {"type": kind, "path": ["revertPullRequest"], "message": message,
             "locations": [{"line": 2, "column": 3}]}  # fmt: skip
    return web.json_response({"data": {"revertPullRequest": None}, "errors": [error]})
