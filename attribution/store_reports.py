"""Report queries (`store.reports`): PR reviews as they arrive, and the aggregates of the delivery
reports, each one SQL statement of `GROUP BY`s over the internal tables.

The reports must stay fast over a year of history (tens of thousands of deploys, hundreds of
thousands of PRs): every figure is computed by DuckDB's aggregates in the one statement, and only
the result rows, one per service (or repository) and ISO week, come back to Python, where
`attribution.delivery` turns them into metrics. Weeks are ISO weeks in UTC (`%G-W%V`), starting
on Monday.

Each read filters on `since` (Unix seconds, or None for all history), `service` and `repo` (None
for all); the filters are bound parameters, never text in the SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from attribution.store_writer import StoreWriter, fetch_records

_WEEK = "(epoch({})::BIGINT - 345600) // 604800"
"""A time's week as a number: weeks since Monday 1970-01-05 00:00 UTC (345600 s after the epoch);
integer arithmetic, several times faster than `date_trunc` on a time zone over every row."""
_START = "({} * 604800 + 345600)"
_LABEL = "strftime(make_timestamp({} * 1000000), '%G-W%V')"
_OK = "('success', 'neutral', 'skipped')"


@dataclass(frozen=True, slots=True)
class Review:
    """One submitted pull-request review."""

    id: int
    repo: str
    number: int
    state: str
    reviewer: str | None
    commit_id: str | None
    submitted_at: float


@dataclass(frozen=True, slots=True)
class Window:
    """What a report covers: from `since` (None: all history) to `until`, one service or
    repository or all."""

    until: float
    since: float | None = None
    service: str | None = None
    repo: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since if self.since is not None else 0.0,
            "until": self.until,
            "service": self.service,
            "repo": self.repo,
        }


_DORA = f"""
WITH d AS (
    SELECT id, service, repo, finished_at, {_WEEK.format("finished_at")} AS week
    FROM deploys
    WHERE finished_at >= to_timestamp($since) AND finished_at <= to_timestamp($until)
      AND ($service IS NULL OR service = $service) AND ($repo IS NULL OR repo = $repo)
),
span AS (
    SELECT service,
           CASE WHEN $since > 0 THEN {_WEEK.format("to_timestamp($since)")} ELSE min(week) END
               AS first,
           {_WEEK.format("to_timestamp($until)")} AS last
    FROM d GROUP BY service
),
weeks AS (SELECT service, unnest(range(first, last + 1)) AS week FROM span),
freq AS (SELECT service, week, count(*) AS deploys FROM d GROUP BY ALL),
first_deploy AS (
    SELECT d.service, dp.repo, dp.number, min(d.finished_at) AS deployed_at
    FROM d JOIN deploy_prs dp ON dp.deploy_id = d.id GROUP BY ALL
),
lead AS (
    SELECT f.service, {_WEEK.format("f.deployed_at")} AS week, count(*) AS lead_prs,
           count(x.opened_at) AS lead_n,
           median(epoch(f.deployed_at) - epoch(x.opened_at)) AS lead_median
    FROM first_deploy f LEFT JOIN pr_facts x ON x.repo = f.repo AND x.number = f.number
    GROUP BY ALL
),
failed AS (
    SELECT d.service, d.week, count(DISTINCT d.id) AS failed,
           count(t.time_to_restore) AS recovered, median(t.time_to_restore) AS recovery_median
    FROM d JOIN incidents i ON i.deploy_id = d.id
    LEFT JOIN incident_times t ON t.incident_id = i.id
    WHERE i.id NOT IN (SELECT incident_id FROM feedback WHERE kind = 'false_alarm')
    GROUP BY ALL
),
rework_ids AS (
    SELECT dp.deploy_id AS id FROM deploy_prs dp
    JOIN pull_requests p ON p.repo = dp.repo AND p.number = dp.number
    WHERE dp.deploy_id IN (SELECT id FROM d) AND (starts_with(p.title, 'Revert "')
       OR p.url IN (SELECT url FROM actions WHERE kind IN ('revert', 'fix') AND url IS NOT NULL))
    UNION SELECT deploy_id FROM revert_rounds WHERE deploy_id IS NOT NULL
),
rework AS (
    SELECT d.service, d.week, count(*) AS rework FROM d WHERE d.id IN (SELECT id FROM rework_ids)
    GROUP BY ALL
)
SELECT w.service, {_LABEL.format(_START.format("w.week"))} AS week,
       {_START.format("w.week")}::DOUBLE AS week_start,
       coalesce(freq.deploys, 0) AS deploys, coalesce(lead.lead_prs, 0) AS lead_prs,
       coalesce(lead.lead_n, 0) AS lead_n, lead.lead_median,
       coalesce(failed.failed, 0) AS failed, coalesce(failed.recovered, 0) AS recovered,
       failed.recovery_median, coalesce(rework.rework, 0) AS rework
