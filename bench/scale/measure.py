"""The arithmetic of `make bench-scale`, over what was read from outside the server.

Inputs are /proc texts (CPU time and memory of a process), the store's rows after the server
stopped (each Watch's deploy time, when it started observing, when each evaluation began), and
Prometheus' own records (its request counters, its query log). Nothing here does I/O.

When an evaluation was due is what the store kept of it (`observations.due_at`, the `next_due`
that scheduled it); for a store from a Rearguard that did not keep it, Rearguard's own rule,
`loop.watch.steps.next_step_due` (the next point of the deploy's step grid after the previous
evaluation), not a copy of it.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from loop.watch.steps import next_step_due, step_offset

SERVICE_LABEL = re.compile(r'service="([^"]+)"')


def cpu_seconds(stat: str, ticks_per_second: int) -> float:
    """User plus system CPU time of a process and of its waited-for children, from the text of
    /proc/PID/stat (fields 14-17; the command name before them may hold spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / ticks_per_second


def status_mb(status: str, key: str) -> float:
    """A `kB` figure of /proc/PID/status (`VmRSS`, `VmHWM`) in MB."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) / 1024
    raise ValueError(f"/proc status has no {key}")


def cores(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """CPU cores used between `start` and `end`, from (wall time, CPU seconds) samples: the CPU
    time between the first sample at or after `start` and the last at or before `end`, over the
    wall time between them. None when fewer than two samples fall inside."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0)


@dataclass(frozen=True, slots=True)
class WatchRun:
    """One Watch as the store kept it: its deploy's time, when it started observing (the
    `deployed -> observing` transition) and when each of its evaluations began, in order."""

    deploy_id: str
    service: str
    deployed_at: float
    observing_since: float
    evaluations: tuple[float, ...]
    dues: tuple[float, ...] = ()
    """When each evaluation was due, as the store keeps it (`observations.due_at`); empty from a
    Rearguard that did not keep it, whose due times `due_times` rebuilds."""
    decided_at: float = math.inf
    """When the Watch left `observing` (a verdict: regressed, escalated under policy `observe`);
    no step is due after that."""

    @property
    def offset(self) -> float:
        """Where in its step the Watch evaluates: 0 for a Rearguard before `due_at`, whose
        Watches all evaluate on their deploy's grid."""
        return step_offset(self.deploy_id, 1.0) if self.dues else 0.0


def due_times(run: WatchRun, step: float, watch: float) -> list[float]:
    """When each evaluation was due: the first one step after the deploy (or when observing
    began, if later), each later one at the grid point `next_step_due` set after the one before
    (the watch's end at the latest)."""
    end = run.deployed_at + watch
    dues: list[float] = []
    for i, _ in enumerate(run.evaluations):
        if i == 0:
            dues.append(max(run.observing_since, run.deployed_at + step))
        else:
            previous = run.evaluations[i - 1]
            dues.append(max(min(next_step_due(run.deployed_at, step, previous), end), previous))
    return dues


def lags(run: WatchRun, step: float, watch: float) -> list[float]:
    """Seconds from when each evaluation was due to when it began."""
    dues = run.dues or due_times(run, step, watch)
    return [t - due for t, due in zip(run.evaluations, dues, strict=True)]


def steps_due(run: WatchRun, step: float, watch: float, start: float, end: float) -> list[float]:
    """The grid points of the Watch (`deployed_at + k * step`, within the watch) that fell due
    after `start` with a whole step left before `end` to be evaluated in, and before the Watch
    reached its verdict."""
    points = []
    for k in range(1, math.floor(watch / step + 1e-9) + 1):
        point = run.deployed_at + run.offset * step + k * step
        if start < point and point + step <= end and point < run.decided_at:
            points.append(point)
    return points


def steps_evaluated(
    run: WatchRun, step: float, watch: float, start: float, end: float
) -> tuple[int, int]:
    """(evaluated, due): the Watch's grid points due in the span, and how many of them had an
    evaluation begin within the step after them (a late evaluation covers its own step only;
    a step it pushed past is not evaluated)."""
    points = steps_due(run, step, watch, start, end)
    covered = sum(any(p <= t < p + step for t in run.evaluations) for p in points)
    return covered, len(points)


def queries_per_evaluation(evaluations: Sequence[float], queries: Iterable[float]) -> list[int]:
    """Per evaluation of one Watch that has a next one, the queries of that Watch that ended
    between its start and the next evaluation's (each evaluation's queries come after its start;
    the last evaluation's interval is open and not counted)."""
    counts = [0] * max(len(evaluations) - 1, 0)
    for t in queries:
        i = bisect_right(evaluations, t) - 1
        if 0 <= i < len(counts):
            counts[i] += 1
    return counts


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The `q` quantile of a cumulative histogram [(le, count)], interpolated linearly inside
    its bucket as PromQL's `histogram_quantile` does; None when it holds no observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 0)
        lower, below = le, count
    return lower


@dataclass(frozen=True, slots=True)
class LoggedQuery:
    """One line of Prometheus' query log: when it was answered, the `service` label it names,
    the API path it came by and how long Prometheus took (None when the line has no timings)."""

    at: float
    service: str | None
    path: str
    seconds: float | None


def logged_queries(lines: Iterable[str], start: float, end: float) -> list[LoggedQuery]:
    """The queries of Prometheus' query log (JSON lines) answered between `start` and `end`."""
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short when the log was read mid-write
        if not start <= at <= end:
            continue
        query = str(entry.get("params", {}).get("query", ""))
        label = SERVICE_LABEL.search(query)
        timings = entry.get("stats", {}).get("timings", {})
        seconds = timings.get("execTotalTime")
        path = str(entry.get("httpRequest", {}).get("path", ""))
        spent = float(seconds) if isinstance(seconds, int | float) else None
        out.append(LoggedQuery(at, label.group(1) if label else None, path, spent))
    return out
