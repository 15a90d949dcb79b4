"""`GitHubChecks`: verdicts on commits as GitHub check runs, or commit statuses.

With a GitHub App installation the verdict is a check run named `request.name` whose
`external_id` is `request.key`: it is looked for on the commit first
(`GET /repos/{o}/{r}/commits/{sha}/check-runs?check_name=...&filter=all`) and updated
(`PATCH .../check-runs/{id}`) when found, created (`POST .../check-runs`) otherwise, on every
attempt, so a lost answer or a restart never adds a second run. `in_progress` is sent without a
conclusion, a final state as `status: completed` with its `conclusion` and `completed_at` (GitHub
answers 422 to `completed` without one, and to a `head_sha` it does not know).

With a personal token GitHub refuses check runs ("You must authenticate via a GitHub App", 403),
so the verdict is a commit status of context `rearguard` (`POST .../statuses/{sha}`; `pending`,
`success`, `failure`, `error` for inconclusive), its description cut to 140 characters. A status
is posted only when the commit's latest `rearguard` status differs, so a repeat adds nothing.
Both go through `GitHubClient`'s one retry policy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rollback.checks import STATUS_STATE, CheckRequest, CheckResult, CheckState
from rollback.forge import ForgeError
from rollback.github_client import GitHubClient, segment, split_repo

STATUS_CONTEXT = "rearguard"
PER_PAGE = 100


class GitHubChecks(GitHubClient):
    """The `Checks` of `rollback.github.GitHubForge` (see the module doc)."""

    async def report(self, request: CheckRequest) -> CheckResult:
        """Show `request` on its commit: a check run with App auth, else a commit status."""
        if self.uses_app:
            return await self._call(f"check run {request.key}", lambda: self._check_run(request))
        return await self._call(f"commit status {request.key}", lambda: self._status(request))

    async def _check_run(self, request: CheckRequest) -> CheckResult:
        owner, name = split_repo(request.repo)
        base = f"/repos/{owner}/{name}"
        listed = await self._gh.arequest(
            "GET", f"{base}/commits/{segment(request.sha)}/check-runs",
            params={"check_name": request.name, "filter": "all", "per_page": PER_PAGE},
        )  # fmt: skip
        runs = _runs(listed.json())
        found = next((r for r in runs if r.get("external_id") == request.key), None)
        body: dict[str, Any] = {
            "name": request.name, "external_id": request.key, "output": request.output(),
            "status": "in_progress" if request.state is CheckState.IN_PROGRESS else "completed",
        }  # fmt: skip
        if request.state is not CheckState.IN_PROGRESS:
            body["conclusion"] = str(request.state)
            body["completed_at"] = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if request.details_url:
            body["details_url"] = request.details_url
        if found is not None:
            run_id = int(found["id"])
            sent = await self._gh.arequest("PATCH", f"{base}/check-runs/{run_id}", json=body)
        else:
            sent = await self._gh.arequest(
                "POST", f"{base}/check-runs", json=body | {"head_sha": request.sha}
            )
        run = sent.json()
        if not isinstance(run, dict) or not isinstance(run.get("id"), int):
            raise ForgeError(f"check run {request.key}: GitHub answered without a check run id")
        url = run.get("html_url")
        return CheckResult("check_run", run["id"], url if isinstance(url, str) else None,
                           reused=found is not None)  # fmt: skip

    async def _status(self, request: CheckRequest) -> CheckResult:
        owner, name = split_repo(request.repo)
        base, sha = f"/repos/{owner}/{name}", segment(request.sha)
        state, description = STATUS_STATE[request.state], request.description()
        combined = (await self._gh.arequest("GET", f"{base}/commits/{sha}/status")).json()
        statuses = combined.get("statuses", []) if isinstance(combined, dict) else []
        latest = next((s for s in statuses if isinstance(s, dict)
                       and s.get("context") == STATUS_CONTEXT), None)  # fmt: skip
        if latest and latest.get("state") == state and latest.get("description") == description:
            return CheckResult("status", _int(latest.get("id")), request.details_url, reused=True)
        body = {"state": state, "description": description, "context": STATUS_CONTEXT}
        if request.details_url:
            body["target_url"] = request.details_url
        made = (await self._gh.arequest("POST", f"{base}/statuses/{sha}", json=body)).json()
        made_id = _int(made.get("id")) if isinstance(made, dict) else None
        return CheckResult("status", made_id, request.details_url, reused=False)


def _runs(listing: Any) -> list[dict[str, Any]]:
    runs = listing.get("check_runs", []) if isinstance(listing, dict) else []
    return [r for r in runs if isinstance(r, dict) and isinstance(r.get("id"), int)]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None
