"""Session-wide servers: the sample app and a real Prometheus scraping it; the GitHub and Slack
stand-ins of the acting tests; the `shared_samples` marker's early skip.

Both servers live for the whole session (Prometheus takes seconds to start). `prometheus` is
function-scoped over that one process so that a test which stopped it (to watch Rearguard cope
with an outage) leaves the next test a running server with the same URL and history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.acting_rig import CHANNEL as ACTING_CHANNEL
from tests.acting_rig import TOKEN as ACTING_TOKEN
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.loop_rig import BASELINE as LOOP_BASELINE
from tests.loop_rig import STEP as LOOP_STEP
from tests.prometheus_server import PrometheusServer
from tests.shared_fixtures import shared_fixtures_dir
from tests.waiting import wait_for


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `shared_samples` skips (fails under CI) before any of its fixtures starts
    a server when the shared samples are missing, with the message every such skip shares."""
    if item.get_closest_marker("shared_samples") is not None:
        shared_fixtures_dir()


@pytest.fixture(scope="session")
def sample_app() -> Iterator[SampleApp]:
    """The sample app, serving `/metrics` from its own thread for the whole session."""
    app = SampleApp(seed=1)
    app.start_in_thread()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def prometheus_session(
    sample_app: SampleApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """One Prometheus process for the session, scraping the sample app every second."""
    target = urlsplit(sample_app.url).netloc
    server = PrometheusServer([target], workdir=tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prometheus(prometheus_session: PrometheusServer) -> PrometheusServer:
    """The session's Prometheus, restarted first if an earlier test stopped it."""
    prometheus_session.start()
    return prometheus_session


LOOP_SERVICES = {
    "e2e-regress": 200.0,
    "e2e-healthy": 200.0,
    "e2e-outage": 200.0,
    "e2e-crash": 200.0,
    "e2e-gate-act": 200.0,
    "e2e-gate-propose": 200.0,
    "e2e-gate-unknown": 200.0,
    "e2e-slack-lost-post": 200.0,
    "e2e-slack-lost-upload": 200.0,
    "e2e-slack-escape": 200.0,
    "e2e-slack-429": 200.0,
    "e2e-slack-buttons": 200.0,
    "e2e-slack-crash-busy": 200.0,
    "e2e-slack-crash-plot": 200.0,
    "e2e-slack-crash-click": 200.0,
    "e2e-gh-limit": 200.0,
    "e2e-gh-range": 200.0,
    "e2e-gh-records": 200.0,
    "e2e-gh-bot": 200.0,
    "e2e-gh-issue": 200.0,
    "e2e-gh-merged": 200.0,
    "e2e-gh-closed": 200.0,
    "e2e-gh-spec": 200.0,
    "e2e-provenance-copilot": 200.0,
    "e2e-flagger-regress": 200.0,
    "e2e-flagger-healthy": 200.0,
    "e2e-checks-app": 200.0,
    "e2e-checks-token": 200.0,
    "e2e-checks-held": 200.0,
}
"""Services of the end-to-end loop tests (requests per second at a 0.5% error ratio)."""


@pytest.fixture(scope="session")
def loop_traffic(sample_app: SampleApp) -> SampleApp:
    """Traffic for every loop-test service, started at once so their baselines build together."""
    for name, rate in LOOP_SERVICES.items():
        sample_app.configure(name, rate=rate, error_ratio=0.005)
    return sample_app


@pytest.fixture
def traffic(loop_traffic: SampleApp, prometheus: PrometheusServer) -> SampleApp:
    """The loop services' traffic, once Prometheus holds a full baseline of it: at the start of
    the session, and again after a test stopped Prometheus and left a gap in its history."""
    # A baseline's worth of samples (one a second) within the baseline and its first step's
    # window: the history a deploy made now is compared against, a missed scrape or two allowed.
    window, samples = LOOP_BASELINE + LOOP_STEP, LOOP_BASELINE
    services = "|".join(LOOP_SERVICES)
    # Counted by service: a canary's series (a `version` label) beside its service's are one.
    query = (
        "count by (service) (count_over_time("
        f'http_requests_total{{service=~"{services}",code="200"}}[{window}s]) >= {samples})'
    )
    wait_for(
        lambda: len(prometheus.instant(query)) == len(LOOP_SERVICES),
        within=120,
        what=f"{samples} samples of every loop service in Prometheus ({query})",
        interval=0.25,
        detail=lambda: f"log tail:\n{prometheus.log_tail()}",
    )
    return loop_traffic


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    """The GitHub stand-in of the acting tests (a module may define its own `github`)."""
    async with FakeGitHub(tmp_path / "gh", token=ACTING_TOKEN) as fake:
        yield fake


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The Slack stand-in, knowing the rollback channel of the acting tests."""
    async with FakeSlack(channels=[ACTING_CHANNEL]) as fake:
        yield fake
