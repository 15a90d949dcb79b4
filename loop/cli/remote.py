"""The CLI's client of a running server's read routes: `POST /v1/query` and the Parquet exports.

DuckDB lets no other process open the store while `rearguard serve` holds it, so `rearguard
query`, `export` and `backtest` read through the server. Plain `urllib` (the CLI makes a handful
of calls); every failure is a `RemoteError` whose message names the URL and, for a refusal, the
server's error code and message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 60.0
"""Seconds to wait for an answer (a query is stopped by the server well before)."""
DEFAULT_URL = "http://127.0.0.1:8080"


class RemoteError(Exception):
    """The server could not be reached or refused; the message says which and names the URL."""


def _request(url: str, token: str | None, body: bytes | None = None) -> urllib.request.Request:
    if urlsplit(url).scheme not in {"http", "https"}:
        raise RemoteError(f"--url {url!r}: expected an http:// or https:// address")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - scheme checked


def _refusal(url: str, exc: urllib.error.HTTPError) -> RemoteError:
    try:
        error = json.loads(exc.read())["error"]
        said = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        said = exc.reason
    return RemoteError(f"{url} answered {exc.code} ({said})")


def _open(request: urllib.request.Request) -> Any:
    url = request.full_url
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as exc:
        raise _refusal(url, exc) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RemoteError(f"cannot reach the server at {url}: {reason}") from exc


def query(base: str, token: str | None, sql: str, params: list[Any] | None = None) -> Any:
    """The JSON answer of `POST {base}/v1/query` for `sql`."""
    body = json.dumps({"sql": sql, "params": params or []}).encode()
    with _open(_request(f"{base.rstrip('/')}/v1/query", token, body)) as response:
        return json.loads(response.read())


def download(base: str, token: str | None, view: str, dest: Path) -> Path:
    """`GET {base}/v1/export/{view}.parquet` into `dest`, written under a temporary name and
    renamed once complete."""
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    with _open(_request(f"{base.rstrip('/')}/v1/export/{view}.parquet", token)) as response:
        try:
            with partial.open("wb") as file:
                while chunk := response.read(256 * 1024):
                    file.write(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(dest)
    return dest
