-- Ingest no longer rebuilds deployments in its own transaction: it records
-- each touched target here with the key (observed_at, host_id,
-- reconciler_id) of its earliest new history row, kept at the minimum when
-- more batches touch it, and the hub's deriver rebuilds the target from that
-- key in a transaction of its own (store/deployments/). A DORA report first
-- derives its tenant's listed targets. A row without a key (an upgrade's,
-- migration 0011) rebuilds the target's whole history. `seq` moves with
-- every batch that touches the target: a deriver removes the row only if no
-- batch touched it while it was deriving.
ALTER TABLE deployments_backfill ADD COLUMN observed_at BIGINT;
ALTER TABLE deployments_backfill ADD COLUMN host_id BIGINT;
ALTER TABLE deployments_backfill ADD COLUMN reconciler_id BIGINT;
ALTER TABLE deployments_backfill ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
