"""Delivery metrics: DORA's five per service and ISO week, and the agent loop's own, from the
aggregates the store computes in SQL (`attribution.store_reports`).

Every metric is a `metric` dict: a value with its unit and sample size, or a null value with the
reason it cannot be computed (no deploys that week, no PR with an opening time, no review seen),
never a made-up number. Rates carry a 95% Wilson score interval (`wilson`), so a rate over three
deploys does not read like one over three hundred. Pure: the store hands in the aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""

DORA = {
    "deployment_frequency": (
        "Deployment frequency: deploys of the service that finished in the ISO week (every "
        "watched environment; a deploy posted twice counts once)."
    ),
    "lead_time_for_changes": (
        "Lead time for changes: median seconds from a PR's opening (`created_at` of its "
        "`pull_request` webhook) to the first deploy of the service that carried it, over the PRs "
        "first deployed that week. The first commit's time is in no webhook Rearguard reads, so "
        "the PR's opening stands for the start."
    ),
    "change_failure_rate": (
        "Change failure rate: deploys of the week that opened an incident (not later called a "
        "false alarm) over the week's deploys, with a 95% Wilson interval."
    ),
    "failed_deployment_recovery_time": (
        "Failed deployment recovery time: median seconds from a failed deploy (its finish) to "
        "recovery verified after its revert, over the week's failed deploys that recovered."
    ),
    "deployment_rework_rate": (
        "Deployment rework rate: deploys made in response to an incident (they carried a revert "
        'round, a PR Rearguard opened as a revert or fix, or a PR titled `Revert "..."`) over '
        "the week's deploys, with a 95% Wilson interval."
    ),
}
"""DORA's five metrics, by key, with the definition each report carries."""

LOOP_PRS = {
    "spec_to_merge": (
        "Lead time, spec to merge: not computed; the store records no time a spec was written "
        "(PRs name their spec, counted in `spec_prs`)."
    ),
    "open_to_merge": "Lead time, PR opened to merged: median seconds over the week's merged PRs.",
    "merge_to_deploy": (
        "Lead time, merged to deployed: median seconds from merge to the first deploy carrying "
        "the PR."
    ),
    "verification_pass_rate": (
        "Verification pass rate: PRs whose CI passed at the first attempt (no run failed, none "
        "re-run) over PRs with CI recorded (`workflow_run`/`check_suite` completed), 95% Wilson."
    ),
    "ci_attempts": (
        "CI attempts per PR: mean CI runs (workflow run attempts, or check suites where no "
        "workflow run is recorded) over PRs with CI recorded; `max` the most."
    ),
    "review_rounds": (
        "Review rounds per PR: mean reviews that approved or requested changes "
        "(`pull_request_review` submitted) over PRs with a review recorded; `max` the most."
    ),
    "tokens_per_pr": "Tokens per PR: mean over PRs whose markers state tokens; `total` the sum.",
    "cost_per_pr": "Cost per PR (USD): mean over PRs whose markers state a cost; `total` the sum.",
}
"""The loop's per-PR metrics (per repository and ISO week of merge), with their definitions."""

LOOP_INCIDENTS = {
    "onset_to_detection": (
        "Time to detection: median seconds from the regression's onset (the deploy's finish plus "
        "the excursion's onset the detector measured) to the Watch turning `regressed`."
    ),
    "detection_to_attribution": (
        "Detection to attribution: median seconds from `regressed` to the incident opened with "
        "its ranked suspects (one step in Rearguard, so near zero)."
    ),
    "detection_to_revert": "Detection to revert PR: median seconds to the first revert PR opened.",
    "tokens_per_incident": (
        "Tokens per incident: mean tokens of the model calls the Fixer made for each incident "
        "(zero for an incident without any); `total` the sum."
    ),
    "cost_per_incident": "Cost per incident (USD): as tokens per incident, in dollars.",
}
"""The loop's per-incident metrics (per service and ISO week of detection)."""


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of `successes` out of `n` (shares may be fractional); None for
    no trials."""
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def metric(
    value: float | None, n: int, unit: str, missing: str, **extra: float | None
) -> dict[str, Any]:
    """One metric: `value` over `n` samples in `unit`, or null with `missing` as the reason."""
    if value is None or n <= 0:
        return {"value": None, "unit": unit, "n": n, "reason": missing}
    rounded = {k: None if v is None else round(float(v), 4) for k, v in extra.items()}
    return {"value": round(float(value), 4), "unit": unit, "n": n, "reason": None, **rounded}


def rate(successes: float, n: int, missing: str) -> dict[str, Any]:
    """A rate with its 95% Wilson interval (`low`, `high`), or null with the reason."""
    interval = wilson(successes, n)
    if interval is None:
        return metric(None, n, "ratio", missing)
    return metric(successes / n, n, "ratio", missing, low=interval[0], high=interval[1])


def _n(agg: Mapping[str, Any], key: str) -> int:
    return int(agg.get(key) or 0)


def dora_row(agg: Mapping[str, Any]) -> dict[str, Any]:
    """One service-week's DORA metrics from its aggregates (`ReportQueries.dora`)."""
    deploys, failed = _n(agg, "deploys"), _n(agg, "failed")
    lead_prs = _n(agg, "lead_prs")
    lead_missing = (
        "no PR was first deployed this week"
        if lead_prs == 0
        else f"none of the {lead_prs} PRs first deployed this week has an opening time"
    )
    recovery_missing = (
        "no deploy failed this week"
        if failed == 0
        else f"none of the {failed} failed deploys has a verified recovery"
    )
    no_deploys = "no deploys this week"
    return {
        "service": agg["service"],
        "week": agg["week"],
        "week_start": agg["week_start"],
        "deployment_frequency": metric(deploys, 1, "deploys/week", no_deploys),
        "lead_time_for_changes": metric(
            agg.get("lead_median"), _n(agg, "lead_n"), "seconds", lead_missing
        ),
        "change_failure_rate": rate(failed, deploys, no_deploys),
        "failed_deployment_recovery_time": metric(
            agg.get("recovery_median"), _n(agg, "recovered"), "seconds", recovery_missing
        ),
        "deployment_rework_rate": rate(_n(agg, "rework"), deploys, no_deploys),
    }


