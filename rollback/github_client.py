"""`GitHubClient`: one githubkit client and the one retry policy for every call to GitHub.

`rollback.github.GitHubForge` (reverts) and `rollback.github_changes.GitHubChanges` (fixes,
issues, merges, closes) build on it and reach GitHub only through `_call` and `_rest`.
githubkit's own retry is off because it may sleep until the rate-limit reset, up to an hour;
`_call` retries through `observer.retry.retry_inline`, backing off with `retry_delay` from
`BACKOFF_FIRST` to `BACKOFF_CAP`. githubkit's errors are mapped here, at the edge::

    rate limited, wait <= cap              -> wait, retry                  ┐ ForgeUnavailable
    rate limited, wait >  cap              -> ForgeUnavailable at once     │ (with the wait as
    5xx, RequestTimeout, RequestError      -> back off, retry              ┘ `retry_after`) once
                                                                             max_attempts are spent
    other 4xx (401 bad token, 404, 422)    -> ForgeError, not retried

"Rate limited" is githubkit's `RateLimitExceeded` (its wait read from `retry-after` or
`x-ratelimit-reset`), and also what githubkit leaves a plain `RequestFailed`: a 429, or a 403
saying "secondary rate limit", with no header naming a wait. GitHub's docs say to wait at least a
minute then, and longer on each repeat (`SECONDARY_WAIT`, doubling), which beyond the inline cap
is the loop's action retry: the Watch is due again after it, no step sleeps it.
    GraphQLFailed                          -> ForgeError (a revert falls back to the Git Data API)
    pydantic ValidationError               -> ForgeError (GitHub answered in an unexpected shape)

githubkit puts path parameters into the URL as they are given, and httpx then reads a `?` as the
start of a query, a `#` as a fragment and `..` as a step up: every sha and ref Rearguard passes
in a path goes through `segment` (one segment, everything reserved escaped) or `ref_path` (a
ref's segments each escaped, its slashes kept), and repository names are checked by
`split_repo`, so nothing from outside (a deploy's sha, a webhook's merge commit, a configured
branch) can change which endpoint is asked.

The token never appears in a message or log line (`_redact`). `token` is a personal token, or a
`rollback.github_auth.GitHubApp` whose installation tokens githubkit fetches and keeps in memory
(`uses_app`: check runs need it, `rollback.github_checks`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar
from urllib.parse import quote

from githubkit import GitHub, Response
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GraphQLFailed,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit_schemas.latest.models import PullRequest, PullRequestSimple
from pydantic import BaseModel, ValidationError

from observer.retry import MAX_RETRY_AFTER, Sleep, retry_delay, retry_inline
from rollback.forge import ChangeState, ForgeError, ForgeUnavailable
from rollback.github_auth import AppInstallationsStrategy, GitHubApp, InstallationLookupFailed

T = TypeVar("T")
P = ParamSpec("P")
Repo = tuple[str, str]  # (owner, name)

# The forge's one logger keeps the name it has always had, so log configuration still applies.
logger = logging.getLogger("rollback.github")

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 8.0
SECONDARY_WAIT = 60.0
"""The first wait after a secondary rate limit that names none ("wait at least one minute")."""
_SECONDARY_MESSAGES = ("secondary rate limit", "abuse detection")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class Rejected(ForgeError):
    """GitHub answered 4xx: the same call will not succeed by retrying."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class GraphQLRefused(ForgeError):
    """GraphQL answered with errors (for a revert: conflicts, or a PR not merged on GitHub)."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A PR Rearguard opened (a revert or a fix), as GitHub reports it."""

    number: int
    url: str
    branch: str
    head_sha: str
    labels: frozenset[str]
    state: ChangeState = ChangeState.OPEN


@dataclass(frozen=True, slots=True)
class RepoAccess:
    """What GitHub reports of the token on one repository: the `permissions` object of
    `GET /repos/{owner}/{repo}` (the role the token acts with: for an App installation its
    permissions, for a user token the user's role), and for a classic token its scopes
    (`X-OAuth-Scopes`; None for fine-grained and installation tokens, which send none)."""

    pull: bool
    push: bool
    private: bool
    scopes: frozenset[str] | None

    @property
    def can_write(self) -> bool:
        """Whether the token may push branches and open PRs: `push`, and for a classic token
        the `repo` scope (`public_repo` is enough on a public repository)."""
        if not self.push:
            return False
        if self.scopes is None:
            return True
        return "repo" in self.scopes or (not self.private and "public_repo" in self.scopes)


