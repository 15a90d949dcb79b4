"""Session-wide servers: the sample app and a real Prometheus scraping it.

Both live for the whole session (Prometheus takes seconds to start). `prometheus` is
function-scoped over that one process so that a test which stopped it (to watch Rearguard cope
with an outage) leaves the next test a running server with the same URL and history.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.acting_rig import CHANNEL as ACTING_CHANNEL
from tests.acting_rig import TOKEN as ACTING_TOKEN
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.fakes.slack import FakeSlack
from tests.prometheus_server import PrometheusServer


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
    "e2e-gh-limit": 200.0,
    "e2e-gh-range": 200.0,
    "e2e-gh-records": 200.0,
    "e2e-gh-bot": 200.0,
    "e2e-gh-issue": 200.0,
    "e2e-gh-merged": 200.0,
    "e2e-gh-closed": 200.0,
}
"""Services of the end-to-end loop tests (requests per second at a 0.5% error ratio)."""


@pytest.fixture(scope="session")
def traffic(sample_app: SampleApp, prometheus_session: PrometheusServer) -> SampleApp:
    """Traffic for every loop-test service, started at once so their baselines build together."""
    for name, rate in LOOP_SERVICES.items():
        sample_app.configure(name, rate=rate, error_ratio=0.005)
    time.sleep(22)  # a 20 s baseline of history, scraped every second
    return sample_app


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
