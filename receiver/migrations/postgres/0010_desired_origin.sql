-- What set a desired assignment (issue 20): the orchestrator promotion and
-- job, who approved it, and the promotion's trace context from the log
-- record's own trace_id/span_id (lowercase hex). NULL when the sender
-- did not say (CI, older orchestrators, assignments made before).
ALTER TABLE desired_assignments ADD COLUMN promotion_id TEXT;
ALTER TABLE desired_assignments ADD COLUMN job_id TEXT;
ALTER TABLE desired_assignments ADD COLUMN approved_by TEXT;
ALTER TABLE desired_assignments ADD COLUMN trace_id TEXT;
ALTER TABLE desired_assignments ADD COLUMN span_id TEXT;
-- The sender's service.name: whose logs the trace's log link shows.
ALTER TABLE desired_assignments ADD COLUMN service TEXT;
