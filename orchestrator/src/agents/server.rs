//! The gRPC side of the agent channel: `Register`, the `Session` stream,
//! and the dispatcher that delivers queued tasks to the streams this
//! replica holds.

use sextant_protocol::deploy::TaskOutcome;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use prost::Message as _;
use sextant_protocol::v1::{
    AgentMessage, RegisterRequest, RegisterResponse, ResultAck, ServerMessage, Task, Welcome,
    agent_message, server_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::{AgentChannel, CREDENTIAL_PREFIX, new_secret, secret_hash};
use crate::domain::task::LogStream;
use crate::store::AgentInfo;
use crate::store::{AgentRow, RegisterRefusal, StoreError};

/// Why an agent's message could not be stored (it is not acknowledged, so
/// the agent sends it again on its next stream).
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most rows the dispatcher takes per round.
const DISPATCH_BATCH: i64 = 500;

/// The `AgentService` implementation of one replica.
#[derive(Debug, Clone)]
pub struct AgentGrpc {
    channel: Arc<AgentChannel>,
}

impl AgentGrpc {
    pub fn new(channel: Arc<AgentChannel>) -> Self {
        Self { channel }
    }

    /// The tonic service, ready for a `Server`.
    pub fn service(self) -> sextant_protocol::AgentServiceServer<Self> {
        sextant_protocol::AgentServiceServer::new(self)
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %e, "Agent channel store error");
    Status::unavailable(format!("the orchestrator cannot reach its database: {e}"))
}

/// Checks `authorization: Bearer sxa_<id>.<secret>`.
async fn authenticate(
    channel: &AgentChannel,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<AgentRow, Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated("missing authorization: Bearer <agent credential>")
        })?;
    let credential = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| Status::unauthenticated("authorization must be Bearer <agent credential>"))?
        .trim();
    let (id, secret) = credential
        .strip_prefix(CREDENTIAL_PREFIX)
        .and_then(|c| c.split_once('.'))
        .ok_or_else(|| {
            Status::unauthenticated("malformed agent credential (expected sxa_<id>.<secret>)")
        })?;
    let agent = channel
        .store
        .agent(id)
        .await
        .map_err(internal)?
        .filter(|a| a.credential_hash == secret_hash(secret))
        .ok_or_else(|| Status::unauthenticated("unknown agent credential"))?;
    if agent.revoked_at.is_some() {
        return Err(Status::permission_denied(format!(
            "agent {} ({}) was revoked; register it again with a new token",
            agent.id, agent.name
        )));
    }
    Ok(agent)
}

