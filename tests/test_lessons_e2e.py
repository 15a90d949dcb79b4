"""Issue 11's acceptance scenarios for lessons and spec feedback, on the GitHub stand-in.

(a) `rearguard lessons` (through `loop.cli.main.main`, from a TOML config) over a store holding
three confirmed incidents whose culprits touched `payments/**` opens one PR that changes only
the marked section of `AGENTS.md` and links the three incidents; run again, it updates that PR;
once that PR is closed, the next run opens a new one.
(b) A confirmed incident whose culprit PR says `Spec: acme/app#42` leaves exactly one comment
on issue #42 naming the revert PR, though GitHub's answer to the comment was lost and the
process restarted before it heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from attribution.identity import identify
from attribution.records import Deploy, Incident, MergedPR, Suspect
from attribution.store import Store
from attribution.store_incidents import IncidentQueries
from loop.api.slack import handle_click
from loop.api.slack_work import Click
from loop.cli.main import main
from loop.clock import ManualClock
from loop.config import load_settings
from loop.watch.deps import WatchDeps
from loop.watch.scheduler import run_due
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from rollback.lessons_doc import END, START
from tests.acting_rig import Sleeps, make_acting_rig
from tests.fakes.github import FakeGitHub, FakePR
from tests.fakes.slack import FakeSlack
from tests.serve_rig import Server, free_port, server_environment, wait_up

REPO = "acme/checkout"
TOKEN = "ghp_LessonsToken0123456789"
API = "api-token-lessons"
AGENTS = "# Agents\n\nRun `make test` before pushing.\r\nNever edit `vendor/`.\n"
CHARGE = "def charge(x):\n    return retry(lambda: gateway.charge(x), attempts=3)\n"


@pytest.fixture
async def checkout(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(tmp_path / "gh", token=TOKEN, repo=REPO) as fake:
        yield fake


@contextlib.contextmanager
def mock_env(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set while the CLI (run in a thread) reads it."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _record(pr: FakePR) -> MergedPR:
    return MergedPR(
        repo=REPO, number=pr.number, title=pr.title, author=pr.author, url=pr.html_url,
        merge_sha=pr.merge_sha or "", head_sha=pr.head_sha, base_ref="main", merged_at=1e9,
        body=pr.body, identity=identify(pr.author, pr.body, repo=REPO), files=tuple(pr.files),
    )  # fmt: skip


async def _ship(store: Store, pr: FakePR, n: int, *, regressed: bool) -> str:
    """Record `pr`, a deploy of it, and (if `regressed`) an incident a person confirmed."""
    await store.prs.record_pr(_record(pr), 1e9)
    deploy = Deploy(id=f"deploy-{n}", service="checkout", environment="production",
                    sha=pr.merge_sha or "", finished_at=1e9 + n, source="test",
                    repo=REPO)  # fmt: skip
    await store.watches.record_deploy(deploy, "recovered" if regressed else "healthy", 1e9)
    await store.prs.set_deploy_prs(deploy.id, REPO, [pr.number])
    if not regressed:
        return ""
    incident = Incident(
        id=f"inc-{n}", deploy_id=deploy.id, service="checkout", environment="production",
        sli="http_errors", opened_at=1e9 + n, verdict={"results": []}, ambiguous=False,
        confidence=0.95, revert_unit=(pr.number,), reason="the culprit's files match the errors",
        suspects=(Suspect(REPO, pr.number, 0.95, "frames in its files"),),
    )  # fmt: skip
    await store.writer.tx(lambda cur: IncidentQueries.insert_incident(cur, incident))
    await store.incidents.record_feedback(f"api:{n}", incident.id, "confirmed", actor="ana",
                                          source="api", now=1e9 + n)  # fmt: skip
    return incident.id


def _config(tmp_path: Path, github: FakeGitHub, *, listen: str = "127.0.0.1:8080") -> Path:
    path = tmp_path / "rearguard.toml"
    path.write_text(f"""
[server]
listen = "{listen}"
store = "{tmp_path / "store.duckdb"}"
public_url = "https://rearguard.example"

[github]
api_url = "{github.url}"

