-- Rearguard store, version 1. Times are TIMESTAMPTZ; every row is written before its side effect.

CREATE TABLE journal (
    id           VARCHAR PRIMARY KEY,   -- "<source>:<delivery id>"; a redelivery collides here
    source       VARCHAR NOT NULL,      -- github | cd | alertmanager | sentry | slack
    event        VARCHAR NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    status       VARCHAR NOT NULL,      -- accepted -> applied | ignored | rejected
    error        VARCHAR,
    body         JSON                   -- NULL for rejected deliveries: unverified bodies are not kept
);

CREATE TABLE deploys (
    id            VARCHAR PRIMARY KEY,
    service       VARCHAR NOT NULL,
    environment   VARCHAR NOT NULL,
    repo          VARCHAR,
    sha           VARCHAR NOT NULL,
    previous_sha  VARCHAR,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ NOT NULL,
    url           VARCHAR,
    source        VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE watches (
    deploy_id   VARCHAR PRIMARY KEY,
    phase       VARCHAR NOT NULL,
    next_due    TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    reason      VARCHAR,
    verdict     JSON
);

CREATE TABLE transitions (
    deploy_id   VARCHAR NOT NULL,
    seq         INTEGER NOT NULL,
    from_phase  VARCHAR,
    to_phase    VARCHAR NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL,
    reason      VARCHAR,
    PRIMARY KEY (deploy_id, seq)
);

CREATE TABLE agent_sessions (
    id          VARCHAR PRIMARY KEY,
    agent_name  VARCHAR NOT NULL,
    model       VARCHAR,
    role        VARCHAR,
    first_seen  TIMESTAMPTZ NOT NULL,
    tokens      BIGINT,
    cost_usd    DOUBLE
);

CREATE TABLE pull_requests (
    repo           VARCHAR NOT NULL,
    number         INTEGER NOT NULL,
    title          VARCHAR NOT NULL,
    author         VARCHAR NOT NULL,
    url            VARCHAR NOT NULL,
    merge_sha      VARCHAR NOT NULL,
    head_sha       VARCHAR NOT NULL,
    base_ref       VARCHAR NOT NULL,
    merged_at      TIMESTAMPTZ NOT NULL,
    body           VARCHAR NOT NULL,
    labels         VARCHAR[] NOT NULL,
    files          VARCHAR[] NOT NULL,
    node_id        VARCHAR,
    author_kind    VARCHAR NOT NULL,    -- agent | human
    agent_name     VARCHAR NOT NULL,
    agent_session  VARCHAR,
    agent_model    VARCHAR,
    agent_role     VARCHAR,
    spec           VARCHAR,
    tokens         BIGINT,
    cost_usd       DOUBLE,
    recorded_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (repo, number)
);

CREATE TABLE deploy_prs (
    deploy_id  VARCHAR NOT NULL,
    repo       VARCHAR NOT NULL,
    number     INTEGER NOT NULL,
    PRIMARY KEY (deploy_id, repo, number)
);

CREATE TABLE observations (
    deploy_id       VARCHAR NOT NULL,
    seq             INTEGER NOT NULL,
    observed_at     TIMESTAMPTZ NOT NULL,
    sli             VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    reason          VARCHAR NOT NULL,
    baseline_value  DOUBLE,
    watch_value     DOUBLE,
    baseline_bad    DOUBLE,
    baseline_total  DOUBLE,
    watch_bad       DOUBLE,
    watch_total     DOUBLE,
    statistic       DOUBLE,
    threshold       DOUBLE,
    effect          DOUBLE,
    PRIMARY KEY (deploy_id, seq, sli)
);

CREATE TABLE incidents (
    id           VARCHAR PRIMARY KEY,
    deploy_id    VARCHAR NOT NULL UNIQUE,   -- one incident per deploy: a restart cannot open a second
    service      VARCHAR NOT NULL,
    environment  VARCHAR NOT NULL,
    sli          VARCHAR,
    opened_at    TIMESTAMPTZ NOT NULL,
    verdict      JSON NOT NULL,
    ambiguous    BOOLEAN NOT NULL,
    confidence   DOUBLE NOT NULL,
    revert_unit  INTEGER[] NOT NULL,
    reason       VARCHAR NOT NULL
);

CREATE TABLE suspects (
    incident_id  VARCHAR NOT NULL,
    rank         INTEGER NOT NULL,
    repo         VARCHAR NOT NULL,
    number       INTEGER NOT NULL,
    probability  DOUBLE NOT NULL,
    reason       VARCHAR NOT NULL,
    PRIMARY KEY (incident_id, rank)
);

CREATE TABLE actions (
    id           VARCHAR PRIMARY KEY,       -- the idempotency key, e.g. "revert:<incident>"
    incident_id  VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,          -- revert | notify
    status       VARCHAR NOT NULL,          -- pending | completed | failed | skipped
    attempts     INTEGER NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    url          VARCHAR,
    detail       JSON,
    error        VARCHAR
);
