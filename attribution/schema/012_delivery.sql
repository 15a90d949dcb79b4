-- Delivery metrics: every pull-request review submitted (review rounds per PR), and each PR's CI
-- and review summary (`pr_loop`), rewritten from `ci_runs` and `pr_reviews` whenever either
-- changes for that PR, so the loop report joins one row per PR instead of aggregating every run.
-- GitHub's review id is the key of a review: a redelivery, or the same review told twice, is one
-- row, and a summary rebuilt from the rows counts it once whatever the order of arrival.
CREATE TABLE pr_reviews (
    id            BIGINT PRIMARY KEY,
    repo          VARCHAR NOT NULL,
    number        INTEGER NOT NULL,
    state         VARCHAR NOT NULL,      -- approved | changes_requested | commented | dismissed
    reviewer      VARCHAR,
    commit_id     VARCHAR,
    submitted_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE pr_loop (
    repo           VARCHAR NOT NULL,
    number         INTEGER NOT NULL,
    ci_runs        INTEGER NOT NULL,     -- workflow run attempts, or check suites when no workflow run
    ci_attempt     INTEGER,              -- the highest workflow run attempt (1: never re-run)
    ci_failed      BOOLEAN,              -- a run of those concluded other than success/neutral/skipped
    reviews        INTEGER NOT NULL,     -- reviews submitted
    review_rounds  INTEGER NOT NULL,     -- of those, the ones that approved or requested changes
    PRIMARY KEY (repo, number)
);

-- CI runs kept before this migration.
INSERT INTO pr_loop
SELECT repo, number,
       CASE WHEN wf > 0 THEN wf ELSE cs END, CASE WHEN wf > 0 THEN wf_attempt ELSE 1 END,
       CASE WHEN wf > 0 THEN wf_failed ELSE cs_failed END, 0, 0
FROM (
    SELECT repo, number, count(*) FILTER (WHERE kind = 'workflow_run') AS wf,
           count(*) FILTER (WHERE kind <> 'workflow_run') AS cs,
           max(attempt) FILTER (WHERE kind = 'workflow_run') AS wf_attempt,
           bool_or(coalesce(conclusion NOT IN ('success', 'neutral', 'skipped'), false))
               FILTER (WHERE kind = 'workflow_run') AS wf_failed,
           bool_or(coalesce(conclusion NOT IN ('success', 'neutral', 'skipped'), false))
               FILTER (WHERE kind <> 'workflow_run') AS cs_failed
    FROM ci_runs GROUP BY repo, number
);
