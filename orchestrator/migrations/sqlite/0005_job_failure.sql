-- The kind of a job's failure (`tasks_failed`, `canary_analysis`, `gave_up`,
-- `rollback_failed`), written with the job's message when it fails or
-- starts rolling back; the metrics read it instead of the message's words.
-- Jobs that failed before this column get the kind their message shows:
-- the engine wrote "canary stage N breached: …" for a canary breach.
ALTER TABLE jobs ADD COLUMN failure TEXT;
UPDATE jobs SET failure = 'canary_analysis'
    WHERE error LIKE 'canary stage % breached: %';
UPDATE jobs SET failure = 'rollback_failed'
    WHERE failure IS NULL AND (error = 'nothing to roll back to' OR error LIKE 'rollback job % ended %');
UPDATE jobs SET failure = 'gave_up'
    WHERE failure IS NULL AND error LIKE 'gave up after % attempts to drive the job';
UPDATE jobs SET failure = 'tasks_failed'
    WHERE failure IS NULL AND error IS NOT NULL AND error <> 'rollback requested';