#[tonic::async_trait]
impl sextant_protocol::AgentService for AgentGrpc {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.name.trim().is_empty() {
            return Err(Status::invalid_argument("an agent needs a name"));
        }
        if r.token.is_empty() {
            return Err(Status::unauthenticated("a registration token is required"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let secret = new_secret();
        let labels: BTreeMap<String, String> = r.labels.into_iter().collect();
        let info = AgentInfo {
            name: r.name.trim(),
            version: &r.version,
            capabilities: &r.capabilities,
            labels: &labels,
        };
        let registered = self
            .channel
            .store
            .register_agent(&secret_hash(&r.token), &id, &secret_hash(&secret), &info)
            .await
            .map_err(internal)?;
        match registered {
            Ok(tenant) => {
                tracing::info!(agent = %id, name = %info.name, %tenant, "Agent registered");
                Ok(Response::new(RegisterResponse {
                    agent_id: id.clone(),
                    credential: format!("{CREDENTIAL_PREFIX}{id}.{secret}"),
                    heartbeat_seconds: self.channel.heartbeat.as_secs().max(1) as u32,
                }))
            }
            Err(RegisterRefusal::Unknown) => {
                Err(Status::unauthenticated("unknown registration token"))
            }
            Err(RegisterRefusal::Used) => Err(Status::unauthenticated(
                "this registration token was used already; tokens are single use",
            )),
            Err(RegisterRefusal::Expired) => Err(Status::unauthenticated(
                "this registration token has expired",
            )),
        }
    }

    type SessionStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let agent = authenticate(&self.channel, request.metadata()).await?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                body: Some(agent_message::Body::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message on a session must be Hello",
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let session = uuid::Uuid::new_v4().to_string();
        let labels: BTreeMap<String, String> = hello.labels.into_iter().collect();
        let info = AgentInfo {
            name: &agent.name,
            version: &hello.version,
            capabilities: &hello.capabilities,
            labels: &labels,
        };
        self.channel
            .store
            .open_agent_session(
                &agent.id,
                &session,
                &self.channel.replica,
                &info,
                &hello.running,
            )
            .await
            .map_err(internal)?;
        let (tx, rx) = mpsc::channel(256);
        let welcome = ServerMessage {
            body: Some(server_message::Body::Welcome(Welcome {
                agent_id: agent.id.clone(),
                heartbeat_seconds: self.channel.heartbeat.as_secs().max(1) as u32,
                replica: self.channel.replica.clone(),
            })),
        };
        let _ = tx.send(Ok(welcome)).await;
        self.channel.add_stream(&agent.id, &session, tx.clone());
        tracing::info!(agent = %agent.id, name = %agent.name, %session,
            running = hello.running.len(), "Agent connected");
        self.channel.wake_dispatch();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            read_stream(&channel, &agent, &session, inbound, tx).await;
            channel.remove_stream(&agent.id, &session);
            if let Err(e) = channel.store.close_agent_session(&agent.id, &session).await {
                tracing::warn!(agent = %agent.id, error = %e, "Cannot record the end of a session");
            }
            tracing::info!(agent = %agent.id, name = %agent.name, "Agent disconnected");
        });
        // The stream ends when the replica stops, even with the agent still
        // connected (the agent then dials another replica).
        let outbound =
            ReceiverStream::new(rx).take_until(self.channel.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Handles what an agent sends until its stream ends or is replaced.
async fn read_stream(
    channel: &AgentChannel,
    agent: &AgentRow,
    session: &str,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<ServerMessage, Status>>,
) {
    // run key → (orchestrator task id, attempt), for log lines.
    let mut tasks: HashMap<String, (String, i64)> = HashMap::new();
    loop {
        let message = tokio::select! {
            m = inbound.message() => m,
            () = tx.closed() => break,
            () = channel.shutdown.cancelled() => break,
        };
        let body = match message {
            Ok(Some(AgentMessage { body: Some(body) })) => body,
            Ok(Some(AgentMessage { body: None })) => continue,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(agent = %agent.id, %status, "Agent stream ended");
                break;
            }
        };
        let handled = match body {
            agent_message::Body::Hello(_) => Ok(true),
            agent_message::Body::Heartbeat(h) => channel
                .store
                .agent_heartbeat(&agent.id, session, &h.running)
                .await
                .map_err(MessageError::from),
            agent_message::Body::Update(u) => {
                update(channel, agent, &mut tasks, u).await.map(|()| true)
            }
            agent_message::Body::Result(r) => {
                let run_key = r.run_key.clone();
                // The run is over: forget it, or a long-lived stream would
                // keep one entry per task it ever ran.
                tasks.remove(&run_key);
                let stored = finish(channel, agent, r).await;
                let ack = ServerMessage {
                    body: Some(server_message::Body::Ack(ResultAck { run_key })),
                };
                match stored {
                    Ok(()) => Ok(tx.send(Ok(ack)).await.is_ok()),
                    Err(e) => Err(e),
                }
            }
        };
        match handled {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(agent = %agent.id, "Agent session replaced or revoked; closing it");
                break;
            }
            Err(e) => {
                // Not acknowledged: the agent sends it again on its next stream.
                tracing::warn!(agent = %agent.id, error = %e, "Cannot store an agent message; closing the stream");
                let _ = tx.send(Err(Status::unavailable(e.to_string()))).await;
                break;
            }
        }
    }
}

async fn update(
    channel: &AgentChannel,
    agent: &AgentRow,
    tasks: &mut HashMap<String, (String, i64)>,
    u: sextant_protocol::v1::TaskUpdate,
) -> Result<(), MessageError> {
    let store = &channel.store;
    let mut moved = false;
    if !tasks.contains_key(&u.run_key) {
        // A task's first update normally moves it delivered → running; the
        // statement that moves it also says whose task it is.
        let running = if u.status.is_empty() {
            None
        } else {
            store.agent_task_running_of(&u.run_key, &agent.id).await?
        };
        if let Some(ids) = running {
            moved = true;
            tasks.insert(u.run_key.clone(), ids);
        } else {
            match store.agent_task_status(&u.run_key).await? {
                Some(item) if item.agent_id == agent.id => {
                    tasks.insert(u.run_key.clone(), (item.task_id, item.attempt));
                }
                _ => return Ok(()),
            }
        }
    }
    let Some((task_id, attempt)) = tasks.get(&u.run_key).cloned() else {
        return Ok(());
    };
    if !moved && !u.status.is_empty() {
        moved = store.agent_task_running(&u.run_key).await?;
    }
    if moved {
        channel.notify(&u.run_key);
    }
    if task_id.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<(LogStream, String)> = Vec::with_capacity(u.logs.len() + 1);
    if !u.status.is_empty() {
        lines.push((
            LogStream::System,
            format!("agent {}: {}", agent.name, u.status),
        ));
    }
    for l in u.logs {
        let stream = match l.stream.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => LogStream::System,
        };
        lines.push((stream, l.line));
    }
    store
        .append_logs(&task_id, attempt, &lines)
        .await
        .map_err(MessageError::from)
}

