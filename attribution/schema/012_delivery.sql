-- Delivery metrics: every pull-request review submitted (review rounds per PR). GitHub's review
-- id is the key, so a redelivery, or the same review told twice, is one row.
CREATE TABLE pr_reviews (
    id            BIGINT PRIMARY KEY,
    repo          VARCHAR NOT NULL,
    number        INTEGER NOT NULL,
    state         VARCHAR NOT NULL,      -- approved | changes_requested | commented | dismissed
    reviewer      VARCHAR,
    commit_id     VARCHAR,
    submitted_at  TIMESTAMPTZ NOT NULL
);
