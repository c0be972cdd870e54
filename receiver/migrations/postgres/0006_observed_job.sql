-- The orchestrator job behind an observed deployment (`sextant.job.id`),
-- so the host page links to the job that last changed the host. In
-- current state it is the job of the last change; history keeps it per
-- change.
ALTER TABLE observed_deployments ADD COLUMN job_id TEXT;
ALTER TABLE observed_history ADD COLUMN job_id TEXT;
