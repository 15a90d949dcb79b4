"""Prometheus as a `MetricsSource`: range queries over `/api/v1/query_range`, errors mapped here.

This module owns the only conversation with Prometheus. It uses `prometheus-api-client`
(synchronous, built on `requests`) in a worker thread, with an explicit timeout and no urllib3
retries: retrying is the caller's loop's decision, and a library that sleeps through three
back-offs would hide an outage from it. Everything foreign is mapped at this edge::

    connection refused, DNS, timeout, HTTP 5xx/408/429  ->  SourceUnavailable
    HTTP 400 (bad PromQL), 422 (cannot execute), other 4xx, over 11,000 points,
    an answer that is not a Prometheus matrix           ->  QueryRejected

Messages name the query and carry Prometheus' own error text; header values (bearer tokens)
and URL credentials are scrubbed from every message.

The library rounds `start` and `end` to whole seconds before sending (`round(ts)`), so a
query's first and last evaluation times can move by up to half a second; `step` is sent as is.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from observer.sources import MetricsError, QueryRejected, Sample, Series, SourceUnavailable

MAX_POINTS = 11_000
"""Prometheus refuses a range whose `(end - start) / step` exceeds this; we refuse it first."""

# The library reports a non-200 answer only as text: "HTTP Status Code 400 (b'{...}')".
_STATUS_MESSAGE = re.compile(r"HTTP Status Code (\d+) \((b(?:'.*'|\".*\"))\)\Z", re.DOTALL)
_RETRY_LATER = frozenset({408, 429, 499})
_MAX_BODY_CHARS = 500
_MIN_SECRET_CHARS = 6


class MalformedMatrix(ValueError):
    """An answer that is not a float matrix; `query_range` reports it as `QueryRejected`."""


class PrometheusSource:
    """Answers range queries from one Prometheus server; close it (or use `async with`)."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, headers: dict[str, str] | None = None
    ) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._safe_url = _redact_url(self._url)
        self._secrets = _secrets(headers or {}, self._url)
        session = requests.Session()
        session.trust_env = False  # no proxies, netrc or CA bundle picked up from the environment
        self._client = PrometheusConnect(
            url=self._url,
            headers=dict(headers or {}),
            # total=0: one attempt; read=False re-raises read timeouts as themselves (as
            # requests' own default does) so they are reported as timeouts.
            retry=Retry(total=0, read=False),
            timeout=timeout,  # type: ignore[arg-type]  # annotated int; requests takes float
            session=session,
        )

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at `start, start+step, …, end` in a worker thread.

        `start` and `end` reach Prometheus rounded to whole seconds (the library's doing).
        """
        _check_range(query, start, end, step)
        result = await asyncio.to_thread(self._fetch, query, start, end, step)
        try:
            return parse_matrix(result)
        except MalformedMatrix as exc:
            where = f"Prometheus at {self._safe_url}"
            message = f"{where} answered {query!r} with something other than a matrix: {exc}"
            raise self._error(QueryRejected, message) from exc

    def close(self) -> None:
        """Release the pooled HTTP connections."""
        self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fetch(self, query: str, start: float, end: float, step: float) -> object:
        """One blocking request returning `data.result`; foreign exceptions are mapped here."""
        where = f"Prometheus at {self._safe_url}"
        try:
            result: object = self._client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=repr(float(step)),
                # Also bound the evaluation on the server, so it gives up when we do.
                params={"timeout": repr(float(self._timeout))},
            )
        except PrometheusApiClientException as exc:
            kind, message = _http_error(str(exc), where, query)
            raise self._error(kind, message) from exc
        except (requests.JSONDecodeError, KeyError, TypeError) as exc:
            message = f"{where} answered {query!r} with no JSON data.result: {exc!r}"
            raise self._error(QueryRejected, message) from exc
        except requests.Timeout as exc:
            message = f"{where} did not answer {query!r} within {self._timeout}s"
            raise self._error(SourceUnavailable, message) from exc
        except requests.RequestException as exc:
            message = f"{where} is unreachable for {query!r}: {_root_reason(exc)}"
            raise self._error(SourceUnavailable, message) from exc
        return result

    def _error(self, kind: type[MetricsError], message: str) -> MetricsError:
        """Build the error with every secret scrubbed from its message."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return kind(message)


def parse_matrix(result: object) -> list[Series]:
    """Turn the `data.result` of a matrix answer into `Series`.

    Values arrive as strings; "NaN", "+Inf" and "-Inf" become the matching floats. Anything
    that is not a float matrix (including native histograms) raises `MalformedMatrix`.
    """
    if not isinstance(result, list):
        raise MalformedMatrix(f"result is {type(result).__name__}, not a list of series")
    return [_parse_series(item) for item in result]


def _parse_series(item: object) -> Series:
    if not isinstance(item, Mapping):
        raise MalformedMatrix(f"series is {type(item).__name__}, not an object")
    metric = item.get("metric", {})
    if not isinstance(metric, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
    ):
        raise MalformedMatrix(f"series labels are not string pairs: {metric!r}")
    if "values" not in item:
        if "histograms" in item:
            raise MalformedMatrix(
                "native histogram samples are not supported; query a float expression "
                "such as histogram_quantile(...) or histogram_count(...)"
            )
        raise MalformedMatrix(f"series {dict(metric)!r} has no values")
    values = item["values"]
    if not isinstance(values, list):
        raise MalformedMatrix(f"values of {dict(metric)!r} are not a list")
    return Series(labels=dict(metric), samples=tuple(_parse_sample(v) for v in values))


def _parse_sample(pair: object) -> Sample:
    if not (isinstance(pair, list | tuple) and len(pair) == 2):  # noqa: PLR2004 (a [t, v] pair)
        raise MalformedMatrix(f"sample {pair!r} is not a [time, value] pair")
    t, value = pair
    if isinstance(t, bool) or not isinstance(t, int | float) or not isinstance(value, str):
        raise MalformedMatrix(f"sample {pair!r} is not [number, string]")
    try:
        # float() reads Prometheus' "NaN", "+Inf" and "-Inf" as they are.
        return Sample(t=float(t), value=float(value))
    except ValueError as exc:
        raise MalformedMatrix(f"sample {pair!r} has a value that is not a number") from exc


def _check_range(query: str, start: float, end: float, step: float) -> None:
    """Refuse what Prometheus would refuse, without a round trip."""
    if step <= 0:
        raise QueryRejected(f"step must be positive for {query!r}, got {step}")
    if end < start:
        raise QueryRejected(f"end {end} is before start {start} for {query!r}")
    if (end - start) / step > MAX_POINTS:
        points = int((end - start) / step) + 1
        raise QueryRejected(
            f"{query!r} from {start} to {end} every {step}s asks for {points} points; "
            f"Prometheus allows at most {MAX_POINTS} steps: widen the step or shorten the range"
        )


def _http_error(text: str, where: str, query: str) -> tuple[type[MetricsError], str]:
    """Rebuild status and body from the library's message and pick the error class."""
    match = _STATUS_MESSAGE.match(text)
    if match is None:
        return MetricsError, f"{where} failed on {query!r}: {text[:_MAX_BODY_CHARS]}"
    status = int(match[1])
    body = ast.literal_eval(match[2])
    detail = _error_detail(body if isinstance(body, bytes) else b"")
    message = f"{where} answered {query!r} with HTTP {status}: {detail}"
    if status >= 500 or status in _RETRY_LATER:  # noqa: PLR2004 (the 5xx class)
        return SourceUnavailable, message
    return QueryRejected, message


def _error_detail(body: bytes) -> str:
    """Prometheus' `errorType: error`, or the start of whatever else answered."""
    text = body.decode("utf-8", errors="replace")
    try:
        envelope = json.loads(text)
    except ValueError:
        return text[:_MAX_BODY_CHARS] or "(empty body)"
    if isinstance(envelope, dict) and "error" in envelope:
        return f"{envelope.get('errorType', 'error')}: {envelope['error']}"
    return text[:_MAX_BODY_CHARS]


def _root_reason(exc: BaseException) -> str:
    """The innermost cause ("ConnectionRefusedError: Connection refused"), not urllib3's prose."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _redact_url(url: str) -> str:
    """Hide `user:password@` in a URL, keeping the host."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _secrets(headers: Mapping[str, str], url: str) -> tuple[str, ...]:
    """Every header value, its long words (the token in "Bearer <token>") and URL credentials."""
    found: set[str] = set()
    parts = urlsplit(url)
    candidates = [*headers.values(), parts.username or "", parts.password or ""]
    for value in candidates:
        found.update(word for word in [value, *value.split()] if len(word) >= _MIN_SECRET_CHARS)
    return tuple(sorted(found, key=len, reverse=True))
