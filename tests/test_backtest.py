"""`rearguard backtest` against a real Prometheus serving backfilled history.

A day of request and error counters is written as OpenMetrics text, turned into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics`, and served by the test's own Prometheus. The store
holds 50 recorded deploys; every tenth one raised the error ratio tenfold during its watch.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attribution.records import Deploy
from attribution.store import Store
from loop.cli.main import main
from tests.prometheus_server import PrometheusServer

pytestmark = pytest.mark.prometheus

SCRAPE = 15
RATE = 20.0  # requests per second
DEPLOYS = 50
SPACING = 1800  # a deploy every 30 minutes
WATCH = 600


def _openmetrics(start: int, end: int, bad_windows: list[tuple[int, int]]) -> str:
    """Counters of requests and errors every 15 s; a 5% error ratio inside `bad_windows`."""
    lines = [
        "# TYPE bt_requests counter",
    ]
    errors = ["# TYPE bt_errors counter"]
    requests = err = 0.0
    for t in range(start, end, SCRAPE):
        ratio = 0.05 if any(a <= t < b for a, b in bad_windows) else 0.005
        requests += RATE * SCRAPE
        err += RATE * SCRAPE * ratio
        lines.append(f'bt_requests_total{{service="bt"}} {requests} {t}')
        errors.append(f'bt_errors_total{{service="bt"}} {err} {t}')
    return "\n".join([*lines, *errors, "# EOF", ""])


def _without_store(
    history: tuple[PrometheusServer, list[float]], tmp_path: Path
) -> tuple[Path, list[float]]:
    """A config on `history`'s Prometheus whose store does not exist, and the deploy times."""
    server, times = history
    config = tmp_path / "rearguard.toml"
    _config(config, server.url, tmp_path / "absent.duckdb")
    return config, times


def _config(path: Path, prometheus_url: str, store: Path) -> None:
    path.write_text(
        f"""
[server]
store = "{store}"
[prometheus]
url = "{prometheus_url}"
[services.bt]
repo = "acme/bt"
step = "30s"
watch = "10m"
baseline = "10m"
seasonal = []
[services.bt.slis.errors]
bad = 'sum(increase(bt_errors_total{{service="bt"}}[$step]))'
total = 'sum(increase(bt_requests_total{{service="bt"}}[$step]))'
"""
    )


@pytest.fixture(scope="module")
def history(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, list[float]]]:
    """A Prometheus serving 26 hours of backfilled counters, and the 50 deploy times."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian package `prometheus`"
    workdir = tmp_path_factory.mktemp("backfilled")
    now = int(time.time()) // 60 * 60
    start = now - 26 * 3600
    deploys = [float(start + 3600 + i * SPACING) for i in range(DEPLOYS)]
    bad = [(int(d), int(d) + WATCH) for i, d in enumerate(deploys) if i % 10 == 9]
    source = workdir / "history.om"
    source.write_text(_openmetrics(start, now - 60, bad))
    server = PrometheusServer([], workdir=workdir)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(server.data_dir)],
        check=True,
        capture_output=True,
    )
    server.start()
    yield server, deploys
    server.stop()


async def _record(store_path: Path, times: list[float]) -> None:
    store = await Store.open(store_path)
    for i, t in enumerate(times):
        deploy = Deploy(f"bt-{i:02d}", "bt", "production", f"{i:040x}", t, "test", "acme/bt")
        await store.watches.record_deploy(deploy, "healthy", t)
    await store.close()


def test_backtest_prints_one_verdict_per_recorded_deploy(
    history: tuple[PrometheusServer, list[float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """50 deploys in the store give 50 verdict lines; the five bad ones are the regressed ones."""
    server, times = history
    store_path = tmp_path / "store.duckdb"
    asyncio.run(_record(store_path, times))
    config = tmp_path / "rearguard.toml"
    _config(config, server.url, store_path)
    assert main(["backtest", "--config", str(config), "--service", "bt", "--since", "30h"]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("bt-")]
    assert len(lines) == DEPLOYS
    regressed = sorted(line.split()[0] for line in lines if " regressed " in line)
    assert regressed == [f"bt-{i:02d}" for i in range(DEPLOYS) if i % 10 == 9]
    assert all(" healthy " in line for line in lines if line.split()[0] not in regressed)
    assert f"{DEPLOYS}/{DEPLOYS}" in err  # the progress bar reached the end
    assert "50 deploy(s): 45 healthy, 5 regressed" in out


def test_backtest_at_given_times_and_bad_input(
    history: tuple[PrometheusServer, list[float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deploy times on the command line are replayed without a store; a bad time is refused."""
    config, times = _without_store(history, tmp_path)
    args = ["backtest", "--config", str(config), "--service", "bt"]
    assert main([*args, "--at", f"{times[9]:.0f}", "--at", f"{times[10]:.0f}"]) == 0
    out, _ = capsys.readouterr()
    verdicts = [line.split()[3] for line in out.splitlines() if line.startswith("at-")]
    assert verdicts == ["regressed", "healthy"]
    assert main([*args, "--at", "yesterday"]) == 2
    assert "expected ISO 8601" in capsys.readouterr().err
    assert not (tmp_path / "absent.duckdb").exists()
    assert main(["backtest", "--config", str(config), "--service", "nope"]) == 2


def test_backtest_json_holds_every_verdicts_numbers_for_every_service(
    history: tuple[PrometheusServer, list[float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --service every configured service is replayed; --json keeps the counts, rates
    and statistic of each verdict, the healthy ones too."""
    config, times = _without_store(history, tmp_path)
    twin = config.read_text().split("[services.bt]", 1)[1].replace("services.bt.", "services.bt2.")
    config.write_text(config.read_text() + "[services.bt2]" + twin)
    at = ["--at", f"{times[9]:.0f}", "--at", f"{times[10]:.0f}"]
    assert main(["backtest", "--config", str(config), "--json", *at]) == 0
    document = json.loads(capsys.readouterr().out)
    rows = [(d["service"], d["verdict"]) for d in document["deploys"]]
    assert rows == [("bt", "regressed"), ("bt", "healthy"), ("bt2", "regressed"),
                    ("bt2", "healthy")]  # fmt: skip
    for deploy in document["deploys"]:
        (sli,) = deploy["slis"]
        assert sli["sli"] == "errors"
        assert sli["watch_total"] > 0
        assert sli["baseline_total"] > 0
        assert sli["threshold"] > 0
    healthy = document["deploys"][1]["slis"][0]
    assert healthy["watch_bad"] / healthy["watch_total"] == pytest.approx(0.005, rel=0.2)
    assert document["unjudged"] == []


def test_backtest_exits_non_zero_when_a_query_fails(
    history: tuple[PrometheusServer, list[float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A deploy whose SLI could not be queried is not judged: exit 1, and stderr names it."""
    config, times = _without_store(history, tmp_path)
    config.write_text(config.read_text().replace("[$step]))'", "[$step])'", 1))
    args = ["backtest", "--config", str(config), "--service", "bt", "--at", f"{times[3]:.0f}"]
    assert main([*args, "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["unjudged"] == [f"at-{times[3]:.0f}"]
    assert "1 deploy(s) could not be judged because a query failed" in err
