"""Verdicts on commits through `GitHubForge.report` against the GitHub stand-in: check runs with
GitHub App auth (JWT -> installation token), commit statuses with a personal token, one check
run per key across repeats and lost answers, GitHub's 403 and 422 rules, and `rearguard check`
naming the auth from a TOML config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from loop.cli.check import check_github
from loop.config import ConfigError, load_settings
from rollback.checks import CheckRequest, CheckState
from rollback.forge import ForgeError
from rollback.github import GitHubForge
from rollback.github_auth import GitHubApp
from tests.fakes.github import FakeGitHub
from tests.github_app_keys import key_pair

APP_ID, INSTALLATION = 4242, 777


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(tmp_path / "gh", repo="acme/app") as fake:
        fake.enable_app(APP_ID, key_pair().public_pem, INSTALLATION)
        yield fake


def _request(sha: str, state: CheckState, title: str = "regressed: http_errors") -> CheckRequest:
    url = "http://rearguard.test/v1/incidents/x"
    return CheckRequest("acme/app", sha, "rearguard-dep1", "rearguard", state, title,
                        "suspect #3", details_url=url)  # fmt: skip


@pytest.mark.parametrize("installation", [INSTALLATION, None])
async def test_app_auth_makes_one_check_run_per_key(
    github: FakeGitHub, installation: int | None
) -> None:
    """In progress, then completed: one check run on the sha, updated, with its conclusion;
    the installation is configured or looked up from the repository."""
    sha = github.head_sha()
    app = GitHubApp(APP_ID, key_pair().private_pem, installation)
    async with GitHubForge(github.url, app, timeout=5) as forge:
        first = await forge.report(_request(sha, CheckState.IN_PROGRESS, "observing"))
        done = await forge.report(_request(sha, CheckState.FAILURE))
        again = await forge.report(_request(sha, CheckState.FAILURE))
    (run,) = github.checks.runs_on(sha)
    assert (first.kind, first.reused, done.reused, again.reused) == (
        "check_run", False, True, True)  # fmt: skip
    assert (run.status, run.conclusion, run.external_id) == (
        "completed", "failure", "rearguard-dep1")  # fmt: skip
    assert run.output["title"] == "regressed: http_errors"
    assert github.checks.app is not None
    assert github.checks.app.jwts_seen >= 1
    looked_up = any(r.endswith("/installation") for r in github.requests)
    assert looked_up is (installation is None)
    assert github.checks.statuses == []


async def test_a_lost_answer_does_not_make_a_second_check_run(github: FakeGitHub) -> None:
    """GitHub creates the run but its answer is lost: the retry finds it by external_id."""
    sha = github.head_sha()
    github.fail_next(1, 502, match="POST /repos/acme/app/check-runs", after=True)
    app = GitHubApp(APP_ID, key_pair().private_pem, INSTALLATION)
    async with GitHubForge(github.url, app, timeout=5, sleep=_no_sleep) as forge:
        result = await forge.report(_request(sha, CheckState.SUCCESS, "healthy"))
    assert result.reused
    (run,) = github.checks.runs_on(sha)
    assert run.conclusion == "success"


async def _no_sleep(_: float) -> None:
    return None


async def test_a_personal_token_posts_a_commit_status_once(github: FakeGitHub) -> None:
    """With a token the verdict is a `rearguard` status (inconclusive as `error`), cut to 140
    characters; the same verdict again adds nothing."""
    sha = github.head_sha()
    long_title = "inconclusive: " + "x" * 300
    async with GitHubForge(github.url, github.token, timeout=5) as forge:
        await forge.report(_request(sha, CheckState.IN_PROGRESS, "observing"))
        await forge.report(_request(sha, CheckState.NEUTRAL, long_title))
        repeat = await forge.report(_request(sha, CheckState.NEUTRAL, long_title))
    states = [(s["state"], s["context"]) for s in github.checks.statuses_on(sha)]
    assert states == [("pending", "rearguard"), ("error", "rearguard")]
    assert repeat.reused
    assert len(github.checks.statuses_on(sha)[-1]["description"]) == 140
    assert github.checks.check_runs == []


async def test_github_refuses_what_it_refuses(github: FakeGitHub) -> None:
    """Check runs with a personal token: 403; an unknown sha: 422, as GitHub answers; a JWT
    signed with another key: 401."""
    headers = {"Authorization": f"token {github.token}"}
    body = {"name": "rearguard", "head_sha": github.head_sha(), "status": "completed"}
    async with aiohttp.ClientSession() as http:
        made = await http.post(f"{github.api}/repos/acme/app/check-runs", json=body,
                               headers=headers)  # fmt: skip
        assert made.status == 403
        assert "GitHub App" in (await made.json())["message"]
    async with GitHubForge(github.url, GitHubApp(APP_ID, key_pair().private_pem, INSTALLATION),
                           timeout=5) as forge:  # fmt: skip
        with pytest.raises(ForgeError, match="422"):
            await forge.report(_request("0" * 40, CheckState.SUCCESS))
        run = await forge.report(_request(github.head_sha(), CheckState.IN_PROGRESS, "observing"))
        assert run.id is not None
    forged = GitHubApp(APP_ID, key_pair("other").private_pem, INSTALLATION)
    async with GitHubForge(github.url, forged, timeout=5, max_attempts=1) as forge:
        with pytest.raises(ForgeError, match=r"HTTP 401"):
            await forge.report(_request(github.head_sha(), CheckState.SUCCESS))


async def test_completed_without_conclusion_is_422(github: FakeGitHub) -> None:
    """The stand-in holds GitHub's rule: `completed` needs a conclusion."""
    app = GitHubApp(APP_ID, key_pair().private_pem, INSTALLATION)
    async with GitHubForge(github.url, app, timeout=5) as forge:
        await forge.report(_request(github.head_sha(), CheckState.IN_PROGRESS, "observing"))
    token = next(iter(github.checks.app.tokens)) if github.checks.app else ""
    (run,) = github.checks.check_runs
    async with aiohttp.ClientSession() as http:
        answer = await http.patch(f"{github.api}/repos/acme/app/check-runs/{run.id}",
                                  json={"status": "completed"},
                                  headers={"Authorization": f"token {token}"})  # fmt: skip
        assert answer.status == 422


