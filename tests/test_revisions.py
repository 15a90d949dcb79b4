"""Revision mapping: what a deploy tool knows (an image tag, a label's or annotation's value) to
the application repository's commit. The pure decisions table-driven; then `/v1/deploys` through
the app, githubkit and the GitHub stand-in holding the repository, its tags and commits; then the
shipped Argo CD notification, rendered as Argo CD would for an `on-deployed` sync."""

from __future__ import annotations

import io
import json
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loop.api.app import build_app
from loop.api.fields import IngestError
from loop.api.revisions import Candidate, candidates, image_tag, revision_of
from loop.clock import ManualClock
from loop.config import ConfigError, RevisionSettings, ServiceSettings, settings_from
from observer.simulated import SimulatedSource
from rollback.console import ConsoleNotifier
from rollback.github import GitHubForge
from tests.api_rig import API_TOKEN, START, Client, bearer, table_counts
from tests.argo_rig import Unsupported, render_go_template
from tests.fakes.github import FakeGitHub
from tests.shared_fixtures import shared_fixtures_dir

ROOT = Path(__file__).resolve().parent.parent
SHOP = {"image": "ghcr.io/acme/shop"}


def _service(**revisions: str) -> ServiceSettings:
    return ServiceSettings("shop", "acme/shop", (), revisions=RevisionSettings(**revisions))


@pytest.mark.parametrize(
    ("image", "rule", "tag"),
    [
        ("ghcr.io/acme/shop:3f2a9c1", {}, "3f2a9c1"),
        ("ghcr.io/acme/shop:v1.4.2", SHOP, "v1.4.2"),
        ("localhost:5000/shop:v2@sha256:" + "a" * 64, {}, "v2"),
        ("ghcr.io/acme/shop:sha-3f2a9c1", {"tag_pattern": r"sha-(?P<ref>[0-9a-f]+)"}, "3f2a9c1"),
        ("ghcr.io/acme/shop:v1.4.2", {"tag_pattern": r"v\d+\.\d+\.\d+"}, "v1.4.2"),
    ],
)  # fmt: skip
def test_image_tag_is_the_revision(image: str, rule: dict[str, str], tag: str) -> None:
    assert image_tag(image, RevisionSettings(**rule), "image") == tag


@pytest.mark.parametrize(
    ("image", "rule", "status", "says"),
    [
        ("ghcr.io/acme/shop", {}, 400, "has no tag"),
        ("localhost:5000/shop", {}, 400, "has no tag"),
        ("ghcr.io/acme/shop@sha256:" + "b" * 64, {}, 400, "a digest names no commit"),
        ("ghcr.io/acme/cart:3f2a9c1", SHOP, 422, "not the service's 'ghcr.io/acme/shop'"),
        ("ghcr.io/acme/shop:latest", {"tag_pattern": r"sha-(?P<ref>.+)"}, 422, "does not match"),
    ],
)  # fmt: skip
def test_image_without_a_usable_tag_is_refused(
    image: str, rule: dict[str, str], status: int, says: str
) -> None:
    with pytest.raises(IngestError) as caught:
        image_tag(image, RevisionSettings(**rule), "image")
    assert caught.value.status == status
    assert says in caught.value.message


SHA40 = "3f2a9c1" + "0" * 33


@pytest.mark.parametrize(
    ("revision", "tried"),
    [
        (SHA40, [Candidate(SHA40, f"commit {SHA40}")]),
        ("3f2a9c1", [Candidate("refs/tags/3f2a9c1", "tag 3f2a9c1"),
                     Candidate("3f2a9c1", "commit prefix 3f2a9c1")]),
        ("v1.4.2", [Candidate("refs/tags/v1.4.2", "tag v1.4.2")]),
        ("abc", [Candidate("refs/tags/abc", "tag abc")]),  # too short to be a commit prefix
    ],
)  # fmt: skip
def test_candidates_in_order(revision: str, tried: list[Candidate]) -> None:
    assert list(candidates(revision, "revision")) == tried


@pytest.mark.parametrize("revision", ["../main", "-x", "a b", "", "v1?x", "x" * 129])
def test_a_revision_that_could_move_a_url_is_refused(revision: str) -> None:
    with pytest.raises(IngestError) as caught:
        candidates(revision, "revision")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ({"sha": SHA40}, None),
        ({}, None),
        ({"revision": "v1.4.2"}, ("v1.4.2", "revision")),
        ({"image": "ghcr.io/acme/shop:v1"}, ("v1", "image")),
        ({"images": ["docker.io/redis:7", "ghcr.io/acme/shop:v1"]}, ("v1", "images[1]")),
    ],
)  # fmt: skip
def test_revision_of_a_body(body: dict[str, Any], found: tuple[str, str] | None) -> None:
    assert revision_of(body, _service(**SHOP)) == found


