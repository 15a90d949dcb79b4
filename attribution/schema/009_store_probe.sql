-- One row the readiness probe rewrites and commits: a real write through DuckDB's write-ahead log
-- (appended and flushed on commit, and created again after each checkpoint), so `/readyz` is not
-- ready while the store cannot write. `pad` makes each write need a new filesystem block.
CREATE TABLE store_probe (
    id         INTEGER PRIMARY KEY,
    probed_at  TIMESTAMPTZ NOT NULL,
    pad        VARCHAR NOT NULL
);
INSERT INTO store_probe VALUES (1, now(), '');
