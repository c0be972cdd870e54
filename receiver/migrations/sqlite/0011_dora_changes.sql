-- The change feed of the hub's in-memory DORA index (store/dora_index.rs):
-- a row for each target whose deployments a transaction rebuilt, and for
-- each workload whose revision times it moved. SQLite's one writer commits
-- in id order, so a refresh rereads the targets named by rows after the
-- last id it saw (AUTOINCREMENT: a pruned id is never handed out again).
-- Rows older than a day are pruned.
CREATE TABLE dora_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    target_id   INTEGER,
    workload_id INTEGER,
    at          INTEGER NOT NULL
);
CREATE INDEX dora_changes_tenant ON dora_changes (tenant_id, id);
CREATE INDEX dora_changes_at ON dora_changes (at);

-- How far each target's deployments were replayed: the key of the last
-- history row the replay read. Reports that all come after it (in order,
-- the usual case) resume the replay from the target's last deployment
-- instead of replaying from the start of the deployment they fall in
-- (store/deployments/).
CREATE TABLE deployment_replays (
    target_id     INTEGER PRIMARY KEY REFERENCES deployment_targets (id),
    observed_at   INTEGER NOT NULL,
    host_id       INTEGER NOT NULL,
    reconciler_id INTEGER NOT NULL,
    history_id    INTEGER NOT NULL
);