@pytest.mark.parametrize(
    ("body", "rule", "status"),
    [
        ({"sha": SHA40, "revision": "v1"}, SHOP, 400),
        ({"images": ["docker.io/redis:7"]}, SHOP, 422),
        ({"images": ["a/b:1", "c/d:2"]}, {}, 422),  # which one is the service's?
        ({"images": [1]}, SHOP, 400),
    ],
)  # fmt: skip
def test_revision_of_a_body_refused(
    body: dict[str, Any], rule: dict[str, str], status: int
) -> None:
    with pytest.raises(IngestError) as caught:
        revision_of(body, _service(**rule))
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"tag_pattern": "("}, "not a regular expression"),
        ({"tag_pattern": "sha-([0-9a-f]+)"}, "(?P<ref>"),
        ({"image": "x", "tags": "y"}, "unknown key(s) tags"),
    ],
)  # fmt: skip
def test_revisions_config_refused(table: dict[str, str], says: str) -> None:
    data = {"services": {"shop": {"repo": "acme/shop", "slis": {"e": {"bad": "a", "total": "b"}},
                                  "revisions": table}}}  # fmt: skip
    with pytest.raises(ConfigError, match=None) as caught:
        settings_from(data, {}, "t")
    assert says in str(caught.value)


def test_example_config_names_revisions() -> None:
    """The example config's checkout reads its image's tag (the README's worked example)."""
    path = ROOT / "deploy" / "rearguard.example.toml"
    settings = settings_from(tomllib.loads(path.read_text()), {}, str(path))
    checkout = settings.service("checkout")
    assert checkout is not None
    assert checkout.revisions == RevisionSettings(image="ghcr.io/acme/checkout")


# -- through the app -----------------------------------------------------------------------------


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", repo="acme/shop")
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def client(tmp_path: Path, github: FakeGitHub, aiohttp_client: Any) -> AsyncIterator[Client]:
    services = {"shop": {
        "repo": "acme/shop", "revisions": {"image": "ghcr.io/acme/shop"},
        "slis": {"errors": {"bad": "sum(bad)", "total": "sum(total)"}},
    }}  # fmt: skip
    settings = settings_from(
        {"server": {"store": str(tmp_path / "store.duckdb")}, "services": services},
        {"REARGUARD_API_TOKEN": API_TOKEN}, "t",
    )  # fmt: skip
    forge = GitHubForge(github.url, github.token, timeout=5)
    clients = (SimulatedSource(), forge, ConsoleNotifier(io.StringIO()))
    app = build_app(settings, clock=ManualClock(START), clients=clients, scheduler=False)
    yield await aiohttp_client(app)
    await forge.aclose()


async def _deploys(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/v1/deploys", headers=bearer())
    deploys: list[dict[str, Any]] = (await response.json())["deploys"]
    return deploys


async def test_tag_prefix_and_image_map_to_the_application_commit(
    client: Client, github: FakeGitHub
) -> None:
    """A tag (annotated too), a sha prefix and an image each record the commit they name."""
    tagged = github.commit({"a.py": "1\n"}, "Release 1.4.2")
    github.git("tag", "-a", "v1.4.2", "-m", "v1.4.2", tagged)
    later = github.commit({"a.py": "2\n"}, "Faster checkout")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"revision": "v1.4.2"}, tagged),
        ({"revision": later[:7]}, later),
        ({"image": f"ghcr.io/acme/shop:{later[:9]}"}, later),
        ({"images": ["docker.io/redis:7", "ghcr.io/acme/shop:v1.4.2"]}, tagged),
    ]
    for n, (named, sha) in enumerate(cases):
        body = {"service": "shop", "environment": "production", "finished_at": START + n, **named}
        response = await client.post("/v1/deploys", json=body, headers=bearer())
        assert response.status == 202, await response.text()
        deploy_id = (await response.json())["id"]
        view = await (await client.get(f"/v1/deploys/{deploy_id}", headers=bearer())).json()
        assert view["sha"] == sha, (named, view)


async def test_unresolvable_revision_is_refused_naming_what_was_tried(
    client: Client, github: FakeGitHub
) -> None:
    """422 naming the tag and the commit prefix tried; not a row written."""
    github.commit({"a.py": "1\n"}, "One")
    before = await table_counts(client)
    bodies = [
        ({"revision": "abcdef12"}, "tried tag abcdef12, commit prefix abcdef12"),
        ({"image": "ghcr.io/acme/shop:v9.9.9"}, "tried tag v9.9.9"),
        ({"image": "ghcr.io/acme/cart:v1"}, "not the service's"),
        ({"image": "ghcr.io/acme/shop"}, "has no tag"),
    ]
    for named, says in bodies:
        body = {"service": "shop", "environment": "production", **named}
        response = await client.post("/v1/deploys", json=body, headers=bearer())
        assert 400 <= response.status < 500, await response.text()
        assert says in (await response.json())["error"]["message"]
    assert await table_counts(client) == before


