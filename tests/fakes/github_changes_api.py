"""The routes `FakeGitHub` answers for fixes, issues, merges and closes (beside `GitHubApi`).

Git Data blobs (read and write), issues (create, list, assignees, comments), requested
reviewers, closing a PR (`PATCH /pulls/{n}`), the REST merge (`PUT /pulls/{n}/merge`) and GraphQL
`enablePullRequestAutoMerge`, which answers as GitHub does: auto-merge enabled, "Pull request is
in clean status" when nothing is pending (`fake.checks_pending = False`), or "Auto merge is not
allowed for this repository" (`fake.auto_merge_allowed = False`).

As on GitHub, the issues list holds pull requests too, each with a `pull_request` object, while a
plain issue has no `pull_request` key at all; and a bot account (a `…[bot]` login, as coding
agents open PRs) can be neither an assignee nor a requested reviewer: 422.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from githubkit_schemas.latest import models

from tests.fakes import github_payloads as payloads
from tests.fakes.github_payloads import Json

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub


@dataclass
class FakeIssue:
    """An issue opened through the API."""

    number: int
    title: str
    body: str
    labels: list[str]
    assignees: list[str]
    html_url: str
    created_at: str
    state: str = "open"
    comments: list[str] = field(default_factory=list)


def is_bot(login: str) -> bool:
    """A GitHub App's bot account, which GitHub refuses as assignee or reviewer."""
    return login.endswith("[bot]")


def validation_failed(field: str, logins: list[str]) -> web.Response:
    """GitHub's 422 for assignees it cannot take."""
    errors = [{"value": login, "resource": "Issue", "field": field, "code": "invalid"}
              for login in logins]  # fmt: skip
    body = payloads.error("Validation Failed", 422) | {"errors": errors}
    return web.json_response(body, status=422)


def pull_as_issue(pr: payloads.FakePR, site: payloads.Site) -> Json:
    """A pull request as the issues API lists it: an `Issue` with a `pull_request` object."""
    values = {
        "id": 1000 + pr.number, "node_id": pr.node_id, "url": f"{site.repo_api}/issues/{pr.number}",
        "repository_url": site.repo_api, "html_url": pr.html_url, "number": pr.number,
        "state": pr.state, "title": pr.title, "body": pr.body,
        "user": payloads.user(pr.author, site),
        "labels": [payloads.label(n, site) for n in pr.labels],
        "assignees": [payloads.user(a, site) for a in pr.assignees],
        "comments": len(pr.comments), "created_at": pr.created_at,
        "updated_at": pr.merged_at or pr.created_at, "closed_at": pr.merged_at, "locked": False,
        "milestone": None, "draft": pr.draft,
        "pull_request": {
            "url": f"{site.repo_api}/pulls/{pr.number}", "html_url": pr.html_url,
            "diff_url": f"{pr.html_url}.diff", "patch_url": f"{pr.html_url}.patch",
            "merged_at": pr.merged_at,
        },
    }  # fmt: skip
    return payloads.over(payloads.skeleton(models.Issue), values)


def issue_payload(issue: FakeIssue, site: payloads.Site) -> Json:
    """An `Issue` body for `issue` (no `pull_request` key: it is a plain issue)."""
    values = {
        "id": 5000 + issue.number, "node_id": f"I_fake{issue.number:04d}",
        "url": f"{site.repo_api}/issues/{issue.number}", "repository_url": site.repo_api,
        "html_url": issue.html_url, "number": issue.number, "state": issue.state,
        "title": issue.title, "body": issue.body, "user": payloads.user("rearguard-bot", site),
        "labels": [payloads.label(n, site) for n in issue.labels],
        "assignees": [payloads.user(a, site) for a in issue.assignees],
        "comments": len(issue.comments), "created_at": issue.created_at,
        "updated_at": issue.created_at, "closed_at": None, "locked": False, "milestone": None,
    }  # fmt: skip
    return payloads.over(payloads.skeleton(models.Issue), values)