FROM weeks w
LEFT JOIN freq USING (service, week) LEFT JOIN lead USING (service, week)
LEFT JOIN failed USING (service, week) LEFT JOIN rework USING (service, week)
ORDER BY w.service, w.week
"""  # noqa: S608 - built from the constants above only

_LOOP_PRS = f"""
WITH served AS (
    SELECT dp.repo, dp.number, min(d.finished_at) AS deployed_at
    FROM deploy_prs dp JOIN deploys d ON d.id = dp.deploy_id
    WHERE $service IS NULL OR d.service = $service GROUP BY ALL
),
p AS (
    SELECT p.repo, p.number, p.merged_at, p.spec, p.tokens, p.cost_usd, x.opened_at,
           s.deployed_at, {_WEEK.format("p.merged_at")} AS week
    FROM pull_requests p
    LEFT JOIN pr_facts x ON x.repo = p.repo AND x.number = p.number
    LEFT JOIN served s ON s.repo = p.repo AND s.number = p.number
    WHERE p.merged_at >= to_timestamp($since) AND p.merged_at <= to_timestamp($until)
      AND ($repo IS NULL OR p.repo = $repo) AND ($service IS NULL OR s.number IS NOT NULL)
)
SELECT p.repo, {_LABEL.format(_START.format("p.week"))} AS week,
       {_START.format("p.week")}::DOUBLE AS week_start,
       count(*) AS prs, count(p.spec) AS spec_prs,
       count(p.opened_at) AS open_n,
       median(epoch(p.merged_at) - epoch(p.opened_at)) AS open_to_merge,
       count(p.deployed_at) AS deployed_n,
       median(epoch(p.deployed_at) - epoch(p.merged_at)) AS merge_to_deploy,
       count(*) FILTER (WHERE l.ci_runs > 0) AS ci_prs,
       count(*) FILTER (WHERE l.ci_runs > 0 AND NOT l.ci_failed AND l.ci_attempt = 1)
           AS first_pass,
       avg(l.ci_runs) FILTER (WHERE l.ci_runs > 0) AS ci_attempts_mean,
       max(l.ci_runs) FILTER (WHERE l.ci_runs > 0) AS ci_attempts_max,
       count(*) FILTER (WHERE l.reviews > 0) AS reviewed_prs,
       avg(l.review_rounds) FILTER (WHERE l.reviews > 0) AS review_rounds_mean,
       max(l.review_rounds) FILTER (WHERE l.reviews > 0) AS review_rounds_max,
       count(p.tokens) AS token_prs, avg(p.tokens) AS tokens_mean, sum(p.tokens) AS tokens_total,
       count(p.cost_usd) AS cost_prs, avg(p.cost_usd) AS cost_mean, sum(p.cost_usd) AS cost_total
FROM p LEFT JOIN pr_loop l ON l.repo = p.repo AND l.number = p.number
GROUP BY p.repo, p.week ORDER BY p.repo, p.week
"""  # noqa: S608 - built from the constants above only

_PR_LOOP = f"""
INSERT OR REPLACE INTO pr_loop
SELECT $repo, n.number,
       CASE WHEN c.wf > 0 THEN c.wf ELSE coalesce(c.cs, 0) END,
       CASE WHEN c.wf > 0 THEN c.wf_attempt WHEN c.cs > 0 THEN 1 END,
       CASE WHEN c.wf > 0 THEN c.wf_failed ELSE c.cs_failed END,
       coalesce(r.reviews, 0), coalesce(r.rounds, 0)