def loop_pr_row(agg: Mapping[str, Any]) -> dict[str, Any]:
    """One repository-week's loop metrics over the PRs merged that week."""
    prs, ci_prs = _n(agg, "prs"), _n(agg, "ci_prs")
    reviewed, token_prs = _n(agg, "reviewed_prs"), _n(agg, "token_prs")
    cost_prs = _n(agg, "cost_prs")
    return {
        "repo": agg["repo"],
        "week": agg["week"],
        "week_start": agg["week_start"],
        "prs": prs,
        "spec_prs": _n(agg, "spec_prs"),
        "spec_to_merge": metric(None, 0, "seconds", "the store records no time a spec was written"),
        "open_to_merge": metric(
            agg.get("open_to_merge"), _n(agg, "open_n"), "seconds",
            f"none of the {prs} PRs merged this week has an opening time",
        ),
        "merge_to_deploy": metric(
            agg.get("merge_to_deploy"), _n(agg, "deployed_n"), "seconds",
            f"none of the {prs} PRs merged this week was deployed yet",
        ),
        "verification_pass_rate": rate(
            _n(agg, "first_pass"), ci_prs, "no CI run recorded for the PRs merged this week"
        ),
        "ci_attempts": metric(
            agg.get("ci_attempts_mean"), ci_prs, "runs/PR",
            "no CI run recorded for the PRs merged this week", max=agg.get("ci_attempts_max"),
        ),
        "review_rounds": metric(
            agg.get("review_rounds_mean"), reviewed, "reviews/PR",
            "no review recorded for the PRs merged this week", max=agg.get("review_rounds_max"),
        ),
        "tokens_per_pr": metric(
            agg.get("tokens_mean"), token_prs, "tokens",
            "no PR merged this week states its tokens", total=agg.get("tokens_total"),
        ),
        "cost_per_pr": metric(
            agg.get("cost_mean"), cost_prs, "usd",
            "no PR merged this week states its cost", total=agg.get("cost_total"),
        ),
    }  # fmt: skip


def loop_incident_row(agg: Mapping[str, Any]) -> dict[str, Any]:
    """One service-week's loop metrics over the incidents detected that week."""
    incidents = _n(agg, "incidents")
    return {
        "service": agg["service"],
        "week": agg["week"],
        "week_start": agg["week_start"],
        "incidents": incidents,
        "onset_to_detection": metric(
            agg.get("onset_to_detection"), _n(agg, "onset_n"), "seconds",
            "the detector measured no onset for this week's incidents",
        ),
        "detection_to_attribution": metric(
            agg.get("detection_to_attribution"), _n(agg, "detected_n"), "seconds",
            "no `regressed` transition recorded for this week's incidents",
        ),
        "detection_to_revert": metric(
            agg.get("detection_to_revert"), _n(agg, "revert_n"), "seconds",
            "no revert PR was opened for this week's incidents",
        ),
        "tokens_per_incident": metric(
            agg.get("tokens_mean"), incidents, "tokens", "no incidents this week",
            total=agg.get("tokens_total"),
        ),
        "cost_per_incident": metric(
            agg.get("cost_mean"), incidents, "usd", "no incidents this week",
            total=agg.get("cost_total"),
        ),
    }  # fmt: skip