[services.checkout]
repo = "{REPO}"
[services.checkout.slis.http_errors]
bad = 'sum(increase(http_requests_total{{code=~"5.."}}[$step]))'
total = 'sum(increase(http_requests_total[$step]))'
""")
    return path


async def _lessons(config: Path) -> tuple[int, dict[str, object]]:
    """`rearguard lessons --json` in a thread of its own (it runs its own event loop)."""
    out = config.parent / "out.json"

    def run() -> int:
        import contextlib  # noqa: PLC0415

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["lessons", "--repo", REPO, "--config", str(config), "--json"])
        out.write_text(buffer.getvalue())
        return code

    code = await asyncio.to_thread(run)
    return code, json.loads(out.read_text() or "{}")


def _outside(text: str) -> str:
    return text[: text.index(START)] + text[text.index(END) + len(END) :]


async def test_lessons_open_one_pr_changing_only_the_marked_section_then_update_it(
    tmp_path: Path, checkout: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three confirmed payments incidents: one PR on `AGENTS.md`, updated in place; a closed
    one is followed by a new one."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    checkout.commit({"AGENTS.md": AGENTS, "payments/charge.py": CHARGE,
                     "payments/refund.py": "def refund(x):\n    return retry(x)\n"},
                    "Start")  # fmt: skip
    store = await Store.open(tmp_path / "store.duckdb")
    incidents = []
    body = "Faster.\n\nAgent-Name: codex\nAgent-Model: gpt-5\n"
    for n, (path, content) in enumerate([
        ("payments/charge.py", "def charge(x):\n    return gateway.charge(x)\n"),
        ("payments/refund.py", "def refund(x):\n    return x\n"),
        ("payments/charge.py", "def charge(x):\n    return gateway.charge(x, timeout=None)\n"),
    ], start=1):  # fmt: skip
        pr = checkout.merge_pr(
            f"Speed up <b>{path}</b> @team", body, {path: content}, author="codex"
        )
        incidents.append(await _ship(store, pr, n, regressed=True))
    for n in range(4, 8):
        clean = checkout.merge_pr(f"Page {n}", "", {f"web/page{n}.ts": "x\n"}, author="dev")
        await _ship(store, clean, n, regressed=False)
    await store.close()
    config = _config(tmp_path, checkout)

    code, first = await _lessons(config)
    assert code == 0, first
    assert first["state"] == "opened"
    (pr,) = checkout.created_pulls()
    assert pr.state == "open"
    assert not pr.merged
    assert pr.auto_merge is None
    assert {"rearguard", "lessons"} <= set(pr.labels)
    changed = checkout.git("diff", "--name-only", f"main...{pr.head_sha}").split()
    assert changed == ["AGENTS.md"]
    text = checkout.read_file("AGENTS.md", pr.head_sha)
    assert text is not None
    assert text.startswith(AGENTS)  # every byte before the section unchanged, CRLF included
    assert _outside(text) == AGENTS + "\n\n"
    section = text[text.index(START) :]
    for incident in incidents:
        link = f"[`{incident}`](https://rearguard.example/v1/incidents/{incident})"
        assert link in section
        assert link in pr.body
    assert "`payments/**`" in section
    assert "removed retries (2 of 3)" in section
    assert "<b>" not in section
    assert "@team" not in section

    # A fourth incident, and a person's edit outside the section on main meanwhile.
    checkout.commit({"AGENTS.md": "Intro.\n" + text}, "Docs: an intro line")
    store = await Store.open(tmp_path / "store.duckdb")
    fourth = checkout.merge_pr("Drop the lock", body, {"payments/charge.py": "x\n"},
                               author="codex")  # fmt: skip
    incidents.append(await _ship(store, fourth, 8, regressed=True))
    await store.close()
    code, second = await _lessons(config)
    assert code == 0, second
    assert second["state"] == "updated"
    assert [p.number for p in checkout.created_pulls()] == [pr.number]
    updated = checkout.read_file("AGENTS.md", checkout.pull(pr.number).head_sha)
    assert updated is not None
    assert _outside(updated) == "Intro.\n" + AGENTS + "\n\n"
    assert "inc-8" in updated
    assert "inc-8" in checkout.pull(pr.number).body
    again = checkout.git("diff", "--name-only", f"main...{checkout.pull(pr.number).head_sha}")
    assert again.split() == ["AGENTS.md"]

    checkout.pull(pr.number).state = "closed"  # a person closed it unmerged
    code, third = await _lessons(config)
    assert code == 0, third
    assert third["state"] == "opened"
    assert len(checkout.created_pulls()) == 2
    assert len(checkout.open_pulls()) == 1


async def test_spec_issue_gets_one_comment_naming_the_revert_across_a_lost_answer_and_restart(
    tmp_path: Path, github: FakeGitHub, slack: FakeSlack
) -> None:
    """The culprit says `Spec: acme/app#42`: one comment on #42 with the revert PR, the numbers
    and the fix, though the comment's answer was lost and the process restarted."""
    spec = github.add_issue(42, "Spec: faster charges")
    rig = await make_acting_rig(tmp_path, github, slack, mode="propose", forge_attempts=1)
    try:
        assert await rig.run() == "reverted"
        (revert,) = [p for p in github.created_pulls() if p.title.startswith("Revert")]
        assert spec.comments == []  # nobody confirmed it yet
        incident = (await rig.store.incidents.recent())[0]
        github.fail_next(1, 502, match="POST /repos/acme/app/issues/42/comments", after=True)
        click = Click("rearguard_confirm", "confirmed", incident.id, "ana", "1.0")
        await handle_click(rig.deps, click)
        await run_due(rig.deps)
        assert len(spec.comments) == 1  # made; its answer lost, so the action is still pending
        actions = {a.id: a for a in await rig.store.incidents.actions(incident.id)}
        assert actions[f"spec-{incident.id}"].status == "pending"
    finally:
        await rig.close_clients()
    restarted = await rig.restarted()
    try:
        await restarted.clock.sleep(600)  # past the action's retry time
        await run_due(restarted.deps)
        await run_due(restarted.deps)
        actions = {a.id: a for a in await restarted.store.incidents.actions(incident.id)}
    finally:
        await restarted.close_clients()
        await restarted.store.close()
    assert actions[f"spec-{incident.id}"].status == "completed"
    assert (actions[f"spec-{incident.id}"].detail or {})["reused"] is True
    (comment,) = spec.comments
    assert revert.html_url in comment
    for needle in ("http_errors", "0.50%", "8.00%", "confirmed by a person", "bug issue",
                   f"http://rg.test/v1/incidents/{incident.id}",
                   f"<!-- rearguard-key: spec-{incident.id} -->"):  # fmt: skip
        assert needle in comment