FROM (SELECT DISTINCT unnest($numbers::INTEGER[]) AS number) n
LEFT JOIN (
    SELECT number, count(*) FILTER (WHERE kind = 'workflow_run') AS wf,
           count(*) FILTER (WHERE kind <> 'workflow_run') AS cs,
           max(attempt) FILTER (WHERE kind = 'workflow_run') AS wf_attempt,
           bool_or(coalesce(conclusion NOT IN {_OK}, false))
               FILTER (WHERE kind = 'workflow_run') AS wf_failed,
           bool_or(coalesce(conclusion NOT IN {_OK}, false))
               FILTER (WHERE kind <> 'workflow_run') AS cs_failed
    FROM ci_runs WHERE repo = $repo AND list_contains($numbers, number) GROUP BY number
) c ON c.number = n.number
LEFT JOIN (
    SELECT number, count(*) AS reviews,
           count(*) FILTER (WHERE state IN ('approved', 'changes_requested')) AS rounds
    FROM pr_reviews WHERE repo = $repo AND list_contains($numbers, number) GROUP BY number
) r ON r.number = n.number
"""  # noqa: S608 - built from the constants above only
"""Rebuild the CI and review summary of PRs `$numbers` of `$repo` from their rows (the same
definitions as the 012 migration's backfill): a PR's workflow runs when it has any, else its
check suites, since GitHub sends both for one Actions run."""

_LOOP_INCIDENTS = f"""
WITH i AS (
    SELECT i.id, i.service, i.deploy_id, i.opened_at, d.finished_at,
           {_WEEK.format("i.opened_at")} AS week
    FROM incidents i JOIN deploys d ON d.id = i.deploy_id
    WHERE i.opened_at >= to_timestamp($since) AND i.opened_at <= to_timestamp($until)
      AND ($service IS NULL OR i.service = $service) AND ($repo IS NULL OR d.repo = $repo)
),
det AS (
    SELECT deploy_id, min(changed_at) AS detected_at FROM transitions
    WHERE to_phase = 'regressed' AND deploy_id IN (SELECT deploy_id FROM i) GROUP BY ALL
),
ons AS (
    SELECT deploy_id, min(onset) AS onset FROM observations
    WHERE onset IS NOT NULL AND deploy_id IN (SELECT deploy_id FROM i) GROUP BY ALL
),
spent AS (
    SELECT incident_id, sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost
    FROM llm_usage WHERE incident_id IN (SELECT id FROM i) GROUP BY ALL
)
SELECT i.service, {_LABEL.format(_START.format("i.week"))} AS week,
       {_START.format("i.week")}::DOUBLE AS week_start,
       count(*) AS incidents,
       count(ons.onset) AS onset_n,
       median(epoch(coalesce(det.detected_at, i.opened_at)) - epoch(i.finished_at) - ons.onset)
           AS onset_to_detection,
       count(det.detected_at) AS detected_n,
       -- the incident is opened in the step that turns the Watch `regressed`, its time read a
       -- moment before the transition's: that step is 0, not a negative time
       median(greatest(epoch(i.opened_at) - epoch(det.detected_at), 0))
           AS detection_to_attribution,
       count(t.time_to_revert) AS revert_n, median(t.time_to_revert) AS detection_to_revert,
       avg(coalesce(spent.tokens, 0)) AS tokens_mean,
       coalesce(sum(spent.tokens), 0) AS tokens_total,
       avg(coalesce(spent.cost, 0)) AS cost_mean, coalesce(sum(spent.cost), 0) AS cost_total
FROM i
LEFT JOIN det ON det.deploy_id = i.deploy_id
LEFT JOIN ons ON ons.deploy_id = i.deploy_id
LEFT JOIN incident_times t ON t.incident_id = i.id
LEFT JOIN spent ON spent.incident_id = i.id
GROUP BY i.service, i.week ORDER BY i.service, i.week
"""  # noqa: S608 - built from the constants above only


_DEPLOYED = """
WITH dep AS (
    SELECT p.repo, p.number, p.author_kind, p.agent_name, p.agent_model, p.spec, p.files
    FROM pull_requests p
    WHERE list_contains($repos, p.repo) AND p.merged_at >= to_timestamp($since)
      AND p.merged_at <= to_timestamp($until)
      AND EXISTS (SELECT 1 FROM deploy_prs dp WHERE dp.repo = p.repo AND dp.number = p.number)
)"""
_DEPLOYED_NAMED = """
WITH k AS (SELECT unnest($named, recursive := true)),
dep AS (
    SELECT p.repo, p.number, p.author_kind, p.agent_name, p.agent_model, p.spec, p.files
    FROM pull_requests p JOIN k ON k.repo = p.repo AND k.number = p.number
    WHERE list_contains($repos, p.repo) AND p.merged_at >= to_timestamp($since)
      AND p.merged_at <= to_timestamp($until)
      AND EXISTS (SELECT 1 FROM deploy_prs dp WHERE dp.repo = p.repo AND dp.number = p.number)
)"""
"""`_DEPLOYED` for the PRs named in `$named` only."""
_VALUES = {
    "agent": "SELECT repo, number, CASE WHEN author_kind = 'agent' THEN agent_name "
    "ELSE author_kind || ':' || agent_name END AS value FROM dep",
    "model": "SELECT repo, number, agent_model AS value FROM dep WHERE agent_model <> ''",
    "spec": "SELECT repo, number, spec AS value FROM dep WHERE spec <> ''",
    # `attribution.diffs.area_of` over `PrChange.paths`: the stored files (and the old path of a
    # rename) when the PR's files are known, else the paths of its webhook.
    "area": "SELECT repo, number, coalesce(nullif(CASE WHEN path LIKE '%/%/%' THEN "
    "split_part(path, '/', 1) || '/' || split_part(path, '/', 2) WHEN path LIKE '%/%' THEN "
    "split_part(path, '/', 1) END, ''), '.') AS value FROM (SELECT f.repo, f.number, "
    "unnest([f.path, f.previous_path]) AS path FROM pr_files f JOIN dep d ON d.repo = f.repo "
    "AND d.number = f.number UNION ALL SELECT d.repo, d.number, unnest(d.files) FROM dep d "
    "WHERE NOT EXISTS (SELECT 1 FROM pr_files f WHERE f.repo = d.repo AND f.number = d.number)) "
    "WHERE path IS NOT NULL",
}
"""Each dimension's values of a deployed PR, as `attribution.priors.dimensions_of` gives them."""
_TOTAL = _DEPLOYED + " SELECT repo, count(*) FROM dep GROUP BY repo"  # noqa: S608 - constants
_COUNTS = {
    d: f"{_DEPLOYED}, v AS ({sql}) SELECT repo, value, count(DISTINCT number) FROM v "  # noqa: S608
    "WHERE value IS NOT NULL GROUP BY repo, value"
    for d, sql in _VALUES.items()
}
_NAMED = {
    d: f"{_DEPLOYED_NAMED}, v AS ({sql}) SELECT d.repo, d.number, "  # noqa: S608
    "list(DISTINCT v.value ORDER BY v.value) FILTER (WHERE v.value IS NOT NULL) FROM dep d "
    "LEFT JOIN v ON v.repo = d.repo AND v.number = d.number GROUP BY d.repo, d.number"
    for d, sql in _VALUES.items()
}


Key = tuple[str, int]
"""A PR: (repository, number)."""


@dataclass(frozen=True, slots=True)
class RegressionCounts:
    """Deployed PRs per repository (`totals`), per repository and value (`counts`), and the
    values of the PRs asked about (`values`, only those deployed in the window)."""

    totals: dict[str, int]
    counts: dict[str, dict[str, int]]
    values: dict[Key, tuple[str, ...]]


def write_pr_loop(cur: duckdb.DuckDBPyConnection, repo: str, numbers: Sequence[int]) -> None:
    """Rebuild the loop summary of PRs `numbers` of `repo`, inside the caller's transaction
    (after a CI run or a review was kept)."""
    if numbers:
        cur.execute(_PR_LOOP, {"repo": repo, "numbers": list(numbers)})


class ReportQueries:
    """PR reviews, and the aggregates the delivery reports are made of."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    async def record_review(self, review: Review) -> bool:
        """Keep a submitted review once (a redelivery, or the same review told again, changes
        nothing); whether it was new."""

        def write(cur: duckdb.DuckDBPyConnection) -> bool:
            rows = cur.execute(
                "INSERT INTO pr_reviews VALUES (?, ?, ?, ?, ?, ?, to_timestamp(?)) "
                "ON CONFLICT DO NOTHING RETURNING id",
                [review.id, review.repo, review.number, review.state, review.reviewer,
                 review.commit_id, review.submitted_at],
            ).fetchall()  # fmt: skip
            if rows:
                write_pr_loop(cur, review.repo, [review.number])
            return bool(rows)

        return await self._writer.tx(write)

    async def _rows(self, sql: str, window: Window) -> list[dict[str, Any]]:
        params = window.params()
        return await self._writer.call(lambda cur: fetch_records(cur.execute(sql, params), dict))

    async def dora(self, window: Window) -> list[dict[str, Any]]:
        """Per service and ISO week (every week from the window's start, or the service's first
        deploy, to its end): deploys, lead-time PRs and median, failed deploys, recovered ones
        and the median recovery, rework deploys."""
        return await self._rows(_DORA, window)

    async def loop_prs(self, window: Window) -> list[dict[str, Any]]:
        """Per repository and ISO week of merge: the PRs' lead times, CI, reviews and spend."""
        return await self._rows(_LOOP_PRS, window)

    async def loop_incidents(self, window: Window) -> list[dict[str, Any]]:
        """Per service and ISO week of detection: time to diagnosis and the Fixer's spend."""
        return await self._rows(_LOOP_INCIDENTS, window)

    async def regression_counts(
        self, dimension: str, window: Window, repos: Sequence[str], named: Sequence[Key]
    ) -> RegressionCounts:
        """Over the PRs of `repos` merged in the window and deployed: how many per repository,
        how many per repository and value of `dimension`, and the values of the `named` ones
        among them (the PRs incidents blame; every deployed one is there, with no value if it
        has none), all counted by DuckDB in three statements."""
        params = {"since": window.params()["since"], "until": window.until, "repos": list(repos)}
        keys = [{"repo": r, "number": n} for r, n in named]
        with_named = params | {"named": keys or [{"repo": "", "number": 0}]}

        def read(cur: duckdb.DuckDBPyConnection) -> RegressionCounts:
            totals = {str(r): int(n) for r, n in cur.execute(_TOTAL, params).fetchall()}
            counts: dict[str, dict[str, int]] = {}
            for repo, value, n in cur.execute(_COUNTS[dimension], params).fetchall():
                counts.setdefault(str(repo), {})[str(value)] = int(n)
            values = {
                (str(r), int(n)): tuple(v or ())
                for r, n, v in cur.execute(_NAMED[dimension], with_named).fetchall()
            }
            return RegressionCounts(totals, counts, values)

        return await self._writer.call(read)

    async def service_repos(self, service: str | None) -> list[str]:
        """The repositories the store's deploys (of `service`, or of all) came from."""
        rows = await self._writer.call(
            lambda cur: cur.execute(
                "SELECT DISTINCT repo FROM deploys WHERE repo IS NOT NULL "
                "AND (? IS NULL OR service = ?) ORDER BY repo",
                [service, service],
            ).fetchall()
        )
        return [str(r[0]) for r in rows]