class GitHubChangesApi:
    """The routes of one `FakeGitHub` for fixes, issues, merges and closes."""

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = fake

    def register(self, app: web.Application) -> None:
        repo, add = "/repos/{owner}/{repo}", app.router.add_route
        add("GET", f"{repo}/git/blobs/{{sha}}", self._get_blob)
        add("POST", f"{repo}/git/blobs", self._create_blob)
        add("GET", f"{repo}/issues", self._list_issues)
        add("POST", f"{repo}/issues", self._create_issue)
        add("POST", f"{repo}/issues/{{number:\\d+}}/assignees", self._assign)
        add("POST", f"{repo}/issues/{{number:\\d+}}/comments", self._comment)
        add("GET", f"{repo}/issues/{{number:\\d+}}/comments", self._list_comments)
        add("POST", f"{repo}/pulls/{{number:\\d+}}/requested_reviewers", self._request_reviewers)
        add("PATCH", f"{repo}/pulls/{{number:\\d+}}", self._update_pull)
        add("PUT", f"{repo}/pulls/{{number:\\d+}}/merge", self._merge)

    async def _get_blob(self, request: web.Request) -> web.Response:
        from tests.fakes.github import ApiError  # noqa: PLC0415 - github imports this module

        fake, sha = self._fake, request.match_info["sha"]
        try:
            content = fake.git("cat-file", "blob", sha)
        except Exception as exc:
            raise ApiError(404, "Not Found") from exc
        values = {"content": base64.b64encode(content.encode()).decode(), "encoding": "base64",
                  "url": f"{fake.site.repo_api}/git/blobs/{sha}", "sha": sha,
                  "size": len(content.encode()), "node_id": f"B_{sha}"}  # fmt: skip
        return web.json_response(values)

    async def _create_blob(self, request: web.Request) -> web.Response:
        fake, data = self._fake, await request.json()
        content = str(data["content"])
        if data.get("encoding") == "base64":
            content = base64.b64decode(content).decode()
        sha = fake.git("hash-object", "-w", "--stdin", stdin=content).strip()
        return web.json_response(
            {"url": f"{fake.site.repo_api}/git/blobs/{sha}", "sha": sha}, status=201
        )

    async def _list_issues(self, request: web.Request) -> web.Response:
        fake, q = self._fake, request.query
        wanted, state = set(filter(None, q.get("labels", "").split(","))), q.get("state", "open")
        listed = [(i.number, issue_payload(i, fake.site)) for i in fake.issues
                  if state in ("all", i.state) and wanted <= set(i.labels)]  # fmt: skip
        listed += [(p.number, pull_as_issue(p, fake.site)) for p in fake.pulls
                   if state in ("all", p.state) and wanted <= set(p.labels)]  # fmt: skip
        chosen = [body for _, body in sorted(listed, key=lambda x: x[0], reverse=True)]
        per_page, page = min(int(q.get("per_page", "30")), 100), max(int(q.get("page", "1")), 1)
        return web.json_response(chosen[(page - 1) * per_page : page * per_page])

    async def _create_issue(self, request: web.Request) -> web.Response:
        fake, data = self._fake, await request.json()
        bots = [str(x) for x in data.get("assignees", []) if is_bot(str(x))]
        if bots:
            return validation_failed("assignees", bots)
        number = fake.next_number()
        issue = FakeIssue(
            number=number, title=str(data["title"]), body=str(data.get("body") or ""),
            labels=[str(x) for x in data.get("labels", [])],
            assignees=[str(x) for x in data.get("assignees", [])],
            html_url=f"https://github.com/{fake.full_name}/issues/{number}",
            created_at=fake.tick(),
        )  # fmt: skip
        fake.issues.append(issue)
        return web.json_response(issue_payload(issue, fake.site), status=201)

    async def _assign(self, request: web.Request) -> web.Response:
        fake, data = self._fake, await request.json()
        logins = [str(a) for a in data.get("assignees", [])]
        if bots := [a for a in logins if is_bot(a)]:
            return validation_failed("assignees", bots)
        pr = fake.pull(int(request.match_info["number"]))
        pr.assignees.extend(a for a in logins if a not in pr.assignees)
        return web.json_response(payloads.pull_request(pr, fake.site), status=201)

    async def _request_reviewers(self, request: web.Request) -> web.Response:
        fake, data = self._fake, await request.json()
        logins = [str(a) for a in data.get("reviewers", [])]
        if any(is_bot(a) for a in logins):
            message = (
                "Reviews may only be requested from collaborators. One or more of the users or "
                f"teams you specified is not a collaborator of the {fake.full_name} repository."
            )
            return web.json_response(payloads.error(message, 422), status=422)
        pr = fake.pull(int(request.match_info["number"]))
        pr.reviewers.extend(a for a in logins if a not in pr.reviewers)
        return web.json_response(payloads.pull_request(pr, fake.site), status=201)

    def _thread(self, request: web.Request) -> list[str]:
        """The comments of the issue or PR in the path (GitHub numbers both alike); 404 if none."""
        from tests.fakes.github import ApiError  # noqa: PLC0415 - github imports this module

        fake, number = self._fake, int(request.match_info["number"])
        threads = [p.comments for p in fake.pulls if p.number == number]
        threads += [i.comments for i in fake.issues if i.number == number]
        if not threads:
            raise ApiError(404, "Not Found")
        return threads[0]

    def _comment_payload(self, request: web.Request, index: int, body: str) -> Json:
        fake, number = self._fake, int(request.match_info["number"])
        comment_id = 9000 + number * 100 + index
        values = {"id": comment_id, "node_id": f"IC_fake{comment_id}", "body": body,
                  "url": f"{fake.site.repo_api}/issues/comments/{comment_id}",
                  "html_url": f"https://github.com/{fake.full_name}/issues/{number}"
                              f"#issuecomment-{comment_id}",
                  "issue_url": f"{fake.site.repo_api}/issues/{number}",
                  "user": payloads.user("rearguard-bot", fake.site)}  # fmt: skip
        return payloads.over(payloads.skeleton(models.IssueComment), values)

    async def _comment(self, request: web.Request) -> web.Response:
        thread, data = self._thread(request), await request.json()
        thread.append(str(data["body"]))
        payload = self._comment_payload(request, len(thread) - 1, thread[-1])
        return web.json_response(payload, status=201)

    async def _list_comments(self, request: web.Request) -> web.Response:
        thread, q = self._thread(request), request.query
        per_page, page = min(int(q.get("per_page", "30")), 100), max(int(q.get("page", "1")), 1)
        chosen = list(enumerate(thread))[(page - 1) * per_page : page * per_page]
        return web.json_response([self._comment_payload(request, i, b) for i, b in chosen])

    async def _update_pull(self, request: web.Request) -> web.Response:
        fake, data = self._fake, await request.json()
        pr = fake.pull(int(request.match_info["number"]))
        if data.get("state") in ("open", "closed") and not pr.merged:
            pr.state = data["state"]
        if isinstance(data.get("title"), str):
            pr.title = data["title"]
        if isinstance(data.get("body"), str):
            pr.body = data["body"]
        return web.json_response(payloads.pull_request(pr, fake.site))

    async def _merge(self, request: web.Request) -> web.Response:
        fake = self._fake
        pr = fake.pull(int(request.match_info["number"]))
        if pr.merged or pr.state != "open":
            return web.json_response(
                payloads.error("Pull Request is not mergeable", 405), status=405
            )
        fake.merge_branch(pr)
        return web.json_response({"sha": pr.merge_sha, "merged": True,
                                  "message": "Pull Request successfully merged"})  # fmt: skip

    def enable_auto_merge(self, node_id: str) -> web.Response:
        """GraphQL `enablePullRequestAutoMerge` for the PR with `node_id`."""
        from tests.fakes.github_api import graphql_error  # noqa: PLC0415

        fake = self._fake
        found = [pr for pr in fake.pulls if pr.node_id == node_id]
        if not found:
            return graphql_error("NOT_FOUND", "Could not resolve to a node with the global id")
        pr = found[0]
        if not fake.auto_merge_allowed:
            return graphql_error("UNPROCESSABLE", "Auto merge is not allowed for this repository")
        if not fake.checks_pending:
            return graphql_error("UNPROCESSABLE", "Pull request is in clean status")
        pr.auto_merge = "SQUASH"
        payload = {"pullRequest": {"number": pr.number}}
        return web.json_response({"data": {"enablePullRequestAutoMerge": payload}})