/// The result as the mailbox keeps it: the deploy contract's outcome, as
/// the agent sent it, and the agent's name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredResult {
    #[serde(flatten)]
    pub outcome: TaskOutcome,
    #[serde(default)]
    pub agent: String,
}

async fn finish(
    channel: &AgentChannel,
    agent: &AgentRow,
    r: sextant_protocol::v1::TaskResult,
) -> Result<(), MessageError> {
    let store = &channel.store;
    let (run_key, outcome) = TaskOutcome::from_result(r);
    // The executor's full record stays with the agent: the mailbox keeps
    // what the engine reads.
    let stored = StoredResult {
        outcome: TaskOutcome {
            record: None,
            ..outcome
        },
        agent: agent.name.clone(),
    };
    let json = serde_json::to_string(&stored)?;
    // One statement when the row is this agent's and open, which it
    // almost always is; the row is read only to say why not.
    if store.finish_agent_task(&run_key, &agent.id, &json).await? {
        channel.notify(&run_key);
        return Ok(());
    }
    match store.agent_task_status(&run_key).await? {
        None => {}
        Some(item) if item.agent_id != agent.id => {
            tracing::warn!(agent = %agent.id, %run_key, "Agent sent a result for another agent's task; ignored");
        }
        Some(item) => {
            tracing::info!(agent = %agent.id, %run_key, state = item.state.as_str(),
                "Result for a task no longer open; kept out");
        }
    }
    Ok(())
}

/// Delivers queued tasks to the streams this replica holds until `cancel`.
pub async fn dispatch(channel: Arc<AgentChannel>, cancel: CancellationToken) {
    loop {
        let mut more = false;
        match channel
            .store
            .deliverable_agent_tasks(&channel.replica, DISPATCH_BATCH)
            .await
        {
            Ok(items) => {
                more = items.len() as i64 == DISPATCH_BATCH;
                for (item, session) in items {
                    let Some(tx) = channel.stream_sender(&item.agent_id, &session) else {
                        continue;
                    };
                    let mut task = match Task::decode(item.payload.as_slice()) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(run_key = %item.run_key, error = %e, "Undecodable mailbox row");
                            continue;
                        }
                    };
                    match channel
                        .store
                        .deliver_agent_task(&item.run_key, &session)
                        .await
                    {
                        Ok(true) => {
                            // Credentials ride along on this delivery only.
                            channel.registry_auth.attach(&mut task);
                            let message = ServerMessage {
                                body: Some(server_message::Body::Task(task)),
                            };
                            if tx.send(Ok(message)).await.is_ok() {
                                channel.notify(&item.run_key);
                            }
                            // A closed stream: the agent's next session
                            // queues the row again.
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "Cannot deliver an agent task");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot read the agent mailbox"),
        }
        if more {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = channel.dispatch.notified() => {}
            () = tokio::time::sleep(channel.poll) => {}
        }
    }
}
