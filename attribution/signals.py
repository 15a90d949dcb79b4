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

LR_ROUTE = 1000.0
"""Likelihood ratio of touching the paths of the one route that regressed."""
LR_ALERT = 1000.0
"""... of touching the paths a firing alert's route or handler label maps to."""
ROUTE_LINE_SHARE = 0.125
"""Weight of the changed-line share against one-over-routes-touched in `specificity`."""
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


def _lines_in(change: PrChange, globs: Sequence[str]) -> int:
    """Changed lines of `change` in files matching `globs` (a file without counts weighs 1)."""
    return sum(
        max(f.additions + f.deletions, 1)
        for f in change.files
        if matches(f.path, globs) or (f.previous_path and matches(f.previous_path, globs))
    )


def specificity(change: PrChange, value: str, routes: Mapping[str, tuple[str, ...]]) -> float:
    """How likely a bug of `change` is to show on route `value` rather than another route it
    touches: a blend of the share of its route-serving changed lines in `value`'s paths and one
    over the number of routes it touches. A PR spread over four routes explains a regression of
    one of them less well than a PR confined to it; the blend weight is `ROUTE_LINE_SHARE`."""
    touched = [r for r, globs in routes.items() if any(matches(p, globs) for p in change.paths)]
    if value not in touched:
        return 0.0
    per_route = 1.0 / len(touched)
    if not change.files:
        return per_route
    lines = {r: _lines_in(change, routes[r]) for r in touched}
    total = sum(lines.values())
    share = lines[value] / total if total else per_route
    return ROUTE_LINE_SHARE * share + (1.0 - ROUTE_LINE_SHARE) * per_route


def _route_ratio(lr: float, spec: float) -> float:
    return 1.0 + (lr - 1.0) * spec


def score_routes(
    counts: Sequence[RouteCounts],
    label: str,
    routes: Mapping[str, tuple[str, ...]],
    changes: Sequence[PrChange],
) -> list[Score]:
    """Scores from the route split of the regressed SLI: PRs touching the regressed routes,
    each by how specifically its change serves them (`specificity`)."""
    regressed = [(v, z) for v, z in regressed_values(counts) if v in routes]
    if not regressed:
        return []
    out: list[Score] = []
    for change in changes:
        # Several regressed routes share the evidence: one of three is weaker than one of one.
        specs = [(specificity(change, v, routes), v, z) for v, z in regressed]
        spec = sum(s for s, _, _ in specs) / len(regressed)
        if spec <= 0:
            continue
        _, value, z = max(specs)
        globs = routes[value]
        reason = (
            f"SLI split by {label}: {label}={value!r} regressed (z={z:.1f}) and "
            f"#{change.number} touched its paths {', '.join(globs)}"
            f" ({spec:.0%} of its route changes)"
        )
        out.append(Score(change.number, _route_ratio(LR_ROUTE, spec), reason))
    return out


def score_alerts(
    alerts: Sequence[FiringAlert],
    routes: Mapping[str, tuple[str, ...]],
    changes: Sequence[PrChange],
) -> list[Score]:
    """Scores from firing alerts whose route/handler/endpoint/path label maps to code paths,
    weighed by the same specificity as the route split."""
    out: dict[int, Score] = {}
    for alert in alerts:
        for key in ROUTE_LABELS:
            value = alert.labels.get(key)
            globs = routes.get(value) if value else None
            if not value or not globs:
                continue
            for change in _touching(globs, changes):
                ratio = _route_ratio(LR_ALERT, specificity(change, value, routes))
                known = out.get(change.number)
                if known is not None and known.ratio >= ratio:
                    continue
                reason = (
                    f"alert {alert.name!r} fires with {key}={value!r}, whose paths "
                    f"{', '.join(globs)} #{change.number} touched"
                )
                out[change.number] = Score(change.number, ratio, reason)
    return list(out.values())
