-- Lessons: when each repository's lessons were last derived and proposed, from which confirmed
-- incidents, and what became of the proposal (so a restart does not propose twice in a day).
CREATE TABLE lessons_runs (
    repo       VARCHAR PRIMARY KEY,
    ran_at     TIMESTAMPTZ NOT NULL,     -- claimed before any call to the forge
    incidents  VARCHAR[] NOT NULL,       -- the confirmed incidents the run learnt from
    state      VARCHAR NOT NULL,         -- running | opened | updated | unchanged | failed
    url        VARCHAR,                  -- the lessons PR
    error      VARCHAR
);
