"""The server side of `make bench-store`: `rearguard serve`, in its own process, that also keeps
how long each of its store calls took.

`python -m bench.store.server CONFIG SPANS` does what `rearguard serve --config CONFIG` does
(`loop.cli.main._serve`: settings, tracing, `build_app`, `serve`) with one span processor more:
every `store.call` span (one store call as its caller waits for it: the writer queue, then
DuckDB's work) is kept as (op, start, seconds, queued seconds) and written to SPANS as JSON when
the server stops (SIGTERM). The app, its config and its store are the real ones.

`write_config` is the bench's config: the history's 50 services (`svc-NN`, repository
`acme/svc-NN`, so the reports cover the year of history), each watched at the bench's step on
the sample app's traffic, and `bench-cd` (at a 1 s step, as `make bench-ingest` has it), whose
CD-hook deploys are each judged once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from bench.ingest.server import write_bench_config


def history_services(count: int) -> list[str]:
    return [f"svc-{i:02d}" for i in range(count)]


def watched(name: str, step: str) -> dict[str, Any]:
    """A history service watched at `step` (whole seconds) on the sample app's traffic, scraped
    every second: each step's counts are the increase over that step."""
    sel = f'service="{name}"'
    return {
        "repo": f"acme/{name}", "step": step, "watch": "1800s", "baseline": "20s",
        "slis": {"http_errors": {
            "bad": f'sum(increase(http_requests_total{{{sel},code=~"5.."}}[{step}]))',
            "total": f"sum(increase(http_requests_total{{{sel}}}[{step}]))",
            "min_events": 100}},
    }  # fmt: skip


def write_config(path: Path, port: int, store: Path, services: int, *, step: str,
                 urls: tuple[str, str, str]) -> Path:  # fmt: skip
    """The bench's config at `path`; `urls` are Prometheus', GitHub's and Slack's."""
    tables = {name: watched(name, step) for name in history_services(services)}
    return write_bench_config(path, port, store, tables, urls=urls)


class StoreSpans(SpanProcessor):
    """Keeps each `store.call` span's op, start (Unix seconds), duration and queue wait."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float | None]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        if span.name != "store.call" or span.start_time is None or span.end_time is None:
            return
        attributes = span.attributes or {}
        queued = attributes.get("rearguard.store.queued_seconds")
        self.rows.append((
            str(attributes.get("rearguard.store.op", "call")), span.start_time / 1e9,
            (span.end_time - span.start_time) / 1e9,
            float(queued) if isinstance(queued, int | float) else None,
        ))  # fmt: skip

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.rows))


def main(argv: list[str]) -> int:
    from loop.api.app import build_app  # noqa: PLC0415 - as `rearguard serve` imports them
    from loop.api.server import serve  # noqa: PLC0415
    from loop.config import load_settings  # noqa: PLC0415
    from loop.telemetry import install_tracing  # noqa: PLC0415

    config, spans_path = Path(argv[0]), Path(argv[1])
    settings = load_settings(config, os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spans = StoreSpans()
    install_tracing("rearguard", processor=spans)
    try:
        serve(build_app(settings), settings.listen_host, settings.listen_port)
    finally:
        spans.dump(spans_path)
    return 0


def load_spans(path: Path) -> list[tuple[str, float, float, float | None]]:
    rows: list[Any] = json.loads(path.read_text())
    return [(str(r[0]), float(r[1]), float(r[2]), r[3]) for r in rows]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
