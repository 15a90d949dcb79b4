"""`rearguard backtest`: what the detector would have decided for past deploys.

Each deploy's SLIs are fetched once from Prometheus history (the watch window and its baselines,
exactly the queries the Watch makes) and then judged step by step with the same pure functions
the Watch runs, stopping at the first final verdict, as the Watch would. This is how a team tunes
`tolerance`, `min_events` and the windows of a service before turning on `act` mode.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

from loop.config import ServiceSettings
from observer.detect import DEFAULT_SETTINGS, DetectorSettings, decide
from observer.observe import SliData, Windows, fetch_sli, judge, step_plan
from observer.sources import MetricsError, MetricsSource
from observer.verdict import SliResult, Status, Verdict


@dataclass(frozen=True, slots=True)
class Replayed:
    """One deploy to replay: an id (the store's, or `at-<time>`), its time and version."""

    id: str
    finished_at: float
    version: str = ""


@dataclass(frozen=True, slots=True)
class BacktestRow:
    """What the detector decided for one deploy, how long after it, and the numbers behind it
    (`results`: each SLI's counts, rates, statistic and threshold at the deciding step).
    `source_failed`: a query failed, so the deploy could not be judged on all its SLIs."""

    deploy_id: str
    finished_at: float
    status: Status
    decided_after: float
    reason: str
    service: str = ""
    results: tuple[SliResult, ...] = ()
    source_failed: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (NaN as None)."""
        return {
            "service": self.service, "deploy": self.deploy_id, "finished_at": self.finished_at,
            "verdict": str(self.status), "reason": self.reason,
            "decided_after": None if math.isnan(self.decided_after) else self.decided_after,
            "source_failed": self.source_failed,
            "slis": [result.to_json() for result in self.results],
        }  # fmt: skip


def replay_verdict(
    service: ServiceSettings,
    windows: Windows,
    data: dict[str, SliData | str],
    settings: DetectorSettings = DEFAULT_SETTINGS,
) -> tuple[Verdict, float]:
    """Judge fetched data at every step of the watch; the first final verdict (else the last
    one, inconclusive) and the seconds after the deploy it came (NaN when none did).

    `data` maps SLI names to their fetched data, or to the error text when the fetch failed.
    """
    steps = windows.horizon
    last = Verdict(Status.INCONCLUSIVE, "no evaluation", ())
    for k in range(1, steps + 1):
        at = windows.deployed_at + k * windows.step
        results = []
        for sli in service.slis:
            fetched = data[sli.name]
            if isinstance(fetched, str):
                status = Status.INCONCLUSIVE if windows.complete(at) else Status.OBSERVING
                results.append(SliResult(sli.name, status, f"metrics source failed: {fetched}"))
            else:
                results.append(judge(sli, fetched, windows, at, settings))
        verdict = decide(service.slis, results, windows.complete(at))
        last = verdict
        if verdict.status is not Status.OBSERVING:
            return verdict, at - windows.deployed_at
    return replace(last, status=Status.INCONCLUSIVE), math.nan


async def backtest(
    source: MetricsSource,
    service: ServiceSettings,
    deploys: Sequence[Replayed],
    now: float,
    *,
    progress: TextIO | None = None,
    settings: DetectorSettings = DEFAULT_SETTINGS,
    scrape_interval: float | None = None,
) -> list[BacktestRow]:
    """Replay `deploys` of `service` against `source`; a progress bar goes to `progress`.
    Each SLI is fetched on the step its data allows, as the Watch does (`scrape_interval` is
    `[prometheus] scrape_interval`; else the interval is learnt at each watch's end)."""
    rows = []
    for index, deploy in enumerate(deploys, start=1):
        windows = Windows(
            deploy.finished_at, service.baseline, service.watch, service.step,
            service.seasonal, deploy.version,
        )  # fmt: skip
        end = deploy.finished_at + service.watch
        if end > now:
            row = BacktestRow(
                deploy.id, deploy.finished_at, Status.OBSERVING, math.nan,
                "watch window not over yet", service.name,
            )  # fmt: skip
        else:
            data: dict[str, SliData | str] = {}
            for sli in service.slis:
                try:
                    plan = await step_plan(source, sli, service.step, end,
                                           scrape_interval=scrape_interval)  # fmt: skip
                    data[sli.name] = await fetch_sli(source, sli, windows, end, plan)
                except MetricsError as exc:
                    data[sli.name] = str(exc)
            verdict, after = replay_verdict(service, windows, data, settings)
            failed = any(isinstance(fetched, str) for fetched in data.values())
            row = BacktestRow(
                deploy.id, deploy.finished_at, verdict.status, after, verdict.reason,
                service.name, verdict.results, failed,
            )  # fmt: skip
        rows.append(row)
        if progress is not None:
            _bar(progress, index, len(deploys))
    return rows


def _bar(out: TextIO, done: int, total: int, width: int = 30) -> None:
    """A one-line progress bar, redrawn in place (stderr, so stdout stays the table)."""
    filled = width * done // max(total, 1)
    out.write(f"\rbacktest [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        out.write("\n")
    out.flush()


def render(rows: Sequence[BacktestRow], out: TextIO = sys.stdout) -> None:
    """One line per deploy: id, time (UTC), verdict, when it was decided, and why."""
    import datetime as dt  # noqa: PLC0415 - only the table needs it

    out.write(
        f"{'deploy':<28} {'finished (UTC)':<20} {'verdict':<13} {'after':>7}  service  reason\n"
    )
    for row in rows:
        when = dt.datetime.fromtimestamp(row.finished_at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        after = "-" if math.isnan(row.decided_after) else f"{row.decided_after:.0f}s"
        out.write(
            f"{row.deploy_id:<28} {when:<20} {row.status!s:<13} {after:>7}  {row.service}  "
            f"{row.reason}\n"
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.status)] = counts.get(str(row.status), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    out.write(f"{len(rows)} deploy(s): {summary or 'none'}\n")
