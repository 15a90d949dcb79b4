"""`PrometheusSource` against a real Prometheus scraping the sample app, plus canned answers.

Each test that reads the sample app's metrics owns a distinct `service` label, so tests share
one Prometheus without reading each other's traffic.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpServer

from observer.prometheus import MAX_POINTS, MalformedMatrix, PrometheusSource, parse_matrix
from observer.sources import QueryRejected, Sample, Series, SourceUnavailable
from tests.fakes.sample_app import SampleApp
from tests.prometheus_server import PrometheusServer, find_binary
from tests.shared_fixtures import load_json


def _just_after_now() -> float:
    """A whole second past now, so a rounded range end never falls before the first scrape."""
    return float(int(time.time()) + 1)


TOKEN = "Bearer s3cr3t-t0ken-value"  # a fake credential that must never leak


def _ratio_query(service: str) -> str:
    errors = f'sum(increase(http_requests_total{{service="{service}",code=~"5.."}}[5s]))'
    return f'{errors} / sum(increase(http_requests_total{{service="{service}"}}[5s]))'


@pytest.mark.prometheus
async def test_error_ratio_query_reads_back_the_configured_ratio(
    sample_app: SampleApp, prometheus: PrometheusServer
) -> None:
    """The 5xx share the sample app was told to serve comes back through PromQL."""
    sample_app.configure("ratio", rate=500, error_ratio=0.3)
    # Wait until the series are older than the [5s] window: increase() extrapolates a young
    # counter towards zero differently per series, which skews a ratio of two of them.
    await prometheus.wait_for_data(
        'count_over_time(http_requests_total{service="ratio",code="500"}[10s]) >= 7'
    )
    end = _just_after_now()
    async with PrometheusSource(prometheus.url, timeout=5) as source:
        series = await source.query_range(_ratio_query("ratio"), end - 2, end, 1)
    assert len(series) == 1
    assert series[0].labels == {}
    values = [sample.value for sample in series[0].samples]
    assert len(values) == 3
    # ~2,000 requests per window: the drawn share stays within a few points of 0.3.
    assert all(0.25 <= value <= 0.35 for value in values), values


@pytest.mark.prometheus
def test_sample_app_exposes_configured_traffic_in_valid_text_format() -> None:
    """Ten simulated seconds show the configured rate, shares and memory, and promtool agrees."""
    app = SampleApp(seed=3)
    app.configure("expo", rate=100, error_ratio=0.1, slow_ratio=0.2, memory_bytes=5e8)
    app.advance(10)
    text = app.exposition()
    value = {
        name: float(number)
        for name, number in (line.rsplit(" ", 1) for line in text.splitlines())
        if not name.startswith("#")
    }
    ok = value['http_requests_total{service="expo",code="200"}']
    errors = value['http_requests_total{service="expo",code="500"}']
    count = value['http_request_duration_seconds_count{service="expo"}']
    fast = value['http_request_duration_seconds_bucket{service="expo",le="0.5"}']
    assert ok + errors == count == 1000
    assert 0.07 <= errors / count <= 0.13
    assert 0.16 <= 1 - fast / count <= 0.24
    assert value['process_resident_memory_bytes{service="expo"}'] == 5e8
    promtool = Path(find_binary()).with_name("promtool")
    checked = subprocess.run(
        [str(promtool), "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1.0),
        ("0.25", 0.25),
        ("-3", -3.0),
        ("1e-3", 0.001),
        ("+Inf", math.inf),
        ("-Inf", -math.inf),
        ("NaN", math.nan),
    ],
)
def test_parse_matrix_reads_prometheus_value_strings(text: str, expected: float) -> None:
    """Values arrive as strings, including Prometheus' spellings of NaN and infinities."""
    [series] = parse_matrix([{"metric": {"job": "a"}, "values": [[1700000000.5, text]]}])
    [sample] = series.samples
    assert sample.t == 1700000000.5
    if math.isnan(expected):
        assert math.isnan(sample.value)
    else:
        assert sample.value == expected


