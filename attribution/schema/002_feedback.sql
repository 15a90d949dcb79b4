-- Outcomes and people's verdicts on incidents: what attribution learns from.
CREATE TABLE feedback (
    id           VARCHAR PRIMARY KEY,   -- idempotency key of the signal (e.g. a Slack action id)
    incident_id  VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,      -- confirmed | false_alarm | wrong_pr | recovered | not_recovered
    pr_number    INTEGER,               -- the PR the signal is about, when it names one
    actor        VARCHAR NOT NULL,      -- who said it: a person's handle, or "rearguard" for outcomes
    source       VARCHAR NOT NULL,      -- api | slack | loop
    note         VARCHAR,
    created_at   TIMESTAMPTZ NOT NULL
);
