-- The public schema: stable views over the internal tables, the contract for `POST /v1/query`,
-- `rearguard query`, `rearguard export` and anyone reading the file with DuckDB. Internal tables
-- (schema `main`) may change between versions; a later migration that changes them redefines
-- these views (CREATE OR REPLACE VIEW) so that their names, columns and meaning stay. Times are
-- TIMESTAMPTZ; durations are seconds (DOUBLE). Every column is described in README.md ("The
-- public views").
CREATE SCHEMA public;

CREATE VIEW public.deploys AS
SELECT d.id AS deploy_id, d.service, d.environment, d.repo, d.sha, d.previous_sha,
       d.started_at, d.finished_at AS deployed_at, d.url, d.source, d.created_at AS recorded_at,
       w.phase, w.verdict ->> 'status' AS verdict, w.reason AS verdict_reason,
       i.id AS incident_id,
       (SELECT count(*) FROM main.deploy_prs p WHERE p.deploy_id = d.id) AS pr_count
FROM main.deploys d
LEFT JOIN main.watches w ON w.deploy_id = d.id
LEFT JOIN main.incidents i ON i.deploy_id = d.id;

CREATE VIEW public.prs AS
SELECT p.repo, p.number, p.title, p.author, p.url, p.merge_sha, p.head_sha, p.base_ref,
       p.head_ref, f.opened_at, p.merged_at, p.labels, p.files, p.author_kind, p.agent_name,
       p.agent_session, p.agent_model, p.agent_role, p.agent_source, p.agent_grain, p.spec,
       p.tokens, p.cost_usd, p.recorded_at
FROM main.pull_requests p
LEFT JOIN main.pr_facts f ON f.repo = p.repo AND f.number = p.number;

CREATE VIEW public.deploy_prs AS
SELECT deploy_id, repo, number FROM main.deploy_prs;

CREATE VIEW public.agent_sessions AS
SELECT id AS session_id, agent_name, model, role, first_seen, tokens, cost_usd
FROM main.agent_sessions;

CREATE VIEW public.incidents AS
SELECT i.id AS incident_id, i.deploy_id, i.service, i.environment, i.sli, i.opened_at,
       i.verdict ->> 'status' AS verdict, i.ambiguous, i.confidence, i.revert_unit, i.reason,
       t.onset_at, t.detected_at, t.revert_opened_at, t.recovered_at, t.time_to_revert,
       t.time_to_restore
FROM main.incidents i
LEFT JOIN main.incident_times t ON t.incident_id = i.id;

CREATE VIEW public.suspects AS
SELECT incident_id, rank, repo, number, probability, reason FROM main.suspects;

CREATE VIEW public.actions AS
SELECT id AS action_id, incident_id, kind, status, attempts, created_at, updated_at, url, error
FROM main.actions;

CREATE VIEW public.revert_rounds AS
SELECT incident_id, round, prs, action_id, decided_at, reason, deploy_id, outcome, outcome_at,
       note
FROM main.revert_rounds;

CREATE VIEW public.observations AS
SELECT deploy_id, seq, observed_at, sli, status, reason, mode, baseline_value, watch_value,
       null_value, baseline_bad, baseline_total, watch_bad, watch_total, statistic, threshold,
       effect, onset
FROM main.observations;

CREATE VIEW public.feedback AS
SELECT id AS feedback_id, incident_id, kind, pr_number, actor, source, note, created_at
FROM main.feedback;

CREATE VIEW public.fixes AS
SELECT a.incident_id, a.id AS action_id, a.status, a.detail ->> 'kind' AS kind, a.url,
       TRY_CAST(a.detail ->> 'number' AS INTEGER) AS number,
       TRY_CAST(a.detail ->> 'pr' AS INTEGER) AS for_pr, a.detail ->> 'reason' AS reason,
       a.created_at, a.updated_at, a.error, u.calls AS llm_calls, u.models AS llm_models, u.input_tokens, u.output_tokens,
       u.cost_usd
FROM main.actions a
LEFT JOIN (
    SELECT incident_id, count(*) AS calls, list(DISTINCT model ORDER BY model) AS models,
           sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
           sum(cost_usd) AS cost_usd
    FROM main.llm_usage GROUP BY incident_id
) u ON u.incident_id = a.incident_id
WHERE a.kind = 'fix';
