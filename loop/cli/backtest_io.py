"""The I/O half of `rearguard backtest`: deploys from the store or the command line, Prometheus
from the config, the table on stdout and the progress bar on stderr."""

from __future__ import annotations

import datetime as dt
import sys
import time

from attribution.store import Store, StoreError
from loop.cli.backtest import Replayed, backtest, render
from loop.config import ConfigError, Settings, parse_duration
from observer.prometheus import PrometheusSource


class BacktestInputError(ValueError):
    """A deploy time or window on the command line is unusable; the message says which."""


def parse_time(text: str) -> float:
    """Unix seconds from `1767225600` or an ISO 8601 time (UTC when no zone is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise BacktestInputError(
            f"--at {text!r}: expected ISO 8601 (2026-11-02T14:05:00Z) or Unix seconds"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


async def _deploys(settings: Settings, service: str, since: float) -> list[Replayed]:
    store = await Store.open(settings.store_path)
    try:
        found = await store.watches.service_deploys(service, since)
    finally:
        await store.close()
    return [Replayed(d.id, d.finished_at, d.sha) for d in found]


async def run_backtest(settings: Settings, service: str, since: str, at: list[str]) -> int:
    """Replay and print; 2 on bad input (nothing is written), 0 otherwise."""
    svc = settings.service(service)
    if svc is None:
        known = ", ".join(sorted(settings.services))
        sys.stderr.write(f"rearguard: no service {service!r} in the config (known: {known})\n")
        return 2
    now = time.time()
    try:
        window = parse_duration(since, "--since")
        if at:
            deploys = [Replayed(f"at-{parse_time(t):.0f}", parse_time(t)) for t in at]
        else:
            deploys = await _deploys(settings, service, now - window)
    except (ConfigError, BacktestInputError, StoreError) as exc:
        sys.stderr.write(f"rearguard: {exc}\n")
        return 2
    if not deploys:
        sys.stderr.write(f"rearguard: no deploys of {service!r} in the store since {since}\n")
        return 0
    async with PrometheusSource(
        settings.prometheus_url, timeout=settings.prometheus_timeout
    ) as source:
        rows = await backtest(
            source, svc, deploys, now, progress=sys.stderr,
            scrape_interval=settings.prometheus_scrape_interval,
        )  # fmt: skip
    render(rows, sys.stdout)
    return 0
