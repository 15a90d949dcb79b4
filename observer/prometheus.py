"""Prometheus as a `MetricsSource`: range queries over `/api/v1/query_range`, errors mapped here.

This module owns the only conversation with Prometheus, spoken with aiohttp on the event loop:
one pooled `ClientSession` per source, a timeout on every query (and the same `timeout` sent
along, so Prometheus stops evaluating when we stop waiting), and no retries: retrying is the
caller's loop's decision, and a client that slept through back-offs would hide an outage from it.

No query waits for another one: the connection pool has no overall limit, so queries that hang
until their timeout (a slow service's expensive series, a Thanos store that stopped answering)
hold only their own connections. How many queries one Watch runs at once is the caller's bound
(`observer.sources.BoundedSource`, one per Watch step). Everything foreign is mapped at this edge::

    connection refused, DNS, timeout, HTTP 5xx/408/429/499  ->  SourceUnavailable
    HTTP 400 (bad PromQL), 422 (cannot execute), other 4xx, over 11,000 points,
    an answer that is not a Prometheus matrix               ->  QueryRejected

Messages name the query and carry Prometheus' own error text; header values (bearer tokens)
and URL credentials are scrubbed from every message. `start` and `end` are sent to the
millisecond, Prometheus' own resolution.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from observer.sources import MetricsError, QueryRejected, Sample, Series, SourceUnavailable

MAX_POINTS = 11_000
"""Prometheus refuses a range whose `(end - start) / step` exceeds this; we refuse it first."""

_RETRY_LATER = frozenset({408, 429, 499})
_MAX_BODY_CHARS = 500
_MIN_SECRET_CHARS = 6


class MalformedMatrix(ValueError):
    """An answer that is not a float matrix; `query_range` reports it as `QueryRejected`."""


class PrometheusSource:
    """Answers range queries from one Prometheus server; close it with `aclose` (or use
    `async with`). Its HTTP session is made on the first query, in the loop that runs it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._ca_file = ca_file
        self._timeout = timeout
        self._headers = dict(headers or {})
        parts = urlsplit(self._url)
        if (parts.username or parts.password) and "authorization" in map(str.lower, self._headers):
            # aiohttp refuses the pair on every request; say so once, here.
            raise ValueError("Prometheus credentials go in the URL or an Authorization header")
        self._safe_url = _redact_url(self._url)
        self._secrets = _secrets(self._headers, self._url)
        self._session: aiohttp.ClientSession | None = None

    @property
    def safe_url(self) -> str:
        """The base URL with any `user:password@` hidden, for messages."""
        return self._safe_url

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate `query` at `start, start+step, …, end`; at most `timeout` seconds."""
        _check_range(query, start, end, step)
        where = f"Prometheus at {self._safe_url}"
        params = {
            "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
            "step": repr(float(step)), "timeout": repr(float(self._timeout)),
        }  # fmt: skip
        try:
            async with self._client().get(f"{self._url}/api/v1/query_range", params=params) as r:
                status, body = r.status, await r.read()
        except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
            message = f"{where} did not answer {query!r} within {self._timeout}s"
            raise self._error(SourceUnavailable, message) from exc
        except aiohttp.ClientError as exc:
            message = f"{where} is unreachable for {query!r}: {_root_reason(exc)}"
            raise self._error(SourceUnavailable, message) from exc
        try:
            return parse_matrix(_result(status, body))
        except _Refused as exc:
            raise self._error(exc.kind, f"{where} answered {query!r} {exc}") from exc
        except MalformedMatrix as exc:
            message = f"{where} answered {query!r} with something other than a matrix: {exc}"
            raise self._error(QueryRejected, message) from exc

    async def aclose(self) -> None:
        """Release the pooled HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                # limit=0: no pool-wide cap that hung queries could fill (see the module doc).
                connector=aiohttp.TCPConnector(limit=0, ssl=self._tls()),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,  # no proxies or netrc picked up from the environment
            )
        return self._session

    def _tls(self) -> ssl.SSLContext | bool:
        """The CA bundle's context when one is given, else the system's trust store."""
        return ssl.create_default_context(cafile=self._ca_file) if self._ca_file else True

    def _error(self, kind: type[MetricsError], message: str) -> MetricsError:
        """Build the error with every secret scrubbed from its message."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return kind(message)


class _Refused(Exception):
    """An answer other than a successful one; `kind` says whether to retry."""

    def __init__(self, kind: type[MetricsError], message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _result(status: int, body: bytes) -> object:
    """`data.result` of a successful answer; `_Refused` for anything else."""
    if status != 200:  # noqa: PLR2004 (HTTP OK)
        retry = status >= 500 or status in _RETRY_LATER  # noqa: PLR2004 (the 5xx class)
        kind = SourceUnavailable if retry else QueryRejected
        raise _Refused(kind, f"with HTTP {status}: {_error_detail(body)}")
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise _Refused(QueryRejected, f"with no JSON data.result: {exc!r}") from exc
    if not isinstance(envelope, Mapping) or envelope.get("status") != "success":
        raise _Refused(QueryRejected, f"without success: {_error_detail(body)}")
    data = envelope.get("data")
    if not isinstance(data, Mapping) or "result" not in data:
        raise _Refused(QueryRejected, "with no JSON data.result")
    kind = data.get("resultType", "matrix")
    if kind != "matrix":
        raise MalformedMatrix(f"resultType is {kind!r}, not 'matrix'")
    return data["result"]


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
    """The innermost cause ("ConnectionRefusedError: Connection refused"), not aiohttp's prose."""
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
