-- Recovery: each revert round of an incident, the deploy that carried it and what followed, and
-- the incident's times (time to revert, time to restore).

CREATE TABLE revert_rounds (
    incident_id  VARCHAR NOT NULL,
    round        INTEGER NOT NULL,      -- 1 for the first revert, 2 for the next suspect, ...
    prs          INTEGER[] NOT NULL,    -- the PRs this round reverts
    action_id    VARCHAR NOT NULL,      -- the revert action's idempotency key
    decided_at   TIMESTAMPTZ NOT NULL,
    reason       VARCHAR NOT NULL,      -- why these PRs
    deploy_id    VARCHAR,               -- the deploy whose range carried the revert, once seen
    outcome      VARCHAR,               -- recovered | not_recovered | inconclusive | closed
    outcome_at   TIMESTAMPTZ,
    note         VARCHAR,               -- the numbers or the person behind the outcome
    PRIMARY KEY (incident_id, round)
);

CREATE TABLE incident_times (
    incident_id       VARCHAR PRIMARY KEY,
    onset_at          TIMESTAMPTZ NOT NULL,   -- the bad deploy finished
    detected_at       TIMESTAMPTZ NOT NULL,   -- the incident was opened
    revert_opened_at  TIMESTAMPTZ,            -- the first revert PR was opened
    recovered_at      TIMESTAMPTZ,            -- recovery was verified
    time_to_revert    DOUBLE,                 -- seconds, detection -> first revert PR
    time_to_restore   DOUBLE                  -- seconds, onset -> recovery verified
);

-- Incidents from before this migration: their one revert is round 1.
INSERT INTO revert_rounds
SELECT id, 1, revert_unit, 'revert-' || id, opened_at, reason, NULL, NULL, NULL, NULL
FROM incidents WHERE len(revert_unit) > 0;