def _toml(path: Path, github: FakeGitHub, extra: str) -> Path:
    path.write_text(f"""
[github]
api_url = "{github.url}"
{extra}
[services.app]
repo = "acme/app"
[services.app.slis.errors]
bad = "sum(rate(e[1m]))"
total = "sum(rate(r[1m]))"
""")
    return path


async def test_check_names_the_app_auth_and_its_permissions(
    github: FakeGitHub, tmp_path: Path
) -> None:
    """`rearguard check`'s GitHub lines for an App configured in TOML, key from a file: which
    auth, the installation's permissions, and a missing one failing its line; no key printed."""
    key_file = tmp_path / "app.pem"
    key_file.write_text(key_pair().private_pem)
    config = _toml(tmp_path / "r.toml", github,
                   f'app_id = {APP_ID}\nprivate_key_file = "{key_file}"')  # fmt: skip
    settings = load_settings(config, {})
    lines = [line.render() for line in await check_github(settings)]
    assert lines[0].startswith("ok   github auth: GitHub App 4242")
    assert lines[1].startswith("ok   github acme/app: App installation has")
    assert github.checks.app is not None
    github.checks.app.permissions["checks"] = "read"
    (auth, repo) = [line.render() for line in await check_github(settings)]
    assert repo.startswith("FAIL github acme/app: the App installation lacks checks write")
    assert "PRIVATE KEY" not in auth + repo + repr(settings)
    env = {"GITHUB_TOKEN": github.token}
    token_only = load_settings(_toml(tmp_path / "t.toml", github, ""), env)
    assert "personal token" in (await check_github(token_only))[0].render()


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ("app_id = 1", {}, "REARGUARD_GITHUB_APP_PRIVATE_KEY"),
        ("installation_id = 3", {}, "need app_id"),
        ("app_id = 1", {"REARGUARD_GITHUB_APP_PRIVATE_KEY": "not a key"}, "not PEM"),
        ('app_id = "x"', {}, "expected int"),
        ('app_id = 1\nprivate_key_file = "/nonexistent/key.pem"', {}, "cannot read"),
    ],
)
def test_bad_app_config_is_refused(
    github: FakeGitHub, tmp_path: Path, extra: str, env: dict[str, str], message: str
) -> None:
    """Each App misconfiguration fails the load, naming what to fix."""
    with pytest.raises(ConfigError, match=message):
        load_settings(_toml(tmp_path / "bad.toml", github, extra), env)
