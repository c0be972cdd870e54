-- Hub model, version 1. Timestamps are nanoseconds since the Unix epoch.
-- Every row carries its tenant; names are unique within their parent.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE applications (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    workspace_id INTEGER NOT NULL REFERENCES workspaces (id),
    name         TEXT    NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE workloads (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    application_id INTEGER NOT NULL REFERENCES applications (id),
    name           TEXT    NOT NULL,
    UNIQUE (application_id, name)
);

CREATE TABLE environments (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

-- A deployment target of one workload in one environment (a cluster, a
-- namespace, a group of hosts).
CREATE TABLE deployment_targets (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    workload_id    INTEGER NOT NULL REFERENCES workloads (id),
    environment_id INTEGER NOT NULL REFERENCES environments (id),
    name           TEXT    NOT NULL,
    UNIQUE (workload_id, environment_id, name)
);
CREATE INDEX deployment_targets_environment ON deployment_targets (environment_id);

CREATE TABLE workload_versions (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    workload_id    INTEGER NOT NULL REFERENCES workloads (id),
    version        TEXT    NOT NULL,
    revision       TEXT    NOT NULL,
    build_commit   TEXT,
    build_id       TEXT,
    repository_url TEXT,
    first_seen_at  INTEGER NOT NULL,
    UNIQUE (workload_id, version, revision)
);
CREATE INDEX workload_versions_revision ON workload_versions (workload_id, revision);

-- Desired assignments are history: never updated; the latest one wins.
CREATE TABLE desired_assignments (
    id                  INTEGER PRIMARY KEY,
    tenant_id           INTEGER NOT NULL REFERENCES tenants (id),
    target_id           INTEGER NOT NULL REFERENCES deployment_targets (id),
    workload_version_id INTEGER NOT NULL REFERENCES workload_versions (id),
    assigned_at         INTEGER NOT NULL,
    received_at         INTEGER NOT NULL,
    UNIQUE (target_id, assigned_at, workload_version_id)
);

CREATE TABLE hosts (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

-- name and type are '' when the report named no reconciler.
CREATE TABLE reconcilers (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    UNIQUE (tenant_id, name, type)
);

-- Current observed state: one row per (host, reconciler, target).
CREATE TABLE observed_deployments (
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    host_id       INTEGER NOT NULL REFERENCES hosts (id),
    reconciler_id INTEGER NOT NULL REFERENCES reconcilers (id),
    target_id     INTEGER NOT NULL REFERENCES deployment_targets (id),
    revision      TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed', 'in_progress')),
    message       TEXT,
    observed_at   INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    PRIMARY KEY (host_id, reconciler_id, target_id)
);
CREATE INDEX observed_deployments_target ON observed_deployments (target_id);

-- Observed status changes, kept as history (never overwritten).
CREATE TABLE observed_history (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    host_id       INTEGER NOT NULL REFERENCES hosts (id),
    reconciler_id INTEGER NOT NULL REFERENCES reconcilers (id),
    target_id     INTEGER NOT NULL REFERENCES deployment_targets (id),
    revision      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    message       TEXT,
    observed_at   INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (host_id, reconciler_id, target_id, observed_at, revision, status)
);
CREATE INDEX observed_history_target_time ON observed_history (target_id, observed_at);
