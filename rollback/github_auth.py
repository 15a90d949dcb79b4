"""GitHub App authentication: installation tokens, with the installation found per repository.

`GitHubApp` holds the App's id, its private key (PEM) and, optionally, one installation id. The
client authenticates as that installation through githubkit's `AppInstallationAuthStrategy`
(a JWT signed with the key asks `POST /app/installations/{id}/access_tokens` for a token, which
githubkit caches until a minute before it expires). Without an installation id each request's
repository owner is looked up once (`GET /repos/{owner}/{repo}/installation`, with the JWT) and
its installation used from then on, so repositories of several accounts work with one App;
requests that name no repository (GraphQL) use the installation found last, or the configured
`default_repo`'s. The key and the tokens stay in memory: never logged, never stored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from githubkit.auth.app import AppAuth
from githubkit.auth.base import BaseAuthStrategy

if TYPE_CHECKING:
    from githubkit import GitHubCore

_REPO_PATH = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)")
_JWT_ROUTE = re.compile(r"^/app(/|$)|^/(repos/[^/]+/[^/]+|orgs/[^/]+|users/[^/]+)/installation$")
"""Routes GitHub takes the App's JWT on (the App itself, and finding its installations)."""


@dataclass(frozen=True, slots=True)
class GitHubApp:
    """A GitHub App's credentials; `repr` never shows the key."""

    app_id: int
    private_key: str = field(repr=False)
    installation_id: int | None = None
    default_repo: str | None = None


class InstallationLookupFailed(httpx.HTTPError):
    """GitHub did not name an installation of the App for a repository."""


@dataclass
class AppInstallationsStrategy(BaseAuthStrategy):
    """githubkit's auth strategy for `GitHubApp` (see the module doc)."""

    app: GitHubApp
    installations: dict[str, int] = field(default_factory=dict)
    """Installation id per owner login (lower case), filled as repositories are met."""

    def get_auth_flow(self, github: GitHubCore[Any]) -> httpx.Auth:
        return _InstallationsAuth(github, self)


class _InstallationsAuth(httpx.Auth):
    def __init__(self, github: GitHubCore[Any], strategy: AppInstallationsStrategy) -> None:
        self._github = github
        self._strategy = strategy
        app = strategy.app
        self._jwt = AppAuth(github, app.app_id, app.private_key)

    def _route(self, url: httpx.URL) -> str:
        base = self._github.config.base_url.path.rstrip("/")
        path = url.path
        return path[len(base) :] if base and path.startswith(base) else path

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("Rearguard's GitHub client is asynchronous only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        route = self._route(request.url)
        if _JWT_ROUTE.match(route):
            request.headers["Authorization"] = f"Bearer {await self._jwt.aget_jwt()}"
            yield request
            return
        app, known = self._strategy.app, self._strategy.installations
        matched = _REPO_PATH.match(route)
        owner, repo = (matched["owner"], matched["repo"]) if matched else _split(app.default_repo)
        installation = app.installation_id or (known.get(owner.lower()) if owner else None)
        if installation is None and not owner and known:
            installation = next(reversed(known.values()))
        if installation is None:
            if not owner:
                raise InstallationLookupFailed(
                    "no repository to find the App's installation by: set github.installation_id"
                )
            base = self._github.config.base_url
            lookup = httpx.Request(
                "GET", base.join(f"repos/{owner}/{repo}/installation"),
                headers={"Authorization": f"Bearer {await self._jwt.aget_jwt()}",
                         "Accept": "application/vnd.github+json",
                         "User-Agent": self._github.config.user_agent},
            )  # fmt: skip
            response = yield lookup
            await response.aread()
            found = response.json() if response.status_code == 200 else {}  # noqa: PLR2004
            if not isinstance(found, dict) or not isinstance(found.get("id"), int):
                raise InstallationLookupFailed(
                    f"the App is not installed on {owner}/{repo} (HTTP {response.status_code})"
                )
            installation = known[owner.lower()] = found["id"]
        inner = AppAuth(
            self._github, app.app_id, app.private_key, installation_id=installation
        ).async_auth_flow(request)
        sent = await inner.__anext__()
        while True:
            response = yield sent
            try:
                sent = await inner.asend(response)
            except StopAsyncIteration:
                return


def _split(repo: str | None) -> tuple[str, str]:
    owner, _, name = (repo or "").partition("/")
    return owner, name