async def test_revision_is_not_looked_up_without_the_token(
    client: Client, github: FakeGitHub
) -> None:
    """The token is checked before GitHub is asked anything."""
    asked = len(github.requests)
    body = {"service": "shop", "environment": "production", "revision": "v1"}
    response = await client.post("/v1/deploys", json=body, headers=bearer("wrong"))
    assert response.status == 401
    assert len(github.requests) == asked


# -- Argo CD notifications -----------------------------------------------------------------------

NOTIFICATIONS = ROOT / "deploy" / "argocd" / "argocd-notifications-cm.yaml"


def _notifications() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(NOTIFICATIONS.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("v1", "ConfigMap")
    return manifest


def _application(config_sha: str, image: str) -> dict[str, Any]:
    """An Argo CD Application after a successful sync of the config repository's `config_sha`
    (the fields the catalog's trigger and the shipped template read)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop-prod", "namespace": "argocd", "annotations": {
            "notifications.argoproj.io/subscribe.on-deployed.rearguard": "",
            "rearguard.dev/service": "shop", "rearguard.dev/environment": "production",
        }},
        "spec": {"source": {"repoURL": "https://github.com/acme/shop-config", "path": "prod"}},
        "status": {
            "sync": {"status": "Synced", "revision": config_sha},
            "health": {"status": "Healthy", "lastTransitionTime": "2026-12-02T18:00:30Z"},
            "operationState": {
                "phase": "Succeeded", "startedAt": "2026-12-02T18:00:00Z",
                "finishedAt": "2026-12-02T18:00:20Z",
                "syncResult": {"revision": config_sha},
            },
            "summary": {"images": ["docker.io/library/redis:7.2", image]},
        },
    }  # fmt: skip


@pytest.mark.shared_samples
def test_shipped_trigger_is_the_catalogs_on_deployed() -> None:
    """Same condition and once-per as Argo CD's catalog; it sends the shipped template."""
    catalog = yaml.safe_load(
        (shared_fixtures_dir() / "progressive-delivery/argo-cd/on-deployed.yaml").read_text()
    )
    data = _notifications()["data"]
    (ours,) = yaml.safe_load(data["trigger.on-deployed"])
    (theirs,) = catalog
    assert (ours["when"], ours["oncePer"]) == (theirs["when"], theirs["oncePer"])
    assert ours["send"] == ["rearguard-deployed"]
    assert "rearguard-deployed" in [k.removeprefix("template.") for k in data]


def test_template_subset_refuses_what_it_does_not_interpret() -> None:
    for template in ("{{if .a}}x{{end}}", "{{.a | upper}}", "{{$x := .a}}", "{{range .a}}{{end}}"):
        with pytest.raises(Unsupported):
            render_go_template(template, {"a": "v"})
    with pytest.raises(KeyError):
        render_go_template("{{.app.missing}}", {"app": {}})
    assert render_go_template("a {{- .b -}} \n c", {"b": "B"}) == "aBc"


async def test_argocd_on_deployed_records_the_application_commit(
    client: Client, github: FakeGitHub
) -> None:
    """Argo CD synced the config repository's commit; the notification's body, rendered from the
    shipped template, records the application repository's commit its image's tag names."""
    app_sha = github.commit({"shop.py": "fast = True\n"}, "Faster checkout")
    config_sha = "c0ffee" + "1" * 34  # the config repository's commit: not the application's
    manifest = _notifications()
    data = manifest["data"]
    service = yaml.safe_load(data["service.webhook.rearguard"])
    webhook = yaml.safe_load(data["template.rearguard-deployed"])["webhook"]["rearguard"]
    context = yaml.safe_load(data["context"])
    app = _application(config_sha, f"ghcr.io/acme/shop:{app_sha[:7]}")
    body = render_go_template(webhook["body"], {"app": app, "context": context,
                                                "serviceType": "webhook"})  # fmt: skip
    json.loads(body)  # the rendered body is JSON
    # `$rearguard-api-token` is read from argocd-notifications-secret.
    headers = {h["name"]: h["value"].replace("$rearguard-api-token", API_TOKEN)
               for h in service["headers"]}  # fmt: skip
    assert webhook["method"] == "POST"
    response = await client.post(webhook["path"], data=body.encode(), headers=headers)
    assert response.status == 202, await response.text()
    (deploy,) = await _deploys(client)
    assert deploy["sha"] == app_sha
    assert (deploy["service"], deploy["environment"]) == ("shop", "production")
    assert deploy["url"] == "https://argocd.example.com/applications/shop-prod"
    # Argo CD retries a delivery on 5xx: the same notification again is the same deploy.
    again = await client.post(webhook["path"], data=body.encode(), headers=headers)
    assert (await again.json())["created"] is False
