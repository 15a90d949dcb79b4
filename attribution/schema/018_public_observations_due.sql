-- The public observations view shows when each evaluation was due (`due_at`, 014) beside when it
-- ran, so an analyst can read each Watch's evaluation lag (`observed_at - due_at`); NULL for
-- evaluations kept before 014. Added last, so the view's earlier columns keep their places.
CREATE OR REPLACE VIEW public.observations AS
SELECT deploy_id, seq, observed_at, sli, status, reason, mode, baseline_value, watch_value,
       null_value, baseline_bad, baseline_total, watch_bad, watch_total, statistic, threshold,
       effect, onset, due_at
FROM main.observations;
