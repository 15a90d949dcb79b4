"""Flagger's canary webhooks (`POST /v1/webhooks/flagger/{hook}`): the answer each webhook type
gets for each verdict, the `[flagger]` config, refusals that record nothing, the deploy and its
events, and the shipped Canary validating against Flagger's CRD."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from loop.api.app import build_app
from loop.api.context import DEPS
from loop.api.flagger import HOOKS, Gate, Verdict, gate, verdict_of
from loop.clock import ManualClock
from loop.config import ConfigError, load_settings, settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.localgit import LocalGitForge
from tests.api_rig import table_counts
from tests.serve_rig import serving
from tests.shared_fixtures import REPO_ROOT, shared_fixtures_dir

API_TOKEN, FLAGGER_TOKEN = "api-token-for-tests", "flagger-token-for-tests"
SHA = "9f3c2a1b7e6d5c4b3a29187f6e5d4c3b2a190817"
PREVIOUS = "1111111aaaaaaa2222222bbbbbbb333333344444"
START = 1_790_000_000.0
Client = TestClient[web.Request, web.Application]

REGRESSED, PENDING, PASSED = Verdict.REGRESSED, Verdict.PENDING, Verdict.PASSED


@pytest.mark.parametrize(
    ("hook", "verdict", "expected"),
    [
        ("rollout", PENDING, Gate(200)),
        ("rollout", PASSED, Gate(200)),
        ("rollout", REGRESSED, Gate(409, "canary_regressed")),
        ("pre-rollout", REGRESSED, Gate(409, "canary_regressed")),
        ("confirm-rollout", PENDING, Gate(200)),
        ("confirm-rollout", REGRESSED, Gate(409, "canary_regressed")),
        ("confirm-traffic-increase", PENDING, Gate(200)),
        ("confirm-traffic-increase", REGRESSED, Gate(409, "canary_regressed")),
        ("confirm-promotion", PENDING, Gate(409, "verdict_pending")),
        ("confirm-promotion", PASSED, Gate(200)),
        ("confirm-promotion", REGRESSED, Gate(409, "canary_regressed")),
        ("rollback", PENDING, Gate(409, "no_rollback")),
        ("rollback", PASSED, Gate(409, "no_rollback")),
        ("rollback", REGRESSED, Gate(200)),
        ("post-rollout", REGRESSED, Gate(200)),
        ("event", REGRESSED, Gate(202)),
        ("event", PENDING, Gate(202)),
    ],
)
def test_each_webhook_type_answers_as_flagger_reads_it(
    hook: str, verdict: Verdict, expected: Gate
) -> None:
    """2xx passes a check, anything else fails it; `rollback` says yes with a 2xx."""
    assert gate(hook, verdict) == expected


@pytest.mark.parametrize(
    ("phase", "verdict"),
    [(None, PENDING), ("deployed", PENDING), ("observing", PENDING), ("healthy", PASSED),
     ("inconclusive", PASSED), ("regressed", REGRESSED), ("rolling_back", REGRESSED),
     ("reverted", REGRESSED), ("escalated", REGRESSED), ("recovered", REGRESSED)],
)  # fmt: skip
def test_watch_phases_read_as_verdicts(phase: str | None, verdict: Verdict) -> None:
    """A Watch still judging is pending; one that regressed stays regressed after the revert."""
    assert verdict_of(phase) is verdict


def _config(store: Path, flagger: dict[str, Any], version_label: str = "version") -> Any:
    sli = {"bad": "sum by (version) (bad)", "total": "sum by (version) (total)"}
    if version_label:
        sli["version_label"] = version_label
    service = {"repo": "acme/checkout", "environments": ["staging", "production"],
               "slis": {"errors": sli}}  # fmt: skip
    return {"server": {"store": str(store)}, "services": {"checkout": service},
            "flagger": flagger}  # fmt: skip


def test_canaries_map_to_services_and_environments(tmp_path: Path) -> None:
    """A canary names its service; the environment defaults to the service's first."""
    flagger = {"revision_key": "git-sha",
               "canaries": {"shop/checkout": {"service": "checkout"},
                            "shop/checkout-prod": {"service": "checkout",
                                                   "environment": "production"}}}  # fmt: skip
    settings = settings_from(_config(tmp_path, flagger), {}, "t")
    staging = settings.flagger.canary("shop", "checkout")
    assert staging is not None
    assert (staging.service, staging.environment) == ("checkout", "staging")
    prod = settings.flagger.canary("shop", "checkout-prod")
    assert prod is not None
    assert prod.environment == "production"
    assert settings.flagger.revision_key == "git-sha"
    assert settings.flagger.canary("other", "checkout") is None


