-- A Watch's version: every applied transition adds one, so a step that read the Watch at version
-- v can claim it (compare-and-set on phase and version) before acting, and a second step that read
-- the same version is refused even when the phase did not change.
ALTER TABLE watches ADD COLUMN version BIGINT DEFAULT 0;
