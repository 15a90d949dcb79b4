"""The ten example queries of `make bench-store`: what an analyst asks of the store's public views
(`POST /v1/query`), each with the question it answers in one line.

They read only the documented views (`deploys`, `prs`, `deploy_prs`, `incidents`, `suspects`,
`observations`, `feedback`, ...), never the internal tables, as any user SQL must. README's "The
public views" section describes every column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    question: str
    sql: str


EXAMPLES = (
    Example(
        "deploys_per_week",
        "How many deploys did each service ship per week over the last quarter?",
        "SELECT service, date_trunc('week', deployed_at) AS week, count(*) AS deploys "
        "FROM deploys WHERE deployed_at >= (SELECT max(deployed_at) FROM deploys) "
        "- INTERVAL 90 DAY GROUP BY ALL ORDER BY service, week",
    ),
    Example(
        "change_failure_by_service",
        "Which services fail most often: the share of deploys that opened an incident?",
        "SELECT service, count(*) AS deploys, count(incident_id) AS failed, "
        "round(count(incident_id) / count(*), 4) AS change_failure_rate FROM deploys "
        "GROUP BY service ORDER BY change_failure_rate DESC",
    ),
    Example(
        "culprits_by_agent",
        "Which agents wrote the PRs that incidents blamed first, against how many they merged?",
        "WITH top AS (SELECT s.repo, s.number FROM suspects s WHERE s.rank = 1) "
        "SELECT p.agent_name, p.author_kind, count(*) AS prs, count(t.number) AS blamed, "
        "round(count(t.number) / count(*), 4) AS blame_rate FROM prs p "
        "LEFT JOIN top t ON t.repo = p.repo AND t.number = p.number "
        "GROUP BY ALL ORDER BY blame_rate DESC",
    ),
    Example(
        "lead_time_by_model",
        "How long from a PR's opening to its merge, per agent model (median and p90 hours)?",
        "SELECT agent_model, count(*) AS prs, "
        "round(median(epoch(merged_at) - epoch(opened_at)) / 3600, 2) AS median_hours, "
        "round(quantile_cont(epoch(merged_at) - epoch(opened_at), 0.9) / 3600, 2) AS p90_hours "
        "FROM prs WHERE agent_model IS NOT NULL GROUP BY agent_model ORDER BY median_hours",
    ),
    Example(
        "restore_time_by_month",
        "What was the median time to restore service after a bad deploy, month by month?",
        "SELECT date_trunc('month', opened_at) AS month, count(*) AS incidents, "
        "round(median(time_to_restore) / 3600, 2) AS median_restore_hours FROM incidents "
        "GROUP BY month ORDER BY month",
    ),
    Example(
        "spend_per_spec",
        "Which specs cost the most agent tokens and dollars, and how many PRs did each take?",
        "SELECT spec, count(*) AS prs, sum(tokens) AS tokens, round(sum(cost_usd), 2) AS usd "
        "FROM prs WHERE spec IS NOT NULL GROUP BY spec ORDER BY usd DESC LIMIT 20",
    ),
    Example(
        "incident_timeline",
        "For the latest incident: its deploy, suspects with their PR authors, and feedback.",
        "WITH last AS (SELECT * FROM incidents ORDER BY opened_at DESC LIMIT 1) "
        "SELECT l.incident_id, l.service, l.opened_at, s.rank, s.number, p.title, "
        "p.agent_name, s.probability, (SELECT list(f.kind ORDER BY f.created_at) FROM feedback f "
        "WHERE f.incident_id = l.incident_id) AS feedback FROM last l "
        "JOIN suspects s ON s.incident_id = l.incident_id "
        "JOIN prs p ON p.repo = s.repo AND p.number = s.number ORDER BY s.rank",
    ),
    Example(
        "error_ratio_before_incidents",
        "How far did the error ratio move past its baseline in the evaluations that regressed?",
        "SELECT sli, count(*) AS evaluations, round(avg(watch_value), 5) AS watch_ratio, "
        "round(avg(baseline_value), 5) AS baseline_ratio, round(avg(effect), 5) AS mean_effect "
        "FROM observations WHERE status = 'regressed' GROUP BY sli",
    ),
    Example(
        "wrong_pr_feedback",
        "Where did people say Rearguard blamed the wrong PR, and who wrote that PR?",
        "SELECT f.incident_id, f.pr_number, f.actor, p.agent_name, p.author_kind, f.created_at "
        "FROM feedback f JOIN suspects s ON s.incident_id = f.incident_id "
        "AND s.number = f.pr_number JOIN prs p ON p.repo = s.repo AND p.number = s.number "
        "WHERE f.kind = 'wrong_pr' ORDER BY f.created_at DESC LIMIT 50",
    ),
    Example(
        "prs_per_deploy",
        "How big are deploys: PRs per deploy per service (mean and max), last 30 days?",
        "SELECT d.service, count(DISTINCT d.deploy_id) AS deploys, "
        "round(count(dp.number) / count(DISTINCT d.deploy_id), 2) AS prs_per_deploy, "
        "max(d.pr_count) AS max_prs FROM deploys d "
        "LEFT JOIN deploy_prs dp ON dp.deploy_id = d.deploy_id "
        "WHERE d.deployed_at >= (SELECT max(deployed_at) FROM deploys) - INTERVAL 30 DAY "
        "GROUP BY d.service ORDER BY deploys DESC",
    ),
)
"""Ten questions an analyst asks of a year of history, answered from the public views."""