async def test_lessons_run_by_themselves_once_a_day_even_across_a_restart(
    tmp_path: Path, checkout: FakeGitHub
) -> None:
    """After confirmed incidents the sweep proposes lessons once; more sweeps and a restart the
    same day do not; a new confirmed incident a day later updates the same PR."""
    checkout.commit({"payments/charge.py": CHARGE}, "Start")
    store = await Store.open(tmp_path / "store.duckdb")
    first = checkout.merge_pr("Change 1", "", {"payments/charge.py": "v1\n"})
    await _ship(store, first, 1, regressed=True)
    settings = load_settings(_config(tmp_path, checkout), {"GITHUB_TOKEN": TOKEN})
    clock = ManualClock(2e9)

    def deps_now() -> WatchDeps:
        forge = GitHubForge(checkout.url, TOKEN, timeout=5.0)
        return WatchDeps(settings, store, SimulatedSource(), forge,
                         ConsoleNotifier(io.StringIO()), clock)  # fmt: skip

    deps = restarted = deps_now()
    try:
        await run_due(deps)  # one confirmed incident, fewer than `min_incidents` (2)
        assert checkout.created_pulls() == []
        skipped = await store.lessons.last_run(REPO)
        assert skipped is not None
        assert (skipped.state, skipped.incidents) == ("skipped", ("inc-1",))
        await clock.sleep(86_400 + 1)
        second = checkout.merge_pr("Change 2", "", {"payments/charge.py": "v2\n"})
        await _ship(store, second, 2, regressed=True)
        await run_due(deps)
        (pr,) = checkout.created_pulls()
        assert checkout.read_file("AGENTS.md", pr.head_sha) is not None  # created: none before
        await run_due(deps)
        restarted = deps_now()
        await run_due(restarted)
        assert len(checkout.created_pulls()) == 1
        head = checkout.pull(pr.number).head_sha
        third = checkout.merge_pr("Change 3", "", {"payments/charge.py": "v3\n"})
        await _ship(store, third, 3, regressed=True)
        await run_due(restarted)
        assert checkout.pull(pr.number).head_sha == head  # the same day: not yet
        await clock.sleep(86_400 + 1)
        await run_due(restarted)
        assert [p.number for p in checkout.created_pulls()] == [pr.number]
        assert "inc-3" in (checkout.read_file("AGENTS.md", checkout.pull(pr.number).head_sha) or "")
        run = await store.lessons.last_run(REPO)
        assert run is not None
        assert (run.state, run.incidents) == ("updated", ("inc-1", "inc-2", "inc-3"))
    finally:
        for d in (deps, restarted):
            assert isinstance(d.forge, GitHubForge)
            await d.forge.aclose()  # closing twice is safe
        await store.close()


