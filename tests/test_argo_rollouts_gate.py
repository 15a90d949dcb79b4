"""The Argo Rollouts gate: the shipped AnalysisTemplates validate against Argo's CRD, and their
`web` metric, driven the way `webmetric.go` drives it against `POST /v1/gates/argo-rollouts`, is
Inconclusive while the canary Watch observes, Successful once it is healthy and Failed once it
regressed (a real Prometheus scraping the sample app, the GitHub stand-in mapping the canary's
image tag to its commit)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
import yaml

from loop.api.app import build_app
from loop.config import settings_from
from observer.prometheus import PrometheusSource
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.api_rig import API_TOKEN, Client, table_counts
from tests.argo_rig import Unsupported, condition, evaluate, json_path, measure, template_args
from tests.fakes.github import FakeGitHub
from tests.fakes.sample_app import SampleApp
from tests.loop_rig import loop_settings
from tests.prometheus_server import PrometheusServer
from tests.shared_fixtures import shared_fixtures_dir
from tests.waiting import wait_for_async

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = {
    "AnalysisTemplate": ROOT / "deploy" / "argo-rollouts" / "analysis-template.yaml",
    "ClusterAnalysisTemplate": ROOT / "deploy" / "argo-rollouts" / "cluster-analysis-template.yaml",
}
ENV = {"REARGUARD_API_TOKEN": API_TOKEN}


def _template(kind: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(TEMPLATES[kind].read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("argoproj.io/v1alpha1", kind)
    return manifest


def _metric(kind: str = "AnalysisTemplate") -> dict[str, Any]:
    (metric,) = _template(kind)["spec"]["metrics"]
    return metric  # type: ignore[no-any-return]


def _crd_schema() -> dict[str, Any]:
    path = shared_fixtures_dir() / "progressive-delivery/argo-rollouts/analysis-template-crd.yaml"
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["names"]["kind"] == "AnalysisTemplate"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.shared_samples
@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_shipped_template_validates_against_the_crd(kind: str) -> None:
    """The AnalysisTemplate whole; the ClusterAnalysisTemplate's spec, which Argo defines as
    the same type (its own CRD is not among the samples), against the same schema."""
    schema = _crd_schema()
    manifest = _template(kind)
    whole = jsonschema_rs.Draft7Validator(schema)
    spec = jsonschema_rs.Draft7Validator(schema["properties"]["spec"])
    if kind == "AnalysisTemplate":
        assert [e.message for e in whole.iter_errors(manifest)] == []
    assert [e.message for e in spec.iter_errors(manifest["spec"])] == []
    # The schema checks what it is given: a count that is neither a number nor a string fails.
    broken = {**manifest["spec"], "metrics": [{**_metric(kind), "count": [1]}]}
    assert not spec.is_valid(broken)


@pytest.mark.parametrize("kind", list(TEMPLATES))
@pytest.mark.parametrize(
    ("verdict", "phase"),
    [("healthy", "Successful"), ("regressed", "Failed"), ("observing", "Inconclusive"),
     ("inconclusive", "Inconclusive")],
)  # fmt: skip
def test_conditions_map_verdicts_to_phases(kind: str, verdict: str, phase: str) -> None:
    metric = _metric(kind)
    answer = {"verdict": verdict, "results": []}
    assert evaluate(metric, json_path(metric["provider"]["web"]["jsonPath"], answer)) == phase


def test_templates_are_the_same_gate() -> None:
    assert _template("AnalysisTemplate")["spec"] == _template("ClusterAnalysisTemplate")["spec"]


@pytest.mark.parametrize(
    "expression",
    ['result.verdict == "healthy" && result.x', "result.verdict in ['healthy']",
     'result.verdict == healthy', 'len(result) > 0'],
)  # fmt: skip
def test_condition_subset_refuses_the_rest(expression: str) -> None:
    with pytest.raises(Unsupported):
        condition(expression, {"verdict": "healthy"})


@pytest.mark.parametrize("path", ["{$.results[0]}", "{..verdict}", "{$.a[*]}"])
def test_json_path_subset_refuses_the_rest(path: str) -> None:
    with pytest.raises(Unsupported):
        json_path(path, {})


# -- the gate through the app, on a simulated source ---------------------------------------------


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await fake.start()
    yield fake
    await fake.close()


def _canary_service(canary: str, stable: str, **extra: Any) -> dict[str, Any]:
    """A service whose error-ratio SLI splits the sample app's series of `canary` (a prefix of
    the canary's commit, as its `service` label) from `stable`'s."""
    selector = f'service=~"{canary}|{stable}"'
    return {
        "repo": "acme/shop",
        "revisions": {"image": "ghcr.io/acme/shop"},
        "slis": {"http_errors": {
            "kind": "ratio", "version_label": "service", "min_events": 100,
            "bad": f'sum by (service) (increase(http_requests_total{{{selector},code=~"5.."}}[$step]))',  # noqa: E501
            "total": f"sum by (service) (increase(http_requests_total{{{selector}}}[$step]))",
        }},
        **extra,
    }  # fmt: skip


@pytest.fixture
async def simulated(
    tmp_path: Path, github: FakeGitHub, aiohttp_client: Any
) -> AsyncIterator[Client]:
    services = {
        "shop": _canary_service("none", "none"),
        "plain": {"repo": "acme/shop", "slis": {"e": {"bad": "sum(bad)", "total": "sum(total)"}}},
    }
    settings = settings_from(
        {"server": {"store": str(tmp_path / "store.duckdb")}, "services": services}, ENV, "t"
    )
    forge = GitHubForge(github.url, github.token, timeout=5)
    clients = (SimulatedSource(), forge, ConsoleNotifier(io.StringIO()))
    # The wall clock: two measurements at once are two instants, two deploy ids but for the gate.
    app = build_app(settings, clients=clients, scheduler=False)
    yield await aiohttp_client(app)
    await forge.aclose()


def _args(client: Client, **given: str) -> dict[str, str]:
    base = str(client.make_url("")).rstrip("/")
    return template_args(_template("AnalysisTemplate"),
                         {"rearguard-url": base, "api-token": API_TOKEN, **given})  # fmt: skip


async def test_first_measurement_starts_one_watch(simulated: Client, github: FakeGitHub) -> None:
    """The first measurement records the deploy of the tag's commit, Inconclusive while it
    observes; the next one reads the same Watch."""
    sha = github.commit({"shop.py": "1\n"}, "Faster")
    github.git("tag", "v1.4.2", sha)
    args = _args(simulated, service="shop", revision="v1.4.2")
    async with aiohttp.ClientSession() as session:
        # Two measurements at once (two AnalysisRuns of the same canary) make one deploy.
        measured = await asyncio.gather(*(measure(session, _metric(), args) for _ in range(2)))
        again = await measure(session, _metric(), args)
    assert {phase for phase, _ in [*measured, again]} == {"Inconclusive"}
    (first,) = [answer for _, answer in measured if answer["created"]]
    assert (first["verdict"], first["sha"]) == ("observing", sha)
    assert {answer["deploy"] for _, answer in [*measured, again]} == {first["deploy"]}
    assert again[1]["created"] is False
    deploys = (await (await simulated.get("/v1/deploys", headers={
        "Authorization": f"Bearer {API_TOKEN}"})).json())["deploys"]  # fmt: skip
    assert [d["sha"] for d in deploys] == [sha]


async def test_refused_measurements_are_errors_and_record_nothing(
    simulated: Client, github: FakeGitHub
) -> None:
    """A revision naming no commit, a service without a canary SLI, a wrong token: a 4xx that
    Argo counts as a measurement Error, and no row written."""
    sha = github.commit({"shop.py": "1\n"}, "Faster")
    before = await table_counts(simulated)
    cases = [
        (_args(simulated, service="shop", revision="v9.9.9"), "tried tag v9.9.9"),
        (_args(simulated, service="plain", revision=sha[:7]), "no SLI with `version_label`"),
        (_args(simulated, service="cart", revision=sha[:7]), "'cart' is not in the config"),
        ({**_args(simulated, service="shop", revision=sha[:7]), "api-token": "nope"},
         "wrong bearer token"),
    ]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for args, says in cases:
            phase, text = await measure(session, _metric(), args)
            assert phase == "Error"
            assert says in text
    assert await table_counts(simulated) == before


# -- acceptance: a real Prometheus, the sample app, the scheduler --------------------------------


@pytest.mark.prometheus
async def test_template_judges_canaries_healthy_then_regressed(
    tmp_path: Path,
    github: FakeGitHub,
    prometheus: PrometheusServer,
    sample_app: SampleApp,
    aiohttp_client: Any,
) -> None:
    """Two canaries of the same release line, each judged against its stable version: one stays
    at the stable error ratio (Inconclusive while observing, then Successful), the other's rises
    after its first measurement (Inconclusive, then Failed); neither is ever judged the other
    way."""
    calm = github.commit({"shop.py": "fast = True\n"}, "Faster checkout")
    github.git("tag", "v1.4.2", calm)
    broken = github.commit({"shop.py": "fast = None\n"}, "Faster checkout, again")
    names = {
        "calm": (calm[:7], f"argo-calm-stable-{calm[:7]}"),
        "broken": (broken[:7], f"argo-broken-stable-{broken[:7]}"),
    }
    for canary, stable in names.values():
        sample_app.configure(canary, rate=200.0, error_ratio=0.005)
        sample_app.configure(stable, rate=200.0, error_ratio=0.005)
    services = {f"argo-{key}": _canary_service(*pair, watch="16s") for key, pair in names.items()}
    for service in services.values():
        service["step"], service["baseline"] = "2s", "8s"
    settings = loop_settings(str(tmp_path / "store.duckdb"), prometheus.url, services, ENV)
    forge = GitHubForge(github.url, github.token, timeout=5)
    source = PrometheusSource(prometheus.url, timeout=3)
    clients = (source, forge, ConsoleNotifier(io.StringIO()))
    client = await aiohttp_client(build_app(settings, clients=clients))
    try:
        every = "|".join(n for pair in names.values() for n in pair)
        # Some seconds of every series (one sample a second) before the first measurement.
        series = f'http_requests_total{{service=~"{every}",code="200"}}'
        await prometheus.wait_for_data(f"count(count_over_time({series}[10s]) >= 6) == 4")
        phases: dict[str, list[str]] = {"calm": [], "broken": []}
        answers: dict[str, Any] = {}
        args = {
            "calm": _args(client, service="argo-calm", revision="v1.4.2"),
            "broken": _args(client, service="argo-broken", revision=broken[:7]),
        }
        async with aiohttp.ClientSession() as session:

            async def both_final() -> bool:
                for key in ("calm", "broken"):
                    if phases[key][-1:] in (["Successful"], ["Failed"]):
                        continue
                    phase, answers[key] = await measure(session, _metric(), args[key])
                    phases[key].append(phase)
                    if key == "broken" and len(phases[key]) == 1:
                        sample_app.configure(names["broken"][0], error_ratio=0.2)
                return all(p[-1] in {"Successful", "Failed"} for p in phases.values())

            started = time.monotonic()
            await wait_for_async(both_final, within=90, what="both canaries judged",
                                 interval=0.5, detail=lambda: str(phases))  # fmt: skip
            took = time.monotonic() - started
        for key, final in (("calm", "Successful"), ("broken", "Failed")):
            seen = phases[key]
            assert seen[0] == "Inconclusive", (key, seen)
            assert seen[-1] == final, (key, seen)
            assert set(seen[:-1]) == {"Inconclusive"}, (key, seen)
            # The answer carries the numbers: the canary judged against the stable version.
            (result,) = answers[key]["results"]
            assert result["mode"] == "canary", answers[key]
            assert result["watch_total"] > 0, answers[key]
        assert answers["broken"]["results"][0]["watch_bad"] > 0
        assert (answers["calm"]["sha"], answers["broken"]["sha"]) == (calm, broken)
        print(f"judged in {took:.1f}s: {phases}")  # noqa: T201 - the figure the report quotes
    finally:
        for pair in names.values():
            for name in pair:
                sample_app.forget(name)
        await client.close()
        await forge.aclose()
        await source.aclose()