def test_parse_matrix_reads_the_documented_example() -> None:
    """The query_range example from Prometheus' API docs parses into two labelled series."""
    result = load_json("prometheus-api/docs-examples/query_range_matrix_up.json")["data"]["result"]
    series = parse_matrix(result)
    assert series == [
        Series(
            labels={"__name__": "up", "job": "prometheus", "instance": "localhost:9090"},
            samples=(
                Sample(1435781430.781, 1.0),
                Sample(1435781445.781, 1.0),
                Sample(1435781460.781, 1.0),
            ),
        ),
        Series(
            labels={"__name__": "up", "job": "node", "instance": "localhost:9091"},
            samples=(
                Sample(1435781430.781, 0.0),
                Sample(1435781445.781, 0.0),
                Sample(1435781460.781, 1.0),
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("result", "says"),
    [
        ({"metric": {}}, "not a list"),
        (["up"], "not an object"),
        ([{"metric": {"job": 1}, "values": []}], "labels"),
        ([{"metric": {}}], "no values"),
        ([{"metric": {}, "values": [[1, "1", "2"]]}], "pair"),
        ([{"metric": {}, "values": [[1, 1.0]]}], "[number, string]"),
        ([{"metric": {}, "values": [[1, "one"]]}], "not a number"),
    ],
)
def test_parse_matrix_refuses_what_is_not_a_float_matrix(result: object, says: str) -> None:
    """A malformed answer is an error naming the problem, never a silently empty series."""
    with pytest.raises(MalformedMatrix, match=re.escape(says)):
        parse_matrix(result)


def test_parse_matrix_refuses_native_histograms_with_advice() -> None:
    """Native histogram samples are not floats; the error says what to query instead."""
    answer = load_json("prometheus-api/openapi-examples/query_range.200.histogramResult.json")
    with pytest.raises(MalformedMatrix, match="histogram_quantile"):
        parse_matrix(answer["data"]["result"])


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ('sum(rate(http_requests_total{service="rejected"}[5s])', 400, "unclosed left parenthesis"),
        (
            'http_requests_total{service="rejected"} / on(service) '
            'http_requests_total{service="rejected"}',
            422,
            "many-to-many matching not allowed",
        ),
    ],
)
async def test_refused_promql_is_rejected_with_prometheus_message(
    sample_app: SampleApp, prometheus: PrometheusServer, query: str, status: int, says: str
) -> None:
    """Bad PromQL (400) and a query that cannot execute (422) are QueryRejected, with reasons."""
    sample_app.configure("rejected", rate=10)
    await prometheus.wait_for_data('http_requests_total{service="rejected"}')
    end = _just_after_now()
    async with PrometheusSource(prometheus.url, timeout=5) as source:
        with pytest.raises(QueryRejected) as raised:
            await source.query_range(query, end - 2, end, 1)
    message = str(raised.value)
    assert query in message
    assert f"HTTP {status}" in message
    assert says in message


@pytest.mark.prometheus
async def test_stopped_prometheus_is_unavailable_until_restarted(
    sample_app: SampleApp, prometheus: PrometheusServer
) -> None:
    """Down means SourceUnavailable at once (no hidden retries); back up, history answers."""
    sample_app.configure("outage", rate=10)
    query = 'http_requests_total{service="outage",code="200"}'
    await prometheus.wait_for_data(query)
    before = _just_after_now()
    async with PrometheusSource(
        prometheus.url, timeout=2, headers={"Authorization": TOKEN}
    ) as source:
        prometheus.stop()
        started = time.monotonic()
        with pytest.raises(SourceUnavailable) as raised:
            await source.query_range(query, before - 5, before, 1)
        assert time.monotonic() - started < 1.0
        assert prometheus.url in str(raised.value)
        assert "s3cr3t" not in str(raised.value)

        prometheus.start()
        series = await source.query_range(query, before - 5, before, 1)
    assert [s.labels["service"] for s in series] == ["outage"]
    assert series[0].samples


