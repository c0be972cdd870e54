-- The orchestrator's state. Times are Unix milliseconds (UTC). Ids of
-- releases, promotions, jobs and tasks are UUIDs; configuration rows are
-- keyed by (tenant, name). JSON columns hold the spec types of model.rs.

CREATE TABLE environments (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE targets (
    tenant      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    execution   TEXT    NOT NULL CHECK (execution IN ('ssh', 'agent')),
    spec        TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE INDEX targets_by_environment ON targets (tenant, environment, name);

CREATE TABLE components (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE releases (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('draft', 'finalized')),
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    finalized_at INTEGER,
    UNIQUE (tenant, name)
);

CREATE TABLE release_components (
    release_id TEXT NOT NULL REFERENCES releases (id),
    component  TEXT NOT NULL,
    image      TEXT NOT NULL,
    digest     TEXT NOT NULL,
    tag        TEXT,
    PRIMARY KEY (release_id, component)
);

-- A finalized release never changes.
CREATE TRIGGER release_components_frozen_update BEFORE UPDATE ON release_components
WHEN (SELECT status FROM releases WHERE id = OLD.release_id) = 'finalized'
BEGIN SELECT RAISE(ABORT, 'release is finalized'); END;
CREATE TRIGGER release_components_frozen_insert BEFORE INSERT ON release_components
WHEN (SELECT status FROM releases WHERE id = NEW.release_id) = 'finalized'
BEGIN SELECT RAISE(ABORT, 'release is finalized'); END;
CREATE TRIGGER release_components_frozen_delete BEFORE DELETE ON release_components
WHEN (SELECT status FROM releases WHERE id = OLD.release_id) = 'finalized'
BEGIN SELECT RAISE(ABORT, 'release is finalized'); END;

CREATE TABLE promotions (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    release_id   TEXT    NOT NULL REFERENCES releases (id),
    environment  TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    strategy     TEXT    NOT NULL,
    reason       TEXT,
    job_id       TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX promotions_by_state ON promotions (state, updated_at);
CREATE INDEX promotions_by_tenant ON promotions (tenant, created_at);

-- Every state change, with its actor: kept as history, never updated.
CREATE TABLE promotion_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    promotion_id TEXT    NOT NULL REFERENCES promotions (id),
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    from_state   TEXT,
    to_state     TEXT    NOT NULL,
    detail       TEXT
);
CREATE INDEX promotion_events_by_promotion ON promotion_events (promotion_id, id);

CREATE TABLE approvals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    promotion_id TEXT    NOT NULL REFERENCES promotions (id),
    approver     TEXT    NOT NULL,
    decision     TEXT    NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment      TEXT,
    at           INTEGER NOT NULL,
    UNIQUE (promotion_id, approver)
);

-- Manual gates opened or closed per promotion.
CREATE TABLE manual_gates (
    promotion_id TEXT    NOT NULL REFERENCES promotions (id),
    gate         TEXT    NOT NULL,
    open         INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    comment      TEXT,
    at           INTEGER NOT NULL,
    PRIMARY KEY (promotion_id, gate)
);

-- One per promotion, written once when its gates and approvals are decided.
CREATE TABLE decision_records (
    promotion_id TEXT    PRIMARY KEY REFERENCES promotions (id),
    outcome      TEXT    NOT NULL,
    record       TEXT    NOT NULL,
    decided_at   INTEGER NOT NULL
);

CREATE TABLE jobs (
    id            TEXT    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('deploy', 'rollback')),
    promotion_id  TEXT    REFERENCES promotions (id),
    parent_job_id TEXT    REFERENCES jobs (id),
    release_id    TEXT    NOT NULL REFERENCES releases (id),
    environment   TEXT    NOT NULL,
    strategy      TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX jobs_active ON jobs (state, lease_until);
CREATE INDEX jobs_by_tenant ON jobs (tenant, created_at);

CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    detail     TEXT
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE tasks (
    id              TEXT    PRIMARY KEY,
    job_id          TEXT    NOT NULL REFERENCES jobs (id),
    position        INTEGER NOT NULL,
    batch           INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    release_id      TEXT    NOT NULL REFERENCES releases (id),
    target          TEXT    NOT NULL,
    component       TEXT    NOT NULL,
    image           TEXT    NOT NULL,
    digest          TEXT    NOT NULL,
    previous_digest TEXT,
    slot            TEXT,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    exit_code       INTEGER,
    error           TEXT,
    error_type      TEXT,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX tasks_by_job ON tasks (job_id, position);

CREATE TABLE task_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT    NOT NULL REFERENCES tasks (id),
    attempt INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    line    TEXT    NOT NULL
);
CREATE INDEX task_logs_by_task ON task_logs (task_id, id);

-- Generated once per job (and target), never changed.
CREATE TABLE artifacts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    target     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    content    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, target, name)
);
CREATE TRIGGER artifacts_immutable BEFORE UPDATE ON artifacts
BEGIN SELECT RAISE(ABORT, 'artifacts are immutable'); END;
CREATE TRIGGER decision_records_immutable BEFORE UPDATE ON decision_records
BEGIN SELECT RAISE(ABORT, 'decision records are immutable'); END;

-- What last succeeded on each (target, component): where rollback goes.
CREATE TABLE deployed (
    tenant      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    component   TEXT    NOT NULL,
    release_id  TEXT    NOT NULL REFERENCES releases (id),
    image       TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    slot        TEXT,
    job_id      TEXT    NOT NULL,
    deployed_at INTEGER NOT NULL,
    -- What ran before: where a rollback of a completed job goes.
    previous_release_id TEXT,
    previous_image      TEXT,
    previous_digest     TEXT,
    previous_slot       TEXT,
    PRIMARY KEY (tenant, target, component)
);