@pytest.mark.parametrize(
    ("flagger", "version_label", "message"),
    [
        ({"canaries": {"shop/checkout": {"service": "nope"}}}, "version", "'nope' is no"),
        ({"canaries": {"shop/checkout": {"service": "checkout", "environment": "dev"}}},
         "version", "not 'dev'"),
        ({"canaries": {"checkout": {"service": "checkout"}}}, "version", "'namespace/name'"),
        ({"canaries": {"shop/checkout": {"service": "checkout"}}}, "", "no SLI with"),
        ({"canaries": {"shop/checkout": {"service": "checkout", "env": "x"}}}, "version",
         "expected a table"),
        ({"revision_key": "a b"}, "version", "expected a metadata key"),
        ({"token": "x"}, "version", "unknown key(s) token"),
    ],
)  # fmt: skip
def test_bad_flagger_tables_are_refused(
    tmp_path: Path, flagger: dict[str, Any], version_label: str, message: str
) -> None:
    """A typo, an unknown service or a service not in canary mode stops the load."""
    with pytest.raises(ConfigError, match=r"flagger") as caught:
        settings_from(_config(tmp_path, flagger, version_label), {}, "t")
    assert message in str(caught.value)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> Client:
    """The app, scheduler off (every Watch stays pending), canary shop/checkout mapped."""
    data = _config(tmp_path / "store.duckdb", {"canaries": {"shop/checkout": {
        "service": "checkout", "environment": "production"}}})  # fmt: skip
    settings = settings_from(data, {"REARGUARD_API_TOKEN": API_TOKEN}, "t")
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "repo"), ConsoleNotifier(io.StringIO()))
    app = build_app(settings, clock=ManualClock(START), clients=clients, scheduler=False)
    return await aiohttp_client(app)


def payload(name: str = "checkout", **metadata: str) -> dict[str, Any]:
    """Flagger's `CanaryWebhookPayload` as `CallWebhook` marshals it."""
    fields = {"token": API_TOKEN, "revision": SHA, "previous_revision": PREVIOUS, **metadata}
    return {"name": name, "namespace": "shop", "phase": "Progressing", "checksum": "85d557f47b",
            "metadata": {k: v for k, v in fields.items() if v}}  # fmt: skip


