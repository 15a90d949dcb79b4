"""Rearguard as `rearguard serve` runs it, for the Slack end-to-end tests: a TOML config read by
`load_settings`, the clients `build_app` makes from it (slack_sdk and githubkit pointed at the
stand-ins, a real Prometheus scraping the sample app), the culprit learned from a signed
`pull_request` webhook and the deploy from the CD hook; and what those tests ask of the Slack
stand-in afterwards (the incident's first messages, the files in its thread, who a message
would notify).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from loop.api.app import build_app
from loop.config import load_settings
from rollback.slack import PICK
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.slack import FakeFile, FakeMessage, FakeSlack
from tests.fakes.slack_messages import mrkdwn_texts, render
from tests.loop_rig import API_TOKEN, SLACK_CHANNEL, STEP, WEBHOOK_SECRET, sign

REPO = "acme/shop"
SIGNING_SECRET = "slack-signing-secret-for-tests"
READ = {"Authorization": f"Bearer {API_TOKEN}"}
"""Sent on every read too: harmless where reads are open, required where they are not."""


def write_config(
    path: Path, *, store: Path, prometheus: str, github: str, slack: str, service: str,
    listen: str = "127.0.0.1:8080", mode: str = "propose",
) -> Path:  # fmt: skip
    """The config file of one deployment watching `service` (the sample app's 5xx ratio)."""
    selector = f'service="{service}"'
    path.write_text(f"""
[server]
listen = "{listen}"
store = "{store}"
tick = "0.3s"
public_url = "http://rearguard.test"
[github]
api_url = "{github}"
[prometheus]
url = "{prometheus}"
timeout = "3s"
[slack]
api_url = "{slack}"
channel = "{SLACK_CHANNEL}"
[policy]
mode = "{mode}"
[services.{service}]
repo = "{REPO}"
step = "{STEP}s"
watch = "20s"
baseline = "20s"
[services.{service}.slis.http_errors]
kind = "ratio"
bad = 'sum(increase(http_requests_total{{{selector},code=~"5.."}}[$step]))'
total = 'sum(increase(http_requests_total{{{selector}}}[$step]))'
min_events = 100
""")
    return path


def environment(github: FakeGitHub, slack: FakeSlack) -> dict[str, str]:
    """The secrets `serve` reads from its environment."""
    return {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_TOKEN": github.token, "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET}  # fmt: skip


class Api:
    """Rearguard's HTTP API at `base`, over `session`."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base.rstrip("/")

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """POST; the status and the JSON answer."""
        async with self.session.post(self.base + path, **kwargs) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> Any:
        """GET with the API token; the JSON answer."""
        async with self.session.get(self.base + path, headers=READ) as response:
            return await response.json()

    async def incident(self, deploy_id: str) -> Any:
        """The deploy's incident view, or None while it has none."""
        view = await self.get(f"/v1/deploys/{deploy_id}")
        return await self.get(f"/v1/incidents/{view['incident_id']}") if view.get(
            "incident_id") else None  # fmt: skip


class Loop:
    """The served app and its stand-ins for one test."""

    def __init__(self, api: Api, github: FakeGitHub, slack: FakeSlack) -> None:
        self.api, self.github, self.slack = api, github, slack


@contextlib.asynccontextmanager
async def served(
    tmp_path: Path, prometheus: str, service: str, *, edit: Callable[[str], str] | None = None
) -> AsyncIterator[Loop]:
    """The app for one service as `rearguard serve --config` builds it, from a config file
    (changed by `edit` first, if given), with the GitHub and Slack stand-ins. It starts and
    stops inside the caller's own task, as under `web.run_app` (githubkit keeps its connection
    pool in a ContextVar, closed only from the context that opened it)."""
    async with (
        FakeGitHub(tmp_path / "github", repo=REPO) as github,
        FakeSlack() as slack,
    ):
        config = write_config(tmp_path / "rearguard.toml", store=tmp_path / "store.duckdb",
                              prometheus=prometheus, github=github.url, slack=slack.url,
                              service=service)  # fmt: skip
        if edit is not None:
            config.write_text(edit(config.read_text()))
        app = build_app(load_settings(config, environment(github, slack)))
        async with TestClient(TestServer(app)) as client:
            yield Loop(Api(client.session, str(client.make_url(""))), github, slack)


async def regress(api: Api, github: FakeGitHub, service: str, title: str) -> tuple[str, FakePR]:
    """Merge one agent PR titled `title`, deliver its signed webhook, and deploy it (the caller
    has raised the service's error ratio); the deploy id and the PR."""
    initial = github.head_sha()
    pr = github.merge_pr(title, "Agent-Session: sess-slack\nAgent-Name: claude-code\n",
                         {"services/shop/retry.py": f"# {title}\n"})  # fmt: skip
    return await deliver_and_deploy(api, github, service, pr, initial), pr


async def deliver_and_deploy(
    api: Api, github: FakeGitHub, service: str, pr: FakePR, initial: str
) -> str:
    """Deliver merged `pr`'s signed `pull_request` webhook, then deploy the stand-in's head
    over `initial` as CD would; the deploy id."""
    body = json.dumps(github.pull_request_closed_webhook(pr.number)).encode()
    status, _ = await api.post("/v1/webhooks/github", data=body, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": f"slack-{service}-{pr.number}",
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})  # fmt: skip
    assert status == 202
    status, answer = await api.post("/v1/deploys", headers=READ, json={
        "service": service, "environment": "production", "sha": github.head_sha(),
        "previous_sha": initial, "finished_at": time.time()})  # fmt: skip
    assert status == 202, answer
    return str(answer["id"])


