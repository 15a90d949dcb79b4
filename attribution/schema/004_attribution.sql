-- Attribution evidence: what each PR changed, its CI history, and the errors and alerts seen.

CREATE TABLE pr_files (
    repo           VARCHAR NOT NULL,
    number         INTEGER NOT NULL,
    path           VARCHAR NOT NULL,
    previous_path  VARCHAR,                -- the path before a rename
    status         VARCHAR NOT NULL,       -- added | removed | modified | renamed | copied | changed
    additions      INTEGER NOT NULL,
    deletions      INTEGER NOT NULL,
    ranges         JSON NOT NULL,          -- changed line ranges on the new side: [[first, last], ...]
    PRIMARY KEY (repo, number, path)
);

CREATE TABLE pr_facts (
    repo          VARCHAR NOT NULL,
    number        INTEGER NOT NULL,
    opened_at     TIMESTAMPTZ,             -- with merged_at: the PR's lead time
    files_known   BOOLEAN NOT NULL,        -- pr_files holds every file of the PR
    PRIMARY KEY (repo, number)
);

CREATE TABLE ci_runs (
    id           VARCHAR PRIMARY KEY,      -- "workflow_run:<id>:<attempt>" | "check_suite:<id>"
    repo         VARCHAR NOT NULL,
    number       INTEGER NOT NULL,         -- one row per PR the run names
    kind         VARCHAR NOT NULL,         -- workflow_run | check_suite
    head_sha     VARCHAR NOT NULL,
    attempt      INTEGER NOT NULL,
    conclusion   VARCHAR,                  -- success | failure | cancelled | timed_out | ...
    finished_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE signals (
    id           VARCHAR PRIMARY KEY,      -- "sentry:<event or issue id>" | "alertmanager:<fingerprint>:<startsAt>"
    source       VARCHAR NOT NULL,         -- sentry | alertmanager
    service      VARCHAR NOT NULL,
    key          VARCHAR NOT NULL,         -- error signature (Sentry issue) or alert fingerprint
    seen_at      TIMESTAMPTZ NOT NULL,     -- first seen (errors) or startsAt (alerts)
    record       JSON NOT NULL             -- the parsed ErrorEvent or FiringAlert
);
