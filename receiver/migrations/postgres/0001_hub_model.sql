-- Hub model, version 1. Timestamps are nanoseconds since the Unix epoch.
-- Every row carries its tenant; names are unique within their parent.

CREATE TABLE tenants (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE workspaces (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE applications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    BIGINT  NOT NULL REFERENCES tenants (id),
    workspace_id BIGINT  NOT NULL REFERENCES workspaces (id),
    name         TEXT    NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE workloads (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants (id),
    application_id BIGINT  NOT NULL REFERENCES applications (id),
    name           TEXT    NOT NULL,
    UNIQUE (application_id, name)
);

CREATE TABLE environments (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

-- A deployment target of one workload in one environment (a cluster, a
-- namespace, a group of hosts).
CREATE TABLE deployment_targets (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants (id),
    workload_id    BIGINT  NOT NULL REFERENCES workloads (id),
    environment_id BIGINT  NOT NULL REFERENCES environments (id),
    name           TEXT    NOT NULL,
    UNIQUE (workload_id, environment_id, name)
);
CREATE INDEX deployment_targets_environment ON deployment_targets (environment_id);

CREATE TABLE workload_versions (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants (id),
    workload_id    BIGINT  NOT NULL REFERENCES workloads (id),
    version        TEXT    NOT NULL,
    revision       TEXT    NOT NULL,
    build_commit   TEXT,
    build_id       TEXT,
    repository_url TEXT,
    first_seen_at  BIGINT  NOT NULL,
    UNIQUE (workload_id, version, revision)
);
CREATE INDEX workload_versions_revision ON workload_versions (workload_id, revision);

-- Desired assignments are history: never updated; the latest one wins.
CREATE TABLE desired_assignments (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           BIGINT  NOT NULL REFERENCES tenants (id),
    target_id           BIGINT  NOT NULL REFERENCES deployment_targets (id),
    workload_version_id BIGINT  NOT NULL REFERENCES workload_versions (id),
    assigned_at         BIGINT  NOT NULL,
    received_at         BIGINT  NOT NULL,
    UNIQUE (target_id, assigned_at, workload_version_id)
);

CREATE TABLE hosts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    UNIQUE (tenant_id, name)
);

-- name and type are '' when the report named no reconciler.
CREATE TABLE reconcilers (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT  NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    UNIQUE (tenant_id, name, type)
);

-- Current observed state: one row per (host, reconciler, target).
CREATE TABLE observed_deployments (
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id),
    host_id       BIGINT  NOT NULL REFERENCES hosts (id),
    reconciler_id BIGINT  NOT NULL REFERENCES reconcilers (id),
    target_id     BIGINT  NOT NULL REFERENCES deployment_targets (id),
    revision      TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('succeeded', 'failed', 'in_progress')),
    message       TEXT,
    observed_at   BIGINT  NOT NULL,
    changed_at    BIGINT  NOT NULL,
    PRIMARY KEY (host_id, reconciler_id, target_id)
) WITH (fillfactor = 70);
CREATE INDEX observed_deployments_target ON observed_deployments (target_id);

-- Observed status changes, kept as history (never overwritten).
CREATE TABLE observed_history (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants (id),
    host_id       BIGINT  NOT NULL REFERENCES hosts (id),
    reconciler_id BIGINT  NOT NULL REFERENCES reconcilers (id),
    target_id     BIGINT  NOT NULL REFERENCES deployment_targets (id),
    revision      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    message       TEXT,
    observed_at   BIGINT  NOT NULL,
    received_at   BIGINT  NOT NULL,
    UNIQUE (host_id, reconciler_id, target_id, observed_at, revision, status)
);
CREATE INDEX observed_history_target_time ON observed_history (target_id, observed_at);
