-- What each evaluation looked at, so a verdict can be explained from the store alone.
ALTER TABLE observations ADD COLUMN null_value DOUBLE;   -- the rate or level past which it is worse
ALTER TABLE observations ADD COLUMN onset DOUBLE;        -- seconds after the deploy the excursion began
ALTER TABLE observations ADD COLUMN mode VARCHAR;        -- before_after | canary
ALTER TABLE observations ADD COLUMN queries JSON;        -- resolved PromQL per role (bad, total, value)
ALTER TABLE observations ADD COLUMN windows JSON;        -- named [start, end] Unix-second windows queried
