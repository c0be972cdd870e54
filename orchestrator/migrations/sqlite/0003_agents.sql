-- The agent channel (docs/agent-channel.md): one-time registration tokens,
-- registered agents with the hash of their credential and their session,
-- and the task mailbox every replica reads. Times are Unix milliseconds.

CREATE TABLE agent_tokens (
    -- Hex sha256 of the token; the token itself is shown once.
    token_hash TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    agent_id   TEXT
);

CREATE TABLE agents (
    id              TEXT   PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    version         TEXT   NOT NULL,
    capabilities    TEXT   NOT NULL,
    labels          TEXT   NOT NULL,
    -- Hex sha256 of the credential's secret.
    credential_hash TEXT   NOT NULL,
    registered_at   BIGINT NOT NULL,
    revoked_at      BIGINT,
    -- The stream now open, if any: its id and the replica holding it.
    session         TEXT,
    replica         TEXT,
    connected_at    BIGINT,
    last_heartbeat  BIGINT,
    -- Run keys the agent said it was running at its last heartbeat.
    running         TEXT   NOT NULL DEFAULT '[]'
);
CREATE INDEX agents_by_tenant ON agents (tenant, name);
CREATE INDEX agents_by_replica ON agents (replica);

-- One row per task run (`run_key` = task id . attempt): queued until a
-- replica holding the agent's stream delivers it, then running, finished
-- (with the agent's outcome) or expired (deadline passed undelivered).
CREATE TABLE agent_tasks (
    run_key     TEXT   PRIMARY KEY,
    task_id     TEXT   NOT NULL,
    attempt     BIGINT NOT NULL,
    tenant      TEXT   NOT NULL,
    agent_id    TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    payload     TEXT   NOT NULL,
    deadline    BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('queued', 'delivered', 'running', 'finished', 'expired')),
    session     TEXT,
    deliveries  BIGINT NOT NULL DEFAULT 0,
    outcome     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX agent_tasks_mailbox ON agent_tasks (agent_id, state);
CREATE INDEX agent_tasks_open ON agent_tasks (state) WHERE state IN ('queued', 'delivered', 'running');
