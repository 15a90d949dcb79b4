-- PR-level provenance: the head branch (a marker that survives squash merges), and which marker
-- named the author (`agent_source`) at which grain. `author_kind` becomes agent | human | unknown;
-- rows written before it were "human" for lacking a marker, so they are "unknown" now.
ALTER TABLE pull_requests ADD COLUMN head_ref VARCHAR;
ALTER TABLE pull_requests ADD COLUMN agent_source VARCHAR;
ALTER TABLE pull_requests ADD COLUMN agent_grain VARCHAR DEFAULT 'pr';
UPDATE pull_requests SET author_kind = 'unknown' WHERE author_kind = 'human';