@pytest.mark.prometheus
async def test_prometheus_accepts_exactly_the_point_limit(prometheus: PrometheusServer) -> None:
    """Our limit is Prometheus' own: 11,000 steps (11,001 points) still get an answer."""
    end = float(int(time.time()))
    async with PrometheusSource(prometheus.url, timeout=5) as source:
        [series] = await source.query_range("vector(1)", end - MAX_POINTS, end, 1)
    assert len(series.samples) == MAX_POINTS + 1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(aiohttp_server: AiohttpServer, handler: Handler) -> tuple[str, list[str]]:
    """A stand-in Prometheus answering `/api/v1/query_range`; returns its URL and a request log."""
    seen: list[str] = []

    async def logged(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await handler(request)

    app = web.Application()
    app.router.add_get("/api/v1/query_range", logged)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def test_range_over_the_point_limit_is_rejected_without_a_request(
    aiohttp_server: AiohttpServer,
) -> None:
    """More than 11,000 steps is refused here, before Prometheus would refuse it."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": []}}
        )

    url, seen = await _serve(aiohttp_server, answer)
    async with PrometheusSource(url, timeout=2) as source:
        with pytest.raises(QueryRejected, match="at most 11000 steps") as raised:
            await source.query_range("up", 0, MAX_POINTS + 1, 1)
        assert "'up'" in str(raised.value)
        assert seen == []
        assert await source.query_range("up", 0, MAX_POINTS, 1) == []
    assert len(seen) == 1


def _canned(status: int, body: str, content_type: str = "application/json") -> Handler:
    async def answer(request: web.Request) -> web.Response:
        echoed = body.replace("{auth}", request.headers.get("Authorization", ""))
        return web.Response(status=status, text=echoed, content_type=content_type)

    return answer


JSON = "application/json"
TEXT = "text/plain"


@pytest.mark.parametrize(
    ("reply", "error", "says"),
    [
        (
            (503, '{"status":"error","errorType":"timeout","error":"query timed out"}', JSON),
            SourceUnavailable,
            "HTTP 503: timeout: query timed out",
        ),
        (
            (500, '{"status":"error","errorType":"internal","error":"TSDB not ready"}', JSON),
            SourceUnavailable,
            "HTTP 500: internal: TSDB not ready",
        ),
        ((502, "<html>bad gateway</html>", "text/html"), SourceUnavailable, "bad gateway"),
        ((429, "slow down", TEXT), SourceUnavailable, "HTTP 429"),
        ((401, "token {auth} is not valid", TEXT), QueryRejected, "HTTP 401"),
        ((404, "404 page not found", TEXT), QueryRejected, "HTTP 404"),
        ((200, "<html>not prometheus</html>", "text/html"), QueryRejected, "no JSON"),
        (
            (200, '{"status":"success","data":{"result":{"a":1}}}', JSON),
            QueryRejected,
            "not a list",
        ),
    ],
)
async def test_answers_map_to_retry_or_fix(
    aiohttp_server: AiohttpServer,
    reply: tuple[int, str, str],
    error: type[Exception],
    says: str,
) -> None:
    """5xx and 429 mean try later, other refusals and non-Prometheus answers mean fix config."""
    url, _ = await _serve(aiohttp_server, _canned(*reply))
    async with PrometheusSource(url, timeout=2, headers={"Authorization": TOKEN}) as source:
        with pytest.raises(error) as raised:
            await source.query_range("up", 0, 10, 1)
    message = str(raised.value)
    assert type(raised.value) is error
    assert says in message
    assert "'up'" in message
    assert "s3cr3t" not in message


async def test_silent_prometheus_times_out_as_unavailable(aiohttp_server: AiohttpServer) -> None:
    """A server that never answers costs the configured timeout, not more, and not forever."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    url, _ = await _serve(aiohttp_server, hang)
    try:
        async with PrometheusSource(url, timeout=0.3) as source:
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match=r"within 0\.3s"):
                await source.query_range("up", 0, 10, 1)
            assert time.monotonic() - started < 1.5
    finally:
        release.set()


async def test_credentials_in_the_url_stay_out_of_messages() -> None:
    """user:password in the URL is used for auth but never shown."""
    url = "http://rearguard:hunter2-secret@127.0.0.1:1"
    async with PrometheusSource(url, timeout=1) as source:
        with pytest.raises(SourceUnavailable) as raised:
            await source.query_range("up", 0, 10, 1)
    assert "hunter2" not in str(raised.value)
    assert "http://***@127.0.0.1:1" in str(raised.value)
