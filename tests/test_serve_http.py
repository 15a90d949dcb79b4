"""`rearguard serve` as a real process answers every error in the JSON error shape, those that
aiohttp's HTTP parser refuses before the app sees them included (oversized or too many headers,
bytes that are not HTTP), and counts them under fixed labels; a 405 keeps its `Allow` header.
Requests go over a raw socket, so nothing between the test and the server tidies them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serve_rig import serving

HEADER_LIMIT = 8190  # aiohttp's max_field_size and max_line_size


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`rearguard serve` for the module; its port."""
    with serving(tmp_path_factory.mktemp("serve"), {"REARGUARD_API_TOKEN": "api-test"}) as port:
        yield port


async def _refused(port: int, code: str) -> float:
    """`/metrics`' count of refused requests of no route for `code`."""
    _, _, body = await _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    line = f'rearguard_refused_requests_total{{reason="{code}",route="unmatched"}} '
    return sum(
        float(x.removeprefix(line)) for x in body.decode().splitlines() if x.startswith(line)
    )


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as is; the status, headers and body of the answer (0 if none came)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, {}, b""
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        body = await reader.readexactly(int(headers.get("Content-Length", "0")))
        return int(lines[0].split()[1]), headers, body
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, {}, b""
    finally:
        writer.close()


def _error(headers: dict[str, str], body: bytes) -> Any:
    assert headers["Content-Type"].startswith("application/json"), (headers, body)
    payload = json.loads(body)
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message"}
    return payload["error"]


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (HEADER_LIMIT + 10)
                     + b"\r\n\r\n", 431, "request_header_fields_too_large", id="long-header"),
        pytest.param(b"GET /" + b"a" * (HEADER_LIMIT + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     431, "request_header_fields_too_large", id="long-request-line"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
                     400, "bad_request", id="too-many-headers"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request",
                     id="tls-hello-on-http"),
    ],
)  # fmt: skip
async def test_what_the_http_parser_refuses_answers_json(
    served: int, request_: bytes, status: int, code: str
) -> None:
    """Requests aiohttp refuses before routing: the JSON error shape, a message of Rearguard's
    own (not the offending bytes), and a count under the route `unmatched`."""
    before = await _refused(served, code)
    got, headers, body = await _raw(served, request_)
    assert got == status, body
    error = _error(headers, body)
    assert error["code"] == code
    assert "aaaa" not in error["message"]
    assert await _refused(served, code) == before + 1


async def test_method_not_allowed_keeps_allow_when_served(served: int) -> None:
    """A 405 from the served app: JSON, and the `Allow` header the route takes."""
    got, headers, body = await _raw(served, b"DELETE /v1/deploys HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == 405
    assert set(headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    assert _error(headers, body)["code"] == "method_not_allowed"
