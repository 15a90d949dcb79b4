-- Each PR file's runs of removed and added lines, [[old first, old count, new first, new count]],
-- so that an earlier PR's changed lines can be carried to the deploy's head (attribution/blame.py).
ALTER TABLE pr_files ADD COLUMN edits JSON;
