//! The agent channel (docs/agent-channel.md): agents register with a
//! one-time token, then keep one gRPC stream open to any replica; tasks go
//! through a mailbox in the database, so the replica that runs a job and
//! the replica that holds the agent's stream need not be the same.
//!
//! - [`server`]: the gRPC service (registration, the stream) and the
//!   replica's dispatcher, which delivers queued tasks to the streams this
//!   replica holds;
//! - [`executor`]: [`AgentExecutor`], the job engine's executor for targets
//!   of execution model `agent`: it queues a task and waits for its result.

pub mod credentials;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sextant_protocol::v1::ServerMessage;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use utoipa::ToSchema;

use crate::store::{AgentRow, MailItem, Store, rfc3339};

pub use server::AgentGrpc;

/// Prefix of agent credentials (`sxa_<agent id>.<secret>`).
pub const CREDENTIAL_PREFIX: &str = "sxa_";
/// Prefix of registration tokens.
pub const TOKEN_PREFIX: &str = "sxr_";

/// Hex sha256 of a secret: tokens and credentials are stored only so.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits as hex (two v4 UUIDs' random parts).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Whether an agent can take tasks, from its stream and heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// A stream is open and the last heartbeat is at most two intervals old.
    Online,
    /// A stream is recorded but heartbeats are late (up to five intervals):
    /// the link or the replica holding it may be failing.
    Degraded,
    /// No stream, or no heartbeat for more than five intervals.
    Offline,
    /// Refused for good.
    Revoked,
}

impl AgentStatus {
    pub fn of(agent: &AgentRow, now_ms: i64, heartbeat: Duration) -> Self {
        if agent.revoked_at.is_some() {
            return Self::Revoked;
        }
        let (Some(_), Some(last)) = (&agent.session, agent.last_heartbeat) else {
            return Self::Offline;
        };
        let age = now_ms.saturating_sub(last);
        let interval = heartbeat.as_millis() as i64;
        if age <= 2 * interval {
            Self::Online
        } else if age <= 5 * interval {
            Self::Degraded
        } else {
            Self::Offline
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Degraded => "degraded",
            Self::Offline => "offline",
            Self::Revoked => "revoked",
        }
    }
}

/// An agent as the API and `sextant agents` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub status: AgentStatus,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub registered_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_seconds: Option<f64>,
    /// The replica holding its stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Orchestrator tasks it has queued, delivered or running, oldest first.
    pub current_tasks: Vec<CurrentTask>,
}

/// A task in an agent's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurrentTask {
    pub run_key: String,
    /// The orchestrator task (empty for a health check).
    pub task_id: String,
    pub kind: String,
    /// `queued`, `delivered` or `running`.
    pub state: String,
}

impl AgentView {
    pub fn new(agent: &AgentRow, open: &[MailItem], now_ms: i64, heartbeat: Duration) -> Self {
        Self {
            id: agent.id.clone(),
            name: agent.name.clone(),
            version: agent.version.clone(),
            status: AgentStatus::of(agent, now_ms, heartbeat),
            labels: agent.labels.clone(),
            capabilities: agent.capabilities.clone(),
            registered_at: rfc3339(agent.registered_at),
            revoked_at: agent.revoked_at.map(rfc3339),
            last_heartbeat: agent.last_heartbeat.map(rfc3339),
            heartbeat_age_seconds: agent
                .last_heartbeat
                .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0),
            replica: agent.replica.clone(),
            current_tasks: open
                .iter()
                .filter(|m| m.agent_id == agent.id)
                .map(|m| CurrentTask {
                    run_key: m.run_key.clone(),
                    task_id: m.task_id.clone(),
                    kind: m.kind.clone(),
                    state: m.state.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

/// A stream this replica holds.
struct LocalStream {
    session: String,
    tx: mpsc::Sender<Result<ServerMessage, tonic::Status>>,
}

/// One replica's side of the channel: its streams, and who waits for which
/// task. Shared by the gRPC service, the dispatcher and the executor.
pub struct AgentChannel {
    pub store: Store,
    pub replica: String,
    /// How often agents send heartbeats.
    pub heartbeat: Duration,
    /// How often the dispatcher and the waiting executors look at the
    /// mailbox when nothing woke them (rows written by other replicas).
    pub poll: Duration,
    streams: Mutex<HashMap<String, LocalStream>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    dispatch: Notify,
    /// Credentials added to tasks as they are delivered (never stored).
    pub registry_auth: credentials::RegistryAuths,
    /// Cancelled when the replica stops: every stream it holds ends, so
    /// the gRPC server's graceful shutdown does not wait for agents.
    shutdown: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for AgentChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentChannel")
            .field("replica", &self.replica)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AgentChannel {
    pub fn new(
        store: Store,
        replica: String,
        heartbeat: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            registry_auth: credentials::RegistryAuths::default(),
            shutdown,
            store,
            replica,
            heartbeat,
            poll: Duration::from_millis(250),
            streams: Mutex::default(),
            waiters: Mutex::default(),
            dispatch: Notify::new(),
        }
    }

    /// The views of a tenant's agents.
    pub async fn views(&self, tenant: &str) -> crate::store::Result<Vec<AgentView>> {
        let agents = self.store.agents(tenant).await?;
        let open = self.store.open_agent_tasks(tenant).await?;
        let now = crate::store::now_ms();
        Ok(agents
            .iter()
            .map(|a| AgentView::new(a, &open, now, self.heartbeat))
            .collect())
    }

    /// Wakes whoever waits for `run_key` on this replica.
    fn notify(&self, run_key: &str) {
        if let Some(n) = lock(&self.waiters).get(run_key) {
            n.notify_one();
        }
    }

    /// The token that ends this replica's agent sessions.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    pub(crate) fn waiter(&self, run_key: &str) -> Arc<Notify> {
        lock(&self.waiters)
            .entry(run_key.to_owned())
            .or_default()
            .clone()
    }

    pub(crate) fn forget(&self, run_key: &str) {
        lock(&self.waiters).remove(run_key);
    }

    /// Asks the dispatcher to look at the mailbox now.
    pub(crate) fn wake_dispatch(&self) {
        self.dispatch.notify_one();
    }

    fn stream_sender(
        &self,
        agent: &str,
        session: &str,
    ) -> Option<mpsc::Sender<Result<ServerMessage, tonic::Status>>> {
        lock(&self.streams)
            .get(agent)
            .filter(|s| s.session == session)
            .map(|s| s.tx.clone())
    }

    fn add_stream(
        &self,
        agent: &str,
        session: &str,
        tx: mpsc::Sender<Result<ServerMessage, tonic::Status>>,
    ) {
        lock(&self.streams).insert(
            agent.to_owned(),
            LocalStream {
                session: session.to_owned(),
                tx,
            },
        );
    }

    fn remove_stream(&self, agent: &str, session: &str) {
        let mut streams = lock(&self.streams);
        if streams.get(agent).is_some_and(|s| s.session == session) {
            streams.remove(agent);
        }
    }

    /// Whether this replica holds a stream of `agent`.
    pub(crate) fn holds_stream(&self, agent: &str) -> bool {
        lock(&self.streams).contains_key(agent)
    }

    /// How many agents hold a stream to this replica.
    pub fn local_streams(&self) -> usize {
        lock(&self.streams).len()
    }
}