async def test_a_lessons_run_github_failed_is_tried_again_an_hour_later(
    tmp_path: Path, checkout: FakeGitHub
) -> None:
    """GitHub down for a run: it is kept as failed, not repeated at once, and an hour later the
    PR is opened."""
    checkout.commit({"payments/charge.py": CHARGE}, "Start")
    store = await Store.open(tmp_path / "store.duckdb")
    for n in (1, 2):
        pr = checkout.merge_pr(f"Change {n}", "", {"payments/charge.py": f"v{n}\n"})
        await _ship(store, pr, n, regressed=True)
    settings = load_settings(_config(tmp_path, checkout), {"GITHUB_TOKEN": TOKEN})
    clock = ManualClock(2e9)
    forge = GitHubForge(checkout.url, TOKEN, timeout=5.0, sleep=Sleeps())
    deps = WatchDeps(settings, store, SimulatedSource(), forge, ConsoleNotifier(io.StringIO()),
                     clock)  # fmt: skip
    try:
        checkout.fail_next(100, 502, match="/git/")
        await run_due(deps)
        failed = await store.lessons.last_run(REPO)
        assert failed is not None
        assert failed.state == "failed"
        assert "502" in (failed.error or "")
        checkout.clear_faults()
        await run_due(deps)
        assert checkout.created_pulls() == []
        await clock.sleep(3601)
        await run_due(deps)
        assert len(checkout.created_pulls()) == 1
    finally:
        await forge.aclose()
        await store.close()


async def test_lessons_through_the_running_server(tmp_path: Path, checkout: FakeGitHub) -> None:
    """While `rearguard serve` holds the store, `rearguard lessons --config` refuses and names
    `--url`; `--url` asks the server (`POST /v1/lessons`, the API token), which opens the PR;
    asked again it opens no second one; a wrong token or an unknown repository changes nothing."""
    checkout.commit({"AGENTS.md": AGENTS}, "Start")
    store = await Store.open(tmp_path / "store.duckdb")
    for n in (1, 2):
        pr = checkout.merge_pr(f"Charge {n}", "", {"payments/charge.py": f"# {n}\n"})
        await _ship(store, pr, n, regressed=True)
    await store.close()
    port = free_port()
    config = _config(tmp_path, checkout, listen=f"127.0.0.1:{port}")
    config.write_text(config.read_text() + "[lessons]\nauto = false\n")  # asked, not by itself
    env = server_environment() | {"GITHUB_TOKEN": TOKEN, "REARGUARD_API_TOKEN": API}
    server = Server(config, env, port, tmp_path / "server.log")
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, server)

            def cli(*args: str, token: str = API) -> tuple[int, str, str]:
                out, err = io.StringIO(), io.StringIO()
                with (
                    mock_env({"REARGUARD_API_TOKEN": token, "GITHUB_TOKEN": TOKEN}),
                    contextlib.redirect_stdout(out),
                    contextlib.redirect_stderr(err),
                ):
                    code = main(["lessons", "--repo", REPO, *args])
                return code, out.getvalue(), err.getvalue()

            code, _, err = await asyncio.to_thread(cli, "--config", str(config))
            assert code == 2, err
            assert "--url" in err
            code, _, err = await asyncio.to_thread(cli, "--url", server.url, token="wrong")
            assert code == 1
            assert "401" in err
            assert checkout.created_pulls() == []
            code, out, err = await asyncio.to_thread(cli, "--url", server.url, "--json")
            assert code == 0, f"{err}\n{server.tail()}"
            answer = json.loads(out)
            assert (answer["repo"], answer["state"]) == (REPO, "opened")
            (pr,) = checkout.created_pulls()
            assert answer["url"] == pr.html_url
            code, out, err = await asyncio.to_thread(cli, "--url", server.url, "--json")
            assert code == 0, err
            assert json.loads(out)["state"] in {"updated", "unchanged"}
            async with session.post(
                f"{server.url}/v1/lessons", json={"repo": "acme/other"},
                headers={"Authorization": f"Bearer {API}"},
            ) as response:  # fmt: skip
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "unknown_repository"
    finally:
        server.stop()
    assert len(checkout.created_pulls()) == 1
