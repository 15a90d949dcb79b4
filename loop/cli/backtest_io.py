"""The I/O half of `rearguard backtest`: deploys from the store or the command line, Prometheus
from the config, the table on stdout and the progress bar on stderr."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time

from attribution.store import Store, StoreError
from loop.cli import remote
from loop.cli.backtest import BacktestRow, Replayed, backtest, render
from loop.config import ConfigError, Settings, parse_duration
from loop.prometheus import prometheus_source
from observer.verdict import Status


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


DEPLOYS_SQL = (
    "SELECT deploy_id, epoch(deployed_at) AS at, sha FROM deploys WHERE service = ? "
    "AND deployed_at >= to_timestamp(?) ORDER BY deployed_at, deploy_id"
)
"""A service's deploys since a time, over the public view (the query route's)."""


def server_url(settings: Settings) -> str:
    """The address of the config's own server, as a client on this machine reaches it."""
    host = settings.listen_host
    host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - any address
    return f"http://{host}:{settings.listen_port}"


def _remote_deploys(url: str, token: str | None, service: str, since: float) -> list[Replayed]:
    answer = remote.query(url, token, DEPLOYS_SQL, [service, since])
    return [Replayed(str(d), float(at), str(sha)) for d, at, sha in answer["rows"]]


async def _deploys(
    settings: Settings, service: str, since: float, url: str | None, token: str | None
) -> list[Replayed]:
    """The deploys from the store file, or through the server at `url`: given, or the config's
    own when a running server holds the file (DuckDB lets no other process open it)."""
    if url is None:
        try:
            store = await Store.open(settings.store_path)
        except StoreError as exc:
            if "lock" not in str(exc).lower():
                raise
            url = server_url(settings)
            sys.stderr.write(
                f"rearguard: the store is held by a running server; reading deploys through "
                f"{url} (--url to name another)\n"
            )
        else:
            try:
                found = await store.watches.service_deploys(service, since)
            finally:
                await store.close()
            return [Replayed(d.id, d.finished_at, d.sha) for d in found]
    try:
        return await asyncio.to_thread(_remote_deploys, url, token, service, since)
    except remote.RemoteError as exc:
        raise StoreError(f"cannot read the deploys through the server: {exc}") from exc


async def run_backtest(
    settings: Settings,
    services: list[str],
    since: str,
    at: list[str],
    *,
    as_json: bool = False,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Replay and print (a table, or one JSON document with `as_json`) for `services`, every
    configured one when empty; the deploys come from the store, or through the server at `url`
    (with `token`) when given or when a running server holds the store. 2 on bad input
    (nothing is written); 1 when a deploy could not be judged because a query failed; 0
    otherwise."""
    unknown = [name for name in services if settings.service(name) is None]
    if unknown:
        known = ", ".join(sorted(settings.services))
        sys.stderr.write(f"rearguard: no service {unknown[0]!r} in the config (known: {known})\n")
        return 2
    chosen = [settings.services[name] for name in services or settings.services]
    now = time.time()
    try:
        window = parse_duration(since, "--since")
        times = [parse_time(t) for t in at]
        plans = []
        for svc in chosen:
            found = [Replayed(f"at-{t:.0f}", t) for t in times]
            plans.append(
                (svc, found or await _deploys(settings, svc.name, now - window, url, token))
            )
    except (ConfigError, BacktestInputError, StoreError) as exc:
        sys.stderr.write(f"rearguard: {exc}\n")
        return 2
    rows: list[BacktestRow] = []
    async with prometheus_source(settings) as source:
        for svc, deploys in plans:
            if not deploys:
                sys.stderr.write(
                    f"rearguard: no deploys of {svc.name!r} in the store since {since}\n"
                )
                continue
            rows += await backtest(
                source, svc, deploys, now, progress=sys.stderr,
                scrape_interval=settings.prometheus_scrape_interval,
            )  # fmt: skip
    if as_json:
        json.dump({"deploys": [row.to_json() for row in rows], "unjudged": unjudged(rows)},
                  sys.stdout, indent=2)  # fmt: skip
        sys.stdout.write("\n")
    elif rows:
        render(rows, sys.stdout)
    failed = unjudged(rows)
    if failed:
        sys.stderr.write(
            f"rearguard: {len(failed)} deploy(s) could not be judged because a query failed: "
            f"{', '.join(failed)}\n"
        )
        return 1
    return 0


def unjudged(rows: list[BacktestRow]) -> list[str]:
    """Deploys a failed query left without a verdict (one regressed on another SLI was judged)."""
    return [r.deploy_id for r in rows if r.source_failed and r.status is not Status.REGRESSED]
