-- Two more public views for the delivery reports' inputs (README "The public views"): every CI
-- run GitHub told of and every PR review submitted, so that an analyst can recompute
-- verification pass rate and review rounds, or slice them otherwise.
CREATE VIEW public.ci_runs AS
SELECT id AS run_id, repo, number, kind, head_sha, attempt, conclusion, finished_at
FROM main.ci_runs;

CREATE VIEW public.reviews AS
SELECT id AS review_id, repo, number, state, reviewer, commit_id, submitted_at
FROM main.pr_reviews;
