-- What a Watch read once of each SLI's baselines (the window before the deploy, its seasonal
-- copies) and the step plan it read them on, so that a restart reads them back from here instead
-- of asking Prometheus for every Watch's baselines at once (README "Capacity"). Written with the
-- evaluation that first read them complete, in its transition; one row per Watch and SLI.
CREATE TABLE watch_baselines (
    deploy_id  VARCHAR NOT NULL,
    sli        VARCHAR NOT NULL,
    plan       JSON NOT NULL,
    baselines  JSON NOT NULL,
    spans      JSON NOT NULL,
    read_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (deploy_id, sli)
);
-- When each evaluation was due (its Watch's next_due), beside when it ran (observed_at): the
-- evaluation lag, queryable per Watch. NULL for evaluations kept before this column.
ALTER TABLE observations ADD COLUMN due_at TIMESTAMPTZ;
