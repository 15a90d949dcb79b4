"""The reports, by kind: what the HTTP route (`GET /v1/reports/{kind}`) and `rearguard report`
both answer with, from one store.

`dora` and `loop` are the delivery metrics (`attribution.delivery`, aggregated in SQL by
`store.reports`); `agents`, `models`, `specs` and `areas` are the regression rates the labels
taught (`attribution.feedback.report`), with their Wilson intervals. Each answer is a JSON-ready
dict: `report` (the kind), the window, the `definitions` of its metrics, and its `rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attribution import delivery
from attribution.feedback import culprit_shares, report_rows
from attribution.priors import History, Tally
from attribution.store import Store
from attribution.store_reports import Window

REGRESSIONS = {"agents": "agent", "models": "model", "specs": "spec", "areas": "area"}
KINDS = ("dora", *REGRESSIONS, "loop")
"""Every report kind, in the order they are listed."""

_REGRESSION_DEFINITIONS = {
    "regression_rate": (
        "Regression rate: culprit shares (blame after every correction) over deployed PRs, with "
        "its 95% Wilson score interval `regression_rate_low`..`regression_rate_high`."
    ),
    "smoothed_rate": "The rate attribution uses: culprits plus pseudo-PRs at the overall rate.",
}


class UnknownReport(ValueError):
    """No report of that kind; the message lists the kinds."""


def _window(window: Window) -> dict[str, Any]:
    return {"since": window.since, "until": window.until, "service": window.service,
            "repo": window.repo}  # fmt: skip


async def build_report(
    store: Store, kind: str, window: Window, repos: Sequence[str] | None = None
) -> dict[str, Any]:
    """The report `kind` over `window`. `repos` are the repositories the regression reports
    cover (on the server, the config's, or the one of `window.service`); None: those the store's
    deploys (of `window.service`) came from."""
    if kind not in KINDS:
        raise UnknownReport(f"no report {kind!r}; the kinds are {', '.join(KINDS)}")
    head = {"report": kind, "window": _window(window)}
    if kind == "dora":
        rows = [delivery.dora_row(r) for r in await store.reports.dora(window)]
        return head | {"definitions": delivery.DORA, "rows": rows}
    if kind == "loop":
        prs = [delivery.loop_pr_row(r) for r in await store.reports.loop_prs(window)]
        incidents = [
            delivery.loop_incident_row(r) for r in await store.reports.loop_incidents(window)
        ]
        definitions = delivery.LOOP_PRS | delivery.LOOP_INCIDENTS
        return head | {"definitions": definitions, "rows": prs, "incident_rows": incidents}
    return head | {
        "definitions": _REGRESSION_DEFINITIONS,
        "rows": await regression_rows(store, REGRESSIONS[kind], window, repos),
    }


async def regression_rows(
    store: Store, dimension: str, window: Window, repos: Sequence[str] | None
) -> list[dict[str, Any]]:
    """`attribution.feedback.report`'s rows per repository, over the PRs merged in the window
    and deployed. The PRs are counted per value in SQL (`store.reports.regression_counts`);
    only the incidents' labels, and the values of the PRs they name, come into Python, so the
    report does not read every PR of a year."""
    if repos is None:
        repos = await store.reports.service_repos(window.service)
    if window.repo is not None:
        repos = [r for r in repos if r == window.repo]
    blames, signals = await store.evidence.labels(repos)
    shares = culprit_shares(blames, signals)
    named = {(b.repo, n) for b in blames for n in (*b.suspects, *b.revert_unit)}
    by_id = {b.incident_id: b for b in blames}
    named |= {(by_id[s.incident_id].repo, s.pr_number) for s in signals if s.pr_number is not None}
    found = await store.reports.regression_counts(dimension, window, repos, sorted(named))
    rows: list[dict[str, Any]] = []
    for repo in repos:
        ours = [b for b in blames if b.repo == repo]
        ids = {b.incident_id for b in ours}
        deployed = {k: share for k, share in shares.items() if k[0] == repo and k in found.values}
        culprits: dict[str, float] = {}
        for key, share in deployed.items():
            for value in found.values[key]:
                culprits[value] = culprits.get(value, 0.0) + share
        counts = found.counts.get(repo, {})
        hist = History(
            Tally(found.totals.get(repo, 0), sum(deployed.values())),
            {dimension: {v: Tally(n, culprits.get(v, 0.0)) for v, n in counts.items()}},
        )
        said = [s for s in signals if s.incident_id in ids]
        rows += [
            {"repo": repo, **r} for r in report_rows(dimension, hist, found.values, ours, said)
        ]
    return rows