async def post(client: Client, hook: str, body: Any, **headers: str) -> Any:
    # As Flagger's callWebhook sends it: a POST of the JSON with only Content-Type set.
    response = await client.post(
        f"/v1/webhooks/flagger/{hook}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )  # fmt: skip
    return response.status, await response.json()


async def test_first_webhook_records_the_deploy_and_answers_while_pending(client: Client) -> None:
    """The first call records one deploy of the canary's commit; while its Watch judges,
    checks pass, promotion waits and no rollback is asked for; events are kept, no token."""
    status, answer = await post(client, "confirm-rollout", payload())
    assert status == 200, answer
    assert answer["verdict"] == "pending"
    deploy_id = answer["deploy"]
    assert (await post(client, "rollout", payload()))[0] == 200
    status, answer = await post(client, "confirm-promotion", payload())
    assert (status, answer["error"]["code"]) == (409, "verdict_pending")
    assert deploy_id in answer["error"]["message"]
    status, answer = await post(client, "rollback", payload())
    assert (status, answer["error"]["code"]) == (409, "no_rollback")
    event = payload(eventType="Normal", eventMessage="Starting canary analysis for checkout.shop",
                    timestamp="1790000000000")  # fmt: skip
    assert (await post(client, "event", event))[0] == 202
    store = client.app[DEPS].store
    deploys = await store.watches.deploys(limit=10)
    assert [(d.id, d.sha, d.previous_sha, d.source, d.environment) for d in deploys] == [
        (deploy_id, SHA, PREVIOUS, "flagger", "production")
    ]
    view = await (
        await client.get(
            f"/v1/deploys/{deploy_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
    ).json()
    hooks = [(e["hook"], e["phase"], e["message"]) for e in view["flagger"]]
    assert ("event", "Progressing", "Starting canary analysis for checkout.shop") in hooks
    assert {h for h, _, _ in hooks} == {"confirm-rollout", "rollout", "confirm-promotion",
                                        "rollback", "event"}  # fmt: skip
    bodies = await store.fetch("SELECT body FROM journal WHERE source = 'flagger'")
    assert bodies
    assert all(API_TOKEN not in str(body) for (body,) in bodies)


async def test_refusals_record_nothing(client: Client) -> None:
    """An unknown canary, a missing token or revision, an unknown type: a 4xx naming it, and
    not a row anywhere."""
    before = await table_counts(client)
    status, answer = await post(client, "rollout", payload(name="cart"))
    assert (status, answer["error"]["code"]) == (422, "unknown_canary")
    assert "shop/cart" in answer["error"]["message"]
    status, answer = await post(client, "rollout", payload(token=""))
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    status, answer = await post(client, "rollout", payload(token="wrong"))
    assert status == 401
    status, answer = await post(client, "rollout", payload(revision=""))
    assert (status, answer["error"]["message"]) == (400, "missing field `metadata.revision`")
    status, answer = await post(client, "rollout", payload(revision="main"))
    assert (status, answer["error"]["code"]) == (400, "bad_field")
    status, answer = await post(client, "canary-rollout", payload())
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = await post(client, "rollout", {**payload(), "name": 3})
    assert (status, answer["error"]["code"]) == (400, "bad_field")
    assert await table_counts(client) == before


async def test_a_bearer_header_or_the_flagger_token(
    aiohttp_client: AiohttpClient, tmp_path: Path, client: Client
) -> None:
    """A proxy's bearer header is taken; with REARGUARD_FLAGGER_TOKEN set, the API token is not."""
    status, _ = await post(client, "rollout", payload(token=""),
                           Authorization=f"Bearer {API_TOKEN}")  # fmt: skip
    assert status == 200
    data = _config(tmp_path / "own.duckdb", {"canaries": {"shop/checkout": {
        "service": "checkout"}}})  # fmt: skip
    env = {"REARGUARD_API_TOKEN": API_TOKEN, "REARGUARD_FLAGGER_TOKEN": FLAGGER_TOKEN}
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "r2"), ConsoleNotifier(io.StringIO()))
    own = await aiohttp_client(build_app(settings_from(data, env, "t"), clock=ManualClock(START),
                                         clients=clients, scheduler=False))  # fmt: skip
    assert (await post(own, "rollout", payload()))[0] == 401
    assert (await post(own, "rollout", payload(token=FLAGGER_TOKEN)))[0] == 200