class GitHubClient:
    """One githubkit client with bounded retries; use `async with` (or call `aclose`)."""

    def __init__(
        self,
        base_url: str,
        token: str | GitHubApp,
        *,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_retry_after: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.uses_app = isinstance(token, GitHubApp)
        """Whether the client acts as a GitHub App installation (else a personal token)."""
        self._token = "" if isinstance(token, GitHubApp) else token
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        auth = AppInstallationsStrategy(token) if isinstance(token, GitHubApp) else token
        # A cache of its own: installation tokens are this client's, never another's.
        self._gh = GitHub(
            auth, base_url=base_url, timeout=timeout, auto_retry=False, http_cache=False,
            cache_strategy=MemCacheStrategy(),
        )  # fmt: skip
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        # githubkit keeps the pooled client in a ContextVar: tasks that do not see it still work,
        # each call then opening its own connection.
        await self._stack.enter_async_context(self._gh)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._stack.aclose()

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` with bounded retries; raise only `ForgeError`s, token redacted."""
        try:
            return await retry_inline(
                _unwrapped(op),
                partial(self._classify, what),
                attempts=self._max_attempts,
                sleep=self._sleep,
                on_retry=partial(self._log_retry, what),
            )
        except InstallationLookupFailed as exc:
            raise ForgeError(f"{what}: {exc}") from exc
        except RequestFailed as exc:
            if (wait := _limit_wait(exc, self._max_attempts)) is not None:  # the budget spent
                raise self._spent(what, exc, retry_after=wait) from exc
            if exc.response.status_code < 500:  # noqa: PLR2004 (5xx: the server's fault)
                raise self._rejected(what, exc) from exc
            raise self._spent(what, exc) from exc
        except RequestError as exc:  # timeouts and connection errors
            raise self._spent(what, exc) from exc
        except GraphQLFailed as exc:
            messages = "; ".join(error.message for error in exc.response.errors or [])
            raise GraphQLRefused(self._redact(f"{what}: {messages}")) from exc
        except ValidationError as exc:
            raise ForgeError(f"{what}: a request or answer did not fit GitHub's schema") from exc

    def _classify(self, what: str, exc: Exception, attempt: int) -> float | None:
        """The wait before trying `what` again; None for a failure retrying will not mend."""
        if (wait := _limit_wait(exc, attempt)) is not None:
            if wait > self._max_retry_after:
                cap = self._max_retry_after
                raise ForgeUnavailable(
                    self._redact(f"{what}: rate limited for {wait:.0f}s (we wait {cap:.0f}s)"),
                    retry_after=wait,
                ) from exc
            return wait
        if isinstance(exc, RequestFailed):
            if exc.response.status_code < 500:  # noqa: PLR2004 (5xx: the server's fault)
                return None
            return retry_delay(attempt, BACKOFF_FIRST, BACKOFF_CAP)
        if isinstance(exc, RequestError):  # timeouts and connection errors
            return retry_delay(attempt, BACKOFF_FIRST, BACKOFF_CAP)
        return None

    def _log_retry(self, what: str, exc: Exception, attempt: int, wait: float) -> None:
        logger.warning(
            "%s; retrying in %.1fs (attempt %d of %d)",
            self._redact(f"{what}: {_describe(exc)}"),
            wait,
            attempt,
            self._max_attempts,
        )

    def _spent(
        self, what: str, exc: Exception, *, retry_after: float | None = None
    ) -> ForgeUnavailable:
        return ForgeUnavailable(
            self._redact(f"{what}: {_describe(exc)} after {self._max_attempts} attempts"),
            retry_after=retry_after,
        )

    async def _rest(
        self,
        what: str,
        at: Repo,
        method: Callable[Concatenate[str, str, P], Awaitable[Response[T, Any]]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One REST call on repository `at` under `_call`, parsed there so shape errors map too."""

        async def op() -> T:
            return (await method(at[0], at[1], *args, **kwargs)).parsed_data

        return await self._call(what, op)

    async def repo_access(self, repo: str) -> RepoAccess:
        """The token's access to `repo` as GitHub reports it (`ForgeError` on 401/404)."""
        owner, name = split_repo(repo)

        async def op() -> RepoAccess:
            response = await self._gh.rest.repos.async_get(owner, name)
            found = response.parsed_data
            perms = found.permissions if isinstance(found.permissions, BaseModel) else None
            header = response.headers.get("x-oauth-scopes")
            scopes = None if header is None else frozenset(
                s.strip() for s in header.split(",") if s.strip()
            )  # fmt: skip
            return RepoAccess(
                pull=bool(perms and perms.pull), push=bool(perms and perms.push),
                private=bool(found.private), scopes=scopes,
            )  # fmt: skip

        return await self._call(f"reading repository {repo}", op)

    async def installation_permissions(self, repo: str) -> dict[str, str]:
        """The App installation's permissions on `repo` (`GET /repos/{o}/{r}/installation`,
        asked with the App's JWT), e.g. `{"checks": "write", "contents": "read"}`."""
        owner, name = split_repo(repo)

        async def op() -> dict[str, str]:
            found = (await self._gh.arequest("GET", f"/repos/{owner}/{name}/installation")).json()
            perms = found.get("permissions") if isinstance(found, dict) else None
            return {str(k): str(v) for k, v in (perms or {}).items()}

        return await self._call(f"reading the App's installation on {repo}", op)

    def _rejected(self, what: str, exc: RequestFailed) -> ForgeError:
        status = exc.response.status_code
        if status == 401:  # noqa: PLR2004 (HTTP Unauthorized)
            return ForgeError(f"{what}: GitHub rejected the token (HTTP 401)")
        return Rejected(self._redact(f"{what}: {_describe(exc)}"), status)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _unwrapped(op: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """`op`, raising what failed inside githubkit's auth flow (the App's token exchange, the
    installation lookup) as itself rather than as a connection error, so a refused key is not
    retried as if GitHub were unreachable."""

    async def run() -> T:
        try:
            return await op()
        except RequestError as exc:
            if isinstance(exc.exc, RequestFailed | InstallationLookupFailed):
                raise exc.exc from exc
            raise

    return run


def _limit_wait(exc: Exception, attempt: int) -> float | None:
    """Seconds a rate limit asks to wait before `attempt + 1`; None when `exc` is none.

    githubkit raises `RateLimitExceeded` when a header names the wait. A secondary limit that
    names none stays a plain `RequestFailed`: a 429, or a 403 whose message says so (any other
    403 is a permission problem, not retried). Then GitHub asks for at least a minute, growing
    on each repeat."""
    if isinstance(exc, RateLimitExceeded):
        return exc.retry_after.total_seconds()
    if not isinstance(exc, RequestFailed):
        return None
    status = exc.response.status_code
    if status == 429 or (status == 403 and _says_secondary(exc)):  # noqa: PLR2004 (HTTP codes)
        return retry_delay(attempt, SECONDARY_WAIT, MAX_RETRY_AFTER)
    return None


def _says_secondary(exc: RequestFailed) -> bool:
    try:
        message = str(exc.response.raw_response.json().get("message", "")).lower()
    except (ValueError, AttributeError):
        return False
    return any(words in message for words in _SECONDARY_MESSAGES)


def split_repo(repo: str) -> Repo:
    """`owner/name` as (owner, name), the form githubkit's REST calls take; ForgeError if not
    (GitHub's names are letters, digits, `-`, `_` and `.`, never `.` or `..` alone)."""
    owner, _, name = repo.partition("/")
    if not all(_NAME.fullmatch(part) and part.strip(".") for part in (owner, name)):
        raise ForgeError(f"repository must be 'owner/name', got {repo!r}")
    return owner, name


def segment(value: str) -> str:
    """`value` (a sha, a `base...head`) as exactly one URL path segment."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if not quoted.strip(".") else quoted


def ref_path(ref: str) -> str:
    """A git ref (`heads/release/1.2`) in a URL path: its slashes kept, as GitHub's ref routes
    take them, and each segment between them escaped."""
    return "/".join(segment(part) for part in ref.split("/"))


def _describe(exc: Exception | None) -> str:
    """A short reason for a githubkit failure: status and GitHub's message, never headers."""
    if isinstance(exc, RateLimitExceeded):
        return f"rate limited (retry after {exc.retry_after.total_seconds():.0f}s)"
    if isinstance(exc, RequestFailed):
        try:
            message = str(exc.response.raw_response.json().get("message", ""))[:200]
        except (ValueError, AttributeError):
            message = ""
        return f"HTTP {exc.response.status_code}" + (f": {message}" if message else "")
    if isinstance(exc, RequestTimeout):
        return "timed out"
    if isinstance(exc, RequestError):
        return f"connection failed ({type(exc.exc).__name__})"
    return "failed"


def as_opened(pull: PullRequest | PullRequestSimple) -> Opened:
    """The parts of a githubkit pull request that a revert or fix change is found again by."""
    labels = frozenset(label.name for label in pull.labels)
    if pull.merged_at is not None:
        state = ChangeState.MERGED
    else:
        state = ChangeState.OPEN if pull.state == "open" else ChangeState.CLOSED
    return Opened(pull.number, pull.html_url, pull.head.ref, pull.head.sha, labels, state)
