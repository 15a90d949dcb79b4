"""`rearguard check`: the config against the real services, one line per check.

Each service's SLIs are asked of Prometheus as the Watch will ask them (on the step plan that the
data's scrape interval gives, `observer.scrape_interval`): the query parses, returns series, the
step fits the interval, and a baseline window holds `min_events`. Each repository is read on
GitHub with the token, whose write access is checked where the mode opens PRs; the Slack token
and channel are tried with the calls the notifier makes. A line is `ok`, `WARN` (works, but not
as configured) or `FAIL` (with what to do); any `FAIL` makes the exit code non-zero. Every
message comes from a client that scrubs its secrets, so no token is printed.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import TextIO

from loop.config import ServiceSettings, Settings, github_auth_kind, github_credentials
from loop.prometheus import prometheus_source
from observer.scrape_interval import ScrapeIntervals, plan_step, step_too_short
from observer.slis import Sli, SliKind
from observer.sources import MetricsError, MetricsSource, Series, SourceUnavailable
from rollback.forge import ForgeError
from rollback.github_client import GitHubClient
from rollback.notify import NotifyError
from rollback.policy import Mode
from rollback.slack_web import SlackWeb

TIMEOUT = 10.0
"""Seconds each GitHub or Slack call may take."""
SLACK_SCOPES = ("chat:write", "files:write")
"""Scopes the notifier posts with (`channels:history` is tried by reading the channel)."""


class Status(StrEnum):
    OK = "ok"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Line:
    """One check's outcome: what was checked, and what was found or what to do."""

    status: Status
    what: str
    detail: str

    def render(self) -> str:
        return f"{self.status:<4} {self.what}: {self.detail}"


