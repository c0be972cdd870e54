-- At most one rollback job per job it rolls back, whichever replica
-- creates it; also how a job finds its rollback job.
CREATE UNIQUE INDEX jobs_one_rollback ON jobs (parent_job_id) WHERE kind = 'rollback';
