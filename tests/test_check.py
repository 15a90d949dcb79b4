"""`rearguard check` against a real Prometheus serving 15 s-scraped history, and the GitHub and
Slack stand-ins: every check on its line, and each misconfiguration failing with a clear one.

Two hours of counters scraped every 15 s are backfilled with promtool up to a minute ago, so
the interval is learnt from real samples as it would be on a team's Prometheus.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loop.cli.check import run_check
from loop.cli.main import main
from loop.config import load_settings
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import TOKEN as SLACK_TOKEN
from tests.fakes.slack import FakeSlack
from tests.prometheus_server import PrometheusServer

pytestmark = pytest.mark.prometheus

SCRAPE = 15
RATE = 10.0
CHANNEL = "C0CHECK01"
GITHUB_TOKEN = "ghp_check_secret_token_value"


def _openmetrics(start: int, end: int) -> str:
    requests = errors = 0.0
    lines, errs = ["# TYPE ck_requests counter"], ["# TYPE ck_errors counter"]
    for t in range(start, end, SCRAPE):
        requests += RATE * SCRAPE
        errors += RATE * SCRAPE * 0.01
        lines.append(f'ck_requests_total{{service="ck"}} {requests} {t}')
        errs.append(f'ck_errors_total{{service="ck"}} {errors} {t}')
    return "\n".join([*lines, *errs, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A Prometheus serving two hours of 15 s counters that end a minute ago."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian package `prometheus`"
    workdir = tmp_path_factory.mktemp("check-history")
    now = int(time.time())
    source = workdir / "history.om"
    source.write_text(_openmetrics(now - 2 * 3600, now - 60))
    server = PrometheusServer([], workdir=workdir)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(server.data_dir)],
        check=True,
        capture_output=True,
    )
    server.start()
    yield server
    server.stop()


def _config(
    path: Path, prometheus: str, github: str, slack: str, *, total: str = "ck_requests_total",
    bad: str = 'sum(increase(ck_errors_total{service="ck"}[$step]))', channel: str = CHANNEL,
    mode: str = "propose", step: str = "15s",
) -> Path:  # fmt: skip
    path.write_text(f"""
[prometheus]
url = "{prometheus}"
[github]
api_url = "{github}"
[slack]
api_url = "{slack}"
channel = "{channel}"
[policy]
mode = "{mode}"
[services.ck]
repo = "acme/ck"
step = "{step}"
seasonal = []
[services.ck.slis.errors]
bad = '{bad}'
total = 'sum(increase({total}{{service="ck"}}[$step]))'
""")
    return path


ENV = {"GITHUB_TOKEN": GITHUB_TOKEN, "SLACK_BOT_TOKEN": SLACK_TOKEN}


async def _check(
    tmp_path: Path, prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str], **kw: str
) -> tuple[int, str]:
    """Run the check of a config against the stand-ins; (exit code, output)."""
    github = FakeGitHub(tmp_path / "gh", token=GITHUB_TOKEN, repo="acme/ck")
    permissions = kw.pop("permissions", "")
    if permissions == "read":
        github.permissions = {"admin": False, "maintain": False, "push": False,
                              "triage": False, "pull": True}  # fmt: skip
    slack_fake = FakeSlack(channels=[CHANNEL])
    slack_fake.scopes = tuple(
        kw.pop("scopes", "chat:write,channels:history,files:write").split(",")
    )
    async with github, slack_fake as slack:
        config = _config(tmp_path / "rearguard.toml", prometheus.url, github.url, slack.url, **kw)
        code = await run_check(load_settings(config, ENV))
    out = capsys.readouterr().out
    assert GITHUB_TOKEN not in out
    assert SLACK_TOKEN not in out
    return code, out


async def test_a_working_config_passes_every_check(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prometheus, the SLI's queries, interval, traffic, the repo and the channel: all ok."""
    code, out = await _check(tmp_path, prometheus, capsys)
    assert code == 0, out
    assert "FAIL" not in out
    assert "scraped every 15s; step 15s fits" in out
    assert "services.ck.slis.errors.total: parses, 1 series" in out
    # 10 requests/s from 30 minutes ago until the history ends a minute ago: 17,250.
    events = re.search(r"errors\.min_events: (\d+) events over the last 1800s", out)
    assert events is not None, out
    assert 17_000 <= int(events.group(1)) <= 17_400
    assert "github acme/ck: readable and writable (propose mode)" in out
    assert f"slack channel {CHANNEL}: the bot reads it" in out
    assert out.rstrip().endswith("all checks passed")


@pytest.mark.parametrize(
    ("change", "line"),
    [
        pytest.param(
            {"bad": "sum(increase(ck_errors_total[$step])"},
            "FAIL services.ck.slis.errors.bad: Prometheus at",
            id="promql-typo",
        ),
        pytest.param(
            {"total": "ck_requestz_total"},
            "FAIL services.ck.slis.errors.total: returns no series",
            id="no-series",
        ),
        pytest.param(
            {"permissions": "read"},
            "FAIL github acme/ck: no push permission on the repository; propose mode opens",
            id="read-only-token",
        ),
        pytest.param(
            {"scopes": "chat:write,channels:history"},
            "FAIL slack token: missing scope(s) files:write",
            id="slack-scope-missing",
        ),
        pytest.param(
            {"channel": "C0WRONG99"},
            "FAIL slack: Slack conversations.history rejected: channel_not_found",
            id="wrong-channel",
        ),
    ],
)
async def test_each_misconfiguration_fails_with_its_line(
    prometheus: PrometheusServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    line: str,
) -> None:
    """One thing wrong: exit code 1 and a FAIL line naming it; the rest still checked."""
    code, out = await _check(tmp_path, prometheus, capsys, **change)
    assert code == 1, out
    assert line in out, out
    assert "1 check(s) failed" in out, out


async def test_read_only_token_passes_in_observe_mode(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Observe mode opens no PR, so read access is enough."""
    code, out = await _check(tmp_path, prometheus, capsys, permissions="read", mode="observe")
    assert code == 0, out
    assert "github acme/ck: readable (observe mode: no write needed)" in out


async def test_a_step_shorter_than_the_scrape_names_the_smallest_that_works(
    prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 5 s step over 15 s scrapes: the SLI, the interval found and the smallest step."""
    code, out = await _check(tmp_path, prometheus, capsys, step="5s")
    assert "WARN services.ck.slis.errors.interval: SLI 'errors'" in out
    assert "scrape interval found, 15s; the smallest step that works is 15s" in out
    assert code == 0, out  # widened, so it works: a warning, not a failure


def test_unreachable_prometheus_exits_non_zero_naming_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rearguard check` with nothing listening at the URL: non-zero, the URL in the line."""
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    config = _config(tmp_path / "r.toml", url, "http://127.0.0.1:9/", "http://127.0.0.1:9/api/")
    assert main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL prometheus: Prometheus at {url} is unreachable" in out, out


def test_a_broken_config_fails_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The loader's error, shown as the config check's line; exit code 2."""
    config = tmp_path / "r.toml"
    config.write_text("[services.x]\nrepo = 'acme/x'\n")
    assert main(["check", "--config", str(config)]) == 2
    assert "FAIL config:" in capsys.readouterr().out