def exit_code(lines: Sequence[Line]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(line.status is Status.FAIL for line in lines) else 0


async def check_prometheus(
    source: MetricsSource, settings: Settings, now: float, url: str
) -> list[Line]:
    """Prometheus reachable, then every SLI of every service."""
    try:
        await source.query_range("vector(1)", now, now, 1.0)
    except MetricsError as exc:
        return [Line(Status.FAIL, "prometheus", f"{exc}; check [prometheus] url and its auth")]
    lines = [Line(Status.OK, "prometheus", f"answers at {url}")]
    intervals = ScrapeIntervals()
    for service in settings.services.values():
        for sli in service.slis:
            lines += await check_sli(
                source, service, sli, now, intervals, settings.prometheus_scrape_interval
            )
    return lines


async def check_sli(  # noqa: PLR0917 - each argument is one thing the check needs
    source: MetricsSource,
    service: ServiceSettings,
    sli: Sli,
    now: float,
    intervals: ScrapeIntervals,
    override: float | None,
) -> list[Line]:
    """The SLI's queries parse and return series, its step fits the data, and a baseline window
    before `now` holds `min_events` (ratio SLIs)."""
    what = f"services.{service.name}.slis.{sli.name}"
    try:
        interval = await intervals.interval(source, sli, now, override)
    except MetricsError as exc:
        return [Line(Status.FAIL, what, str(exc))]
    plan = plan_step(sli, service.step, interval)
    lines = [_interval_line(what, sli, service.step, interval)]
    start = now - service.baseline + plan.step
    events = 0.0
    for role, query in sli.queries(plan.step, plan.range).items():
        try:
            series = await source.query_range(query, start, now, plan.step)
        except SourceUnavailable as exc:
            return [*lines, Line(Status.FAIL, f"{what}.{role}", str(exc))]
        except MetricsError as exc:
            return [*lines, Line(Status.FAIL, f"{what}.{role}", f"{exc}; fix the PromQL")]
        lines.append(_series_line(f"{what}.{role}", role, series, service.baseline))
        if role == "total":
            events = _sum(series) * plan.scale
    if sli.kind is SliKind.RATIO and lines[-1].status is Status.OK:
        lines.append(_events_line(what, sli, events, service.baseline))
    return lines


def _interval_line(what: str, sli: Sli, step: float, interval: float | None) -> Line:
    if interval is None:
        return Line(
            Status.WARN, f"{what}.interval",
            "scrape interval unknown (no range selector with 10 minutes of samples): the step "
            f"of {step:g}s is used as configured; set [prometheus] scrape_interval to be sure",
        )  # fmt: skip
    message = step_too_short(sli.name, step, interval)
    if message is not None:
        return Line(Status.WARN, f"{what}.interval", message)
    return Line(Status.OK, f"{what}.interval", f"scraped every {interval:g}s; step {step:g}s fits")


def _series_line(what: str, role: str, series: list[Series], window: float) -> Line:
    if series:
        return Line(Status.OK, what, f"parses, {len(series)} series over the last {window:g}s")
    if role == "bad":  # no bad events: the detector counts them as zero
        return Line(Status.OK, what, f"parses, no series over the last {window:g}s (no bad events)")
    return Line(
        Status.FAIL, what,
        f"returns no series over the last {window:g}s: check the metric name and labels "
        "against what Prometheus holds (its /graph page lists the series)",
    )  # fmt: skip


def _events_line(what: str, sli: Sli, events: float, window: float) -> Line:
    if events >= sli.min_events:
        return Line(
            Status.OK, f"{what}.min_events",
            f"{events:.0f} events over the last {window:g}s (min_events = {sli.min_events})",
        )  # fmt: skip
    return Line(
        Status.FAIL, f"{what}.min_events",
        f"only {events:.0f} events over the last {window:g}s, under min_events = "
        f"{sli.min_events}: every deploy would be inconclusive; lengthen `baseline` or lower "
        "`min_events`",
    )  # fmt: skip


def _sum(series: list[Series]) -> float:
    return sum(s.value for one in series for s in one.samples if math.isfinite(s.value))


async def check_github(settings: Settings) -> list[Line]:
    """Which auth is used; each repository readable with it, and writable where the mode opens
    PRs (for an App: the installation's permissions against those each mode needs)."""
    credentials = github_credentials(settings)
    if credentials is None:
        return [Line(Status.FAIL, "github", "GITHUB_TOKEN is not set (nor [github] app_id): "
                     "export it before serve")]  # fmt: skip
    modes: dict[str, set[Mode]] = {}
    for service in settings.services.values():
        modes.setdefault(service.repo, set()).add(service.mode or settings.mode)
    lines = [Line(Status.OK, "github auth", github_auth_kind(settings))]
    async with GitHubClient(
        settings.github_api_url, credentials, timeout=TIMEOUT, max_attempts=1
    ) as client:
        for repo, repo_modes in modes.items():
            line = _app_line if client.uses_app else _repo_line
            lines.append(await line(client, repo, repo_modes))
    return lines


APP_NEEDS: dict[str, dict[str, str]] = {
    "observe": {"metadata": "read", "contents": "read", "pull_requests": "read"},
    "propose": {"metadata": "read", "contents": "write", "pull_requests": "write",
                "checks": "write", "issues": "write"},
}  # fmt: skip
"""The installation permissions each mode needs (`act` needs what `propose` does)."""


async def _app_line(client: GitHubClient, repo: str, modes: set[Mode]) -> Line:
    what = f"github {repo}"
    try:
        granted = await client.installation_permissions(repo)
        await client.repo_access(repo)  # the installation token reads the repository
    except ForgeError as exc:
        return Line(Status.FAIL, what, f"{exc}; install the App on the repository")
    writing = any(m is not Mode.OBSERVE for m in modes)
    needs = APP_NEEDS["propose" if writing else "observe"]
    rank = {"read": 1, "write": 2, "admin": 3}
    missing = [f"{name} {level}" for name, level in needs.items()
               if rank.get(granted.get(name, ""), 0) < rank[level]]  # fmt: skip
    if missing:
        mode = "/".join(sorted(str(m) for m in modes))
        return Line(Status.FAIL, what, f"the App installation lacks {', '.join(missing)} "
                    f"({mode} mode): grant them in the App's settings")  # fmt: skip
    has = "App installation has " + ", ".join(f"{name} {granted[name]}" for name in needs)
    if granted.get("checks") not in {"write", "admin"}:
        return Line(Status.WARN, what, f"{has}; no checks write: verdicts are not shown on "
                    "commits (grant checks write)")  # fmt: skip
    return Line(Status.OK, what, has)


async def _repo_line(client: GitHubClient, repo: str, modes: set[Mode]) -> Line:
    what = f"github {repo}"
    try:
        access = await client.repo_access(repo)
    except ForgeError as exc:
        return Line(Status.FAIL, what, f"{exc}; the token needs read access to the repository")
    writing = sorted(str(m) for m in modes if m is not Mode.OBSERVE)
    if not access.pull:
        return Line(Status.FAIL, what, "the token cannot read the repository")
    if not writing:
        return Line(Status.OK, what, "readable (observe mode: no write needed)")
    if not access.can_write:
        reason = "no push permission on the repository"
        if access.push and access.scopes is not None:
            has = ", ".join(sorted(access.scopes)) or "none"
            reason = f"a classic token without the `repo` scope (it has: {has})"
        return Line(
            Status.FAIL, what,
            f"{reason}; {'/'.join(writing)} mode opens revert PRs: give the token contents and "
            "pull requests write (a fine-grained token or App), or the `repo` scope (classic)",
        )  # fmt: skip
    return Line(Status.OK, what, f"readable and writable ({'/'.join(writing)} mode)")


async def check_slack(settings: Settings) -> list[Line]:
    """The bot token is valid, has the scopes the notifier posts with, and reads the channel."""
    if settings.slack_token is None or not settings.slack_channel:
        return [Line(Status.WARN, "slack", "SLACK_BOT_TOKEN or slack.channel not set: notices "
                                           "go to stderr")]  # fmt: skip
    channel = settings.slack_channel
    web = SlackWeb(
        settings.slack_token.reveal(), channel, base_url=settings.slack_api_url,
        timeout=TIMEOUT, max_retries=0, retry_interval=None, max_retry_after=0.0,
        sleep=asyncio.sleep,
    )  # fmt: skip
    try:
        auth = await web.call("auth.test", web.client.auth_test)
        lines = [Line(Status.OK, "slack token", f"valid for team {auth.get('team', '?')!s}")]
        header = auth.headers.get("x-oauth-scopes") or auth.headers.get("X-OAuth-Scopes")
        if isinstance(header, str):
            scopes = {s.strip() for s in header.split(",")}
            missing = [s for s in SLACK_SCOPES if s not in scopes]
            if missing:
                lines.append(Line(Status.FAIL, "slack token",
                                  f"missing scope(s) {', '.join(missing)}: add them to the app "
                                  "and reinstall it"))  # fmt: skip
        # The default channel, then each service's own (`[services.NAME] slack_channel`).
        own = (s.slack_channel for s in settings.services.values() if s.slack_channel)
        for each in dict.fromkeys((channel, *own)):
            await web.call(
                "conversations.history",
                partial(web.client.conversations_history, channel=each, limit=1),
            )
            lines.append(Line(Status.OK, f"slack channel {each}", "the bot reads it"))
    except NotifyError as exc:
        return [Line(Status.FAIL, "slack", str(exc))]
    finally:
        await web.aclose()
    return lines


async def run_check(settings: Settings, out: TextIO | None = None) -> int:
    """Every check, one line each on stdout as it completes; the exit code."""
    stream = sys.stdout if out is None else out
    lines: list[Line] = []

    def emit(found: list[Line]) -> None:
        for line in found:
            print(line.render(), file=stream)
        lines.extend(found)

    emit([Line(Status.OK, "config", f"{len(settings.services)} service(s)")])
    source = prometheus_source(settings)
    async with source:
        emit(await check_prometheus(source, settings, time.time(), source.safe_url))
    emit(await check_github(settings))
    emit(await check_slack(settings))
    failed = sum(line.status is Status.FAIL for line in lines)
    print(f"{failed} check(s) failed" if failed else "all checks passed", file=stream)
    return exit_code(lines)
