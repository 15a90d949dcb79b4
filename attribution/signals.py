"""Label evidence: the regressed SLI's route split and firing alerts, mapped to code paths.

Both speak in label values (`route="/checkout"`, `handler="PaymentHandler"`), which a
per-service `routes` map in the config turns into path globs. The route split is a count test:
a value regressed when its bad rate after the deploy is well above its own baseline (a z-test on
two proportions, with a practical floor), so one noisy route does not point anywhere. An alert
names a route less precisely than the split (its labels are whatever the rule kept), so it
weighs less. A PR touching the matched paths gets the source's ratio; the others stay at 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from attribution.diffs import matches
from attribution.evidence import FiringAlert, PrChange, RouteCounts, Score

LR_ROUTE = 60.0
"""Likelihood ratio of touching the paths of the one route that regressed."""
LR_ALERT = 15.0
"""... of touching the paths a firing alert's route or handler label maps to."""
ROUTE_LABELS = ("route", "handler", "endpoint", "path")
Z_REGRESSED = 3.0
MIN_RATIO = 1.5


def split_query(query: str, label: str) -> str | None:
    """The SLI's PromQL split by `label`, when its outermost aggregation is a plain `sum(`."""
    stripped = query.strip()
    if stripped.startswith(("sum(", "sum (")):
        inner = stripped[stripped.index("(") :]
        return f"sum by ({label}) {inner}"
    return None


def regressed_values(counts: Sequence[RouteCounts]) -> list[tuple[str, float]]:
    """Label values whose bad rate rose significantly, with their z statistic, worst first."""
    found = []
    for c in counts:
        if c.watch_total <= 0 or c.baseline_total <= 0:
            continue
        before, after = c.baseline_bad / c.baseline_total, c.watch_bad / c.watch_total
        pooled = (c.baseline_bad + c.watch_bad) / (c.baseline_total + c.watch_total)
        spread = math.sqrt(
            max(pooled * (1 - pooled), 1e-12) * (1 / c.watch_total + 1 / c.baseline_total)
        )
        z = (after - before) / spread
        if z >= Z_REGRESSED and after >= MIN_RATIO * max(before, 1e-9):
            found.append((c.value, z))
    return sorted(found, key=lambda v: v[1], reverse=True)


def _touching(globs: Sequence[str], changes: Sequence[PrChange]) -> list[PrChange]:
    return [c for c in changes if any(matches(p, globs) for p in c.paths)]


def score_routes(
    counts: Sequence[RouteCounts],
    label: str,
    routes: Mapping[str, tuple[str, ...]],
    changes: Sequence[PrChange],
) -> list[Score]:
    """Scores from the route split of the regressed SLI: PRs touching the regressed routes."""
    regressed = [(v, z) for v, z in regressed_values(counts) if v in routes]
    if not regressed:
        return []
    # Several regressed routes share the evidence: touching one of three is weaker than one of one.
    ratio = 1.0 + (LR_ROUTE - 1.0) / len(regressed)
    out: dict[int, Score] = {}
    for value, z in regressed:
        globs = routes[value]
        for change in _touching(globs, changes):
            reason = (
                f"SLI split by {label}: {label}={value!r} regressed (z={z:.1f}) and "
                f"#{change.number} touched its paths {', '.join(globs)}"
            )
            out.setdefault(change.number, Score(change.number, ratio, reason))
    return list(out.values())


def score_alerts(
    alerts: Sequence[FiringAlert],
    routes: Mapping[str, tuple[str, ...]],
    changes: Sequence[PrChange],
) -> list[Score]:
    """Scores from firing alerts whose route/handler/endpoint/path label maps to code paths."""
    out: dict[int, Score] = {}
    for alert in alerts:
        for key in ROUTE_LABELS:
            value = alert.labels.get(key)
            globs = routes.get(value) if value else None
            if not globs:
                continue
            for change in _touching(globs, changes):
                reason = (
                    f"alert {alert.name!r} fires with {key}={value!r}, whose paths "
                    f"{', '.join(globs)} #{change.number} touched"
                )
                out.setdefault(change.number, Score(change.number, LR_ALERT, reason))
    return list(out.values())
