-- How many evaluations each Watch has kept: the seq of its last observations. An evaluation's
-- move adds one and takes its seq from the Watch's own row, instead of reading max(seq) over the
-- observations table, which DuckDB scans whole (every evaluation paid for the whole history).
ALTER TABLE watches ADD COLUMN evaluations INTEGER DEFAULT 0;
UPDATE watches SET evaluations = coalesce(
    (SELECT max(o.seq) FROM observations o WHERE o.deploy_id = watches.deploy_id), 0);