async def poll(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], within: float, what: str
) -> Any:
    """Read until `done(value)`; the value, or an AssertionError naming `what` and the last one."""
    deadline = time.monotonic() + within
    value = await read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {within:.0f}s; last: {value}")
        await asyncio.sleep(0.2)
        value = await read()
    return value


def first_messages(slack: FakeSlack, incident_id: str) -> list[FakeMessage]:
    """The top-level messages carrying the incident's first-notice key."""
    key = f"notify-{incident_id}"
    return [m for m in slack.messages if m.thread_ts is None
            and (m.metadata or {}).get("event_payload", {}).get("key") == key]  # fmt: skip


def thread_files(slack: FakeSlack, ts: str) -> list[FakeFile]:
    """The files shared into the thread of `ts`."""
    return [f for f in slack.files if f.thread_ts == ts and f.share_ts]


def mentions(message: FakeMessage) -> set[str]:
    """Whom Slack would notify for `message` (its text and every mrkdwn object)."""
    return {who for text in mrkdwn_texts(message) for who in render(text).mentions}


def links(message: FakeMessage) -> list[tuple[str, str]]:
    """The links (url, label) a reader sees in `message`."""
    return [link for text in mrkdwn_texts(message) for link in render(text).links]


# -- clicks as Slack posts them ----------------------------------------------------------


def click(incident_id: str, action_id: str, user: str = "ana", action_ts: str = "1.2") -> bytes:
    """A block_actions payload as Slack posts it for a button of the incident's message."""
    action = {"type": "button", "action_id": action_id, "value": incident_id,
              "block_id": f"rearguard_feedback:{incident_id}", "action_ts": action_ts}  # fmt: skip
    return _form(action, user)


def pick(incident_id: str, number: int, user: str = "ana", action_ts: str = "2.3") -> bytes:
    """A block_actions payload for an option picked in the "which PR" select."""
    action = {"type": "static_select", "action_id": PICK, "action_ts": action_ts,
              "block_id": f"rearguard_feedback:{incident_id}",
              "selected_option": {"text": {"type": "plain_text", "text": f"#{number}"},
                                  "value": str(number)}}  # fmt: skip
    return _form(action, user)


def _form(action: dict[str, Any], user: str) -> bytes:
    payload = {"type": "block_actions", "user": {"id": "U1", "username": user, "name": user},
               "container": {"type": "message", "channel_id": "C0ROLLBACK"},
               "actions": [action]}  # fmt: skip
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: float, secret: str = SIGNING_SECRET) -> dict[str, str]:
    base = f"v0:{int(timestamp)}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(int(timestamp)), "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
