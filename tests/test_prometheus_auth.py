"""Prometheus behind auth: the real Prometheus behind an in-process HTTPS reverse proxy that, as
a Mimir gateway or an auth proxy would, answers 401 unless the request carries the credentials
and the tenant header; its certificate is signed by a CA made for the test (openssl), which
Rearguard trusts only through `ca_file`. Settings come from a config file and the environment,
as `rearguard serve`, `backtest` and `check` read them."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from loop.config import load_settings
from loop.prometheus import prometheus_source
from observer.sources import QueryRejected, SourceUnavailable
from tests.prometheus_server import PrometheusServer

pytestmark = pytest.mark.prometheus

TOKEN = "prom-bearer-secret-0123"
USER, PASSWORD = "rearguard", "basic-secret-4567"
TENANT = "tenant-1"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca, cert, key) PEM files."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl makes the test's certificates"
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "cert.pem", folder / "cert.key", folder / "cert.csr"
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "1", "-subj", "/CN=rearguard test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


def _authorized(request: web.Request) -> bool:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return request.headers.get("X-Scope-OrgID") == TENANT and request.headers.get(
        "Authorization"
    ) in {f"Bearer {TOKEN}", f"Basic {basic}"}


@pytest.fixture
async def proxy(prometheus: PrometheusServer, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS proxy to `prometheus` that refuses (401) requests without credentials and the
    tenant; (its URL, the CA bundle that trusts it)."""
    ca, cert, key = _certificates(tmp_path)
    async with aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.Response:
            if not _authorized(request):
                return web.json_response(
                    {"status": "error", "errorType": "unauthorized", "error": "no credentials"},
                    status=401,
                )
            url = f"{prometheus.url}{request.path}"
            async with upstream.get(url, params=request.query) as answer:
                body = await answer.read()
                return web.Response(body=body, status=answer.status,
                                    content_type="application/json")  # fmt: skip

        app = web.Application()
        app.router.add_get("/api/v1/{path:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"https://127.0.0.1:{port}", ca
        finally:
            await runner.cleanup()


def _config(tmp_path: Path, url: str, ca: Path | None, tenant: bool = True) -> Path:
    path = tmp_path / "rearguard.toml"
    headers = f'headers = {{ "X-Scope-OrgID" = "{TENANT}" }}\n' if tenant else ""
    ca_line = f'ca_file = "{ca}"\n' if ca else ""
    path.write_text(
        f'[prometheus]\nurl = "{url}"\n{headers}{ca_line}'
        "[services.a]\nrepo = 'acme/a'\n[services.a.slis.up]\nkind = 'gauge'\nquery = 'up'\n"
    )
    return path


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"REARGUARD_PROMETHEUS_TOKEN": TOKEN}, id="bearer"),
        pytest.param(
            {"REARGUARD_PROMETHEUS_USER": USER, "REARGUARD_PROMETHEUS_PASSWORD": PASSWORD},
            id="basic",
        ),
    ],
)
async def test_credentials_tenant_and_ca_reach_prometheus(
    proxy: tuple[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    """With the credentials from the environment, the tenant header and the CA bundle, queries
    are answered by the Prometheus behind the proxy."""
    url, ca = proxy
    settings = load_settings(_config(tmp_path, url, ca), env)
    async with prometheus_source(settings) as source:
        series = await source.query_range("vector(1)", 1_700_000_000, 1_700_000_030, 15)
    assert [s.value for s in series[0].samples] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("env", "tenant"),
    [
        pytest.param({}, True, id="no-credentials"),
        pytest.param({"REARGUARD_PROMETHEUS_TOKEN": TOKEN}, False, id="no-tenant"),
        pytest.param({"REARGUARD_PROMETHEUS_TOKEN": "wrong-token-999"}, True, id="wrong-token"),
    ],
)
async def test_without_them_the_proxy_refuses_and_no_secret_is_shown(
    proxy: tuple[str, Path], tmp_path: Path, env: dict[str, str], tenant: bool
) -> None:
    """401 without the credentials or the tenant: rejected, and the message holds no token."""
    url, ca = proxy
    settings = load_settings(_config(tmp_path, url, ca, tenant), env)
    async with prometheus_source(settings) as source:
        with pytest.raises(QueryRejected, match="HTTP 401") as caught:
            await source.query_range("vector(1)", 1_700_000_000, 1_700_000_030, 15)
    assert "wrong-token-999" not in str(caught.value)


async def test_a_server_certificate_not_in_the_bundle_is_refused(
    proxy: tuple[str, Path], tmp_path: Path
) -> None:
    """Without `ca_file` the test CA is not trusted: the query fails on the TLS handshake."""
    url, _ = proxy
    settings = load_settings(_config(tmp_path, url, None), {"REARGUARD_PROMETHEUS_TOKEN": TOKEN})
    async with prometheus_source(settings) as source:
        with pytest.raises(SourceUnavailable, match="unreachable") as caught:
            await source.query_range("vector(1)", 1_700_000_000, 1_700_000_030, 15)
    assert TOKEN not in str(caught.value)