async def test_no_token_configured_is_not_open(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Neither REARGUARD_FLAGGER_TOKEN nor the API token set: 503 naming them, never open."""
    data = _config(tmp_path / "s.duckdb", {"canaries": {"shop/checkout": {"service": "checkout"}}})
    clients = (SimulatedSource(), LocalGitForge(tmp_path / "r"), ConsoleNotifier(io.StringIO()))
    app = build_app(settings_from(data, {}, "t"), clock=ManualClock(START), clients=clients,
                    scheduler=False)  # fmt: skip
    status, answer = await post(await aiohttp_client(app), "rollout", payload())
    assert (status, answer["error"]["code"]) == (503, "not_configured")
    assert "REARGUARD_FLAGGER_TOKEN" in answer["error"]["message"]


@pytest.mark.shared_samples
def test_shipped_canary_validates_against_flaggers_crd() -> None:
    """deploy/flagger/canary.yaml against the Canary CRD's openAPIV3Schema; its webhooks point
    at routes of ours, with the metadata our parser reads."""
    documents = yaml.safe_load_all(
        (shared_fixtures_dir() / "progressive-delivery/flagger/crd.yaml").read_text()
    )
    (crd,) = [d for d in documents if d and d["metadata"]["name"] == "canaries.flagger.app"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    canary = yaml.safe_load((REPO_ROOT / "deploy/flagger/canary.yaml").read_text())
    assert canary["apiVersion"] == f"{crd['spec']['group']}/v1beta1"
    assert canary["kind"] == crd["spec"]["names"]["kind"]
    validator = jsonschema_rs.validator_for(schema)
    assert [str(e) for e in validator.iter_errors(canary)] == []
    broken = {**canary, "spec": {**canary["spec"], "analysis": {"interval": "1m"}}}
    assert not validator.is_valid(broken)  # the schema is one that can refuse
    for hook in canary["spec"]["analysis"]["webhooks"]:
        assert hook["url"].endswith(f"/v1/webhooks/flagger/{hook['type']}")
        assert hook["type"] in HOOKS
        assert {"token", "revision"} <= set(hook["metadata"])


def _uncommented(text: str, *starts: str) -> str:
    """`text` with the commented blocks opening with `starts` uncommented (to the blank line)."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = (inside and line.startswith("# ")) or line in starts
        lines.append(line.removeprefix("# ") if inside else line)
    return "\n".join(lines) + "\n"


def test_example_config_maps_a_canary(tmp_path: Path) -> None:
    """deploy/rearguard.example.toml's [flagger] block and canary-mode SLI, uncommented, load."""
    text = (REPO_ROOT / "deploy/rearguard.example.toml").read_text()
    path = tmp_path / "rearguard.toml"
    path.write_text(_uncommented(text, "# [services.checkout.slis.canary_errors]", "# [flagger]"))
    canary = load_settings(path, {}).flagger.canary("shop", "checkout")
    assert canary is not None
    assert (canary.service, canary.environment) == ("checkout", "production")


SERVED_CANARY = """
[services.podinfo]
repo = "acme/podinfo"
[services.podinfo.slis.errors]
bad = "sum by (version) (bad)"
total = "sum by (version) (total)"
version_label = "version"
[flagger.canaries."test/podinfo"]
service = "podinfo"
"""


@pytest.mark.shared_samples
def test_served_from_toml_takes_flaggers_documented_payload(tmp_path: Path) -> None:
    """`rearguard serve` from a TOML config takes the payload of Flagger's webhooks.md (its
    `metadata.token` as the Flagger token, a revision added) as Flagger sends it, within
    Flagger's default 10 s timeout."""
    docs = (shared_fixtures_dir() / "progressive-delivery/flagger/webhooks.md").read_text()
    block = re.search(r"Webhook payload \(HTTP POST\):\s*```javascript\n(.*?)```", docs, re.S)
    assert block is not None
    sample = json.loads(block.group(1))
    sample["metadata"]["revision"] = SHA
    env = {"REARGUARD_FLAGGER_TOKEN": sample["metadata"]["token"]}
    with serving(tmp_path, env, SERVED_CANARY) as port:

        def call(hook: str, body: Any) -> Any:
            response = requests.post(
                f"http://127.0.0.1:{port}/v1/webhooks/flagger/{hook}", data=json.dumps(body),
                headers={"Content-Type": "application/json"}, timeout=10,
            )  # fmt: skip
            return response.status_code, response.json()

        status, answer = call("rollout", sample)
        assert (status, answer["verdict"], answer["phase"]) == (200, "pending", "deployed")
        status, answer = call("confirm-promotion", sample)
        assert (status, answer["error"]["code"]) == (409, "verdict_pending")
        status, answer = call("rollout", {**sample, "name": "frontend"})
        assert (status, answer["error"]["code"]) == (422, "unknown_canary")
        assert "test/frontend" in answer["error"]["message"]
