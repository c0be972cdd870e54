//! The agent's side of the orchestrator channel (docs/agent-channel.md).
//!
//! The agent dials out, so it works from behind NAT: it registers once with
//! a one-time token (the identity it gets is kept in
//! `DATA_DIR/agent-identity.json`), then keeps one stream open to one of the
//! orchestrator's replicas, reconnecting with backoff and trying the next
//! endpoint when one fails.
//!
//! **Never twice.** A task is identified by its run key. A task delivered
//! again while it runs is not started again; a finished one answers with
//! its recorded result (the executor's journal, so this survives a restart).
//! Results are kept until the orchestrator acknowledges them and are sent
//! again on every new stream, so a result produced while the link was down
//! still arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sextant_protocol::AgentServiceClient;
use sextant_protocol::deploy::{self, ComposeLock, DeploySpec, ErrorKind, RegistryAuth};
use sextant_protocol::v1::{
    self as pb, AgentMessage, Heartbeat, Hello, LogLine, RegisterRequest, ServerMessage,
    TaskResult, TaskUpdate, agent_message, server_message, task::Payload,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::executor::{self, Executor, RecordState, TaskEvent, TaskStatus};

/// How to reach the orchestrator and who this agent is.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The orchestrator's agent endpoints (`http://host:8082`), tried in turn.
    pub endpoints: Vec<String>,
    /// A one-time registration token, needed only until the identity file
    /// exists.
    pub registration_token: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The identity file and artifacts live here.
    pub data_dir: PathBuf,
    /// Most time between reconnects.
    pub max_backoff: Duration,
    /// For `https://` endpoints: a CA to trust besides the public roots,
    /// and a client certificate when the orchestrator requires one (mTLS).
    pub tls: sextant_exporters::sender::TlsConfig,
}

/// What runs the tasks.
#[derive(Debug, Clone)]
pub enum Runner {
    /// The Docker executor.
    Docker(Arc<Executor>),
    /// Dry-run: every deploy succeeds after `delay` without touching Docker
    /// (for the control-plane benchmark). Results are kept in memory;
    /// `executed` counts the tasks actually run (not replayed).
    DryRun {
        delay: Duration,
        executed: Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Runner {
    fn capabilities(&self) -> Vec<String> {
        match self {
            Runner::Docker(_) => vec!["docker".into(), "compose".into()],
            Runner::DryRun { .. } => vec!["docker".into(), "compose".into(), "dry-run".into()],
        }
    }
}

/// The identity registration gave this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub credential: String,
}

const IDENTITY_FILE: &str = "agent-identity.json";

impl Identity {
    /// Reads `DATA_DIR/agent-identity.json`, if present.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = data_dir.join(IDENTITY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not an agent identity", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the identity, readable by its owner only.
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let path = data_dir.join(IDENTITY_FILE);
        let tmp = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
        {
            use std::io::Write as _;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.write_all(&serde_json::to_vec_pretty(self)?)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// The tasks this agent runs now, counted so that its shutdown can let
/// them finish before it stops. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<tokio::sync::watch::Sender<usize>>);

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl InFlight {
    /// How many tasks run now.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Resolves once no task runs.
    pub async fn finished(&self) {
        let mut count = self.0.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Counts one more task until the guard is dropped (the task ended,
    /// or panicked).
    fn start(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.clone())
    }
}

struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What the agent's tasks share with its streams.
struct Shared {
    runner: Runner,
    data_dir: PathBuf,
    /// Run keys being run now.
    running: Mutex<HashSet<String>>,
    /// Results not yet acknowledged, by run key.
    unacked: Mutex<BTreeMap<String, TaskResult>>,
    /// Dry-run outcomes (the Docker runner has its journal).
    dry_done: Mutex<HashMap<String, deploy::TaskOutcome>>,
    /// Updates and results for whichever stream is open.
    out: mpsc::UnboundedSender<AgentMessage>,
    in_flight: InFlight,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A refusal that reconnecting cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Registers (when there is no identity yet), then keeps a stream open
/// until `cancel`. Returns an error only when the orchestrator refuses this
/// agent for good (a bad token, a revoked agent). Tasks still running when
/// it returns go on by themselves.
pub async fn run(
    config: ChannelConfig,
    runner: Runner,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    run_tracked(config, runner, InFlight::default(), cancel).await
}

/// [`run`], counting the tasks it starts in `in_flight`, so that the
/// caller can wait for them once it has returned.
pub async fn run_tracked(
    config: ChannelConfig,
    runner: Runner,
    in_flight: InFlight,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.endpoints.is_empty(),
        "the agent channel needs at least one orchestrator endpoint"
    );
    // A bad endpoint or TLS file stops the agent now, not at every retry.
    for endpoint in &config.endpoints {
        grpc_endpoint(endpoint, &config.tls)?;
    }
    let identity = match Identity::load(&config.data_dir)? {
        Some(identity) => identity,
        None => {
            let Some(token) = &config.registration_token else {
                anyhow::bail!(
                    "no agent identity in {} and no registration token: create one with \
                     `sextant agents token` and pass it as --registration-token",
                    config.data_dir.display()
                );
            };
            let identity = register(&config, &runner, token, &cancel).await?;
            identity.save(&config.data_dir)?;
            tracing::info!(agent = %identity.agent_id, "Registered with the orchestrator");
            identity
        }
    };
    let (out, mut out_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        runner,
        data_dir: config.data_dir.clone(),
        running: Mutex::default(),
        unacked: Mutex::default(),
        dry_done: Mutex::default(),
        out,
        in_flight,
    });
    let mut backoff = Backoff::new(config.max_backoff);
    let mut attempt = 0usize;
    loop {
        let endpoint = &config.endpoints[attempt % config.endpoints.len()];
        let started = tokio::time::Instant::now();
        let ended = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = session(endpoint, &config, &identity, &shared, &mut out_rx) => r,
        };
        match ended {
            Ok(()) => tracing::info!(%endpoint, "Orchestrator stream closed; reconnecting"),
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(%endpoint, error = %format!("{e:#}"), "Orchestrator stream failed; reconnecting")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        attempt += 1;
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// An orchestrator endpoint, over TLS when it is `https://`.
fn grpc_endpoint(
    endpoint: &str,
    tls: &sextant_exporters::sender::TlsConfig,
) -> anyhow::Result<tonic::transport::Endpoint> {
    let parsed = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid orchestrator endpoint {endpoint:?}"))?;
    Ok(sextant_exporters::sender::with_tls(parsed, endpoint, tls)?)
}

async fn connect(
    endpoint: &str,
    tls: &sextant_exporters::sender::TlsConfig,
) -> anyhow::Result<AgentServiceClient<tonic::transport::Channel>> {
    let channel = grpc_endpoint(endpoint, tls)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(15))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    Ok(AgentServiceClient::new(channel))
}

async fn register(
    config: &ChannelConfig,
    runner: &Runner,
    token: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Identity> {
    let mut backoff = Backoff::new(config.max_backoff);
    let mut attempt = 0usize;
    loop {
        let endpoint = &config.endpoints[attempt % config.endpoints.len()];
        let request = RegisterRequest {
            token: token.to_owned(),
            name: config.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: runner.capabilities(),
            labels: config.labels.clone().into_iter().collect(),
        };
        let result = async {
            let mut client = connect(endpoint, &config.tls).await?;
            client.register(request).await.map_err(anyhow::Error::from)
        }
        .await;
        match result {
            Ok(response) => {
                let r = response.into_inner();
                return Ok(Identity {
                    agent_id: r.agent_id,
                    credential: r.credential,
                });
            }
            Err(e) => {
                if let Some(status) = e.downcast_ref::<tonic::Status>()
                    && matches!(
                        status.code(),
                        tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::InvalidArgument
                    )
                {
                    return Err(Refused(format!(
                        "the orchestrator refused the registration: {}",
                        status.message()
                    ))
                    .into());
                }
                tracing::warn!(%endpoint, error = %format!("{e:#}"), "Cannot register yet; retrying");
            }
        }
        attempt += 1;
        tokio::select! {
            () = cancel.cancelled() => anyhow::bail!("stopped before registering"),
            () = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// One stream: Hello, Welcome, then tasks down and updates up until it ends.
async fn session(
    endpoint: &str,
    config: &ChannelConfig,
    identity: &Identity,
    shared: &Arc<Shared>,
    out_rx: &mut mpsc::UnboundedReceiver<AgentMessage>,
) -> anyhow::Result<()> {
    let mut client = connect(endpoint, &config.tls).await?;
    let (tx, rx) = mpsc::unbounded_channel::<AgentMessage>();
    let running: Vec<String> = lock(&shared.running).iter().cloned().collect();
    let _ = tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: shared.runner.capabilities(),
            labels: config.labels.clone().into_iter().collect(),
            running,
        })),
    });
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
    let bearer = format!("Bearer {}", identity.credential)
        .parse()
        .context("the agent credential is not a valid header value")?;
    request.metadata_mut().insert("authorization", bearer);
    let mut inbound = match client.session(request).await {
        Ok(r) => r.into_inner(),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) =>
        {
            return Err(Refused(format!(
                "the orchestrator refused agent {}: {}",
                identity.agent_id,
                status.message()
            ))
            .into());
        }
        Err(status) => return Err(status.into()),
    };
    let heartbeat = match inbound.message().await? {
        Some(ServerMessage {
            body: Some(server_message::Body::Welcome(w)),
        }) => {
            tracing::info!(%endpoint, replica = %w.replica, agent = %w.agent_id, "Connected to the orchestrator");
            Duration::from_secs(u64::from(w.heartbeat_seconds.max(1)))
        }
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    // Results the last stream did not see acknowledged go again.
    for result in lock(&shared.unacked).values() {
        let _ = tx.send(AgentMessage {
            body: Some(agent_message::Body::Result(result.clone())),
        });
    }
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else { return Ok(()) };
                match message.body {
                    Some(server_message::Body::Task(task)) => accept(shared, task),
                    Some(server_message::Body::Ack(ack)) => {
                        lock(&shared.unacked).remove(&ack.run_key);
                    }
                    Some(server_message::Body::Welcome(_)) | None => {}
                }
            }
            _ = ticker.tick() => {
                let running = lock(&shared.running).iter().cloned().collect();
                if tx.send(AgentMessage {
                    body: Some(agent_message::Body::Heartbeat(Heartbeat { running })),
                }).is_err() {
                    return Ok(());
                }
            }
            Some(message) = out_rx.recv() => {
                if tx.send(message).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes a delivered task: runs it unless it runs already or has a result.
fn accept(shared: &Arc<Shared>, task: pb::Task) {
    let run_key = task.run_key.clone();
    if lock(&shared.running).contains(&run_key) {
        tracing::info!(%run_key, "Task delivered again while it runs; not starting it twice");
        return;
    }
    let kept = lock(&shared.unacked).get(&run_key).cloned();
    if let Some(result) = kept {
        let _ = shared.out.send(AgentMessage {
            body: Some(agent_message::Body::Result(result)),
        });
        return;
    }
    lock(&shared.running).insert(run_key.clone());
    let shared = shared.clone();
    let counted = shared.in_flight.start();
    tokio::spawn(async move {
        let _counted = counted;
        let result = execute(&shared, task).await.into_result(run_key.clone());
        lock(&shared.unacked).insert(run_key.clone(), result.clone());
        lock(&shared.running).remove(&run_key);
        let _ = shared.out.send(AgentMessage {
            body: Some(agent_message::Body::Result(result)),
        });
    });
}

fn update(shared: &Shared, run_key: &str, status: &str, logs: Vec<LogLine>) {
    let _ = shared.out.send(AgentMessage {
        body: Some(agent_message::Body::Update(TaskUpdate {
            run_key: run_key.to_owned(),
            status: status.to_owned(),
            logs,
        })),
    });
}

fn system(line: String) -> LogLine {
    LogLine {
        stream: "system".into(),
        line,
    }
}

/// Runs a task; its outcome is what the agent sends as the `TaskResult`.
async fn execute(shared: &Arc<Shared>, task: pb::Task) -> deploy::TaskOutcome {
    let run_key = task.run_key.clone();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    if task.deadline_unix_ms > 0 && now_ms as i64 > task.deadline_unix_ms {
        return deploy::TaskOutcome::failed(
            ErrorKind::Timeout,
            false,
            format!("task {run_key} arrived after its deadline; not started"),
        );
    }
    // A child of the orchestrator's task.dispatch (or health.check) span.
    let span = tracing::info_span!("agent.execute", run_key = %run_key, kind = %task.kind);
    sextant_exporters::telemetry::set_parent(&span, &task.traceparent);
    async move {
        tracing::info!(run_key = %run_key, kind = %task.kind, "Task started");
        let outcome = run_task(shared, task).await;
        if outcome.success {
            tracing::info!(run_key = %run_key,
                digest = %outcome.deployed_digest.as_deref().unwrap_or_default(), "Task succeeded");
        } else {
            tracing::warn!(run_key = %run_key,
                error_type = %outcome.error_type.map_or("", ErrorKind::as_str),
                error = %outcome.error.as_deref().unwrap_or_default(), "Task failed");
        }
        outcome
    }
    .instrument(span)
    .await
}

async fn run_task(shared: &Arc<Shared>, task: pb::Task) -> deploy::TaskOutcome {
    let run_key = task.run_key.clone();
    let invalid = |why: String| deploy::TaskOutcome::failed(ErrorKind::Invalid, false, why);
    update(shared, &run_key, "running", vec![]);
    if let Err(e) = write_artifacts(&shared.data_dir, &run_key, &task.artifacts) {
        return invalid(e.to_string());
    }
    let auth = task.registry_auth.as_ref().map(|a| RegistryAuth {
        username: a.username.clone(),
        password: a.password.clone(),
        server_address: (!a.server_address.is_empty()).then(|| a.server_address.clone()),
    });
    match (&shared.runner, task.payload) {
        (_, None) => invalid("the task has no payload".into()),
        (Runner::DryRun { delay, executed }, Some(payload)) => {
            let done = lock(&shared.dry_done).get(&run_key).cloned();
            if let Some(mut outcome) = done {
                outcome.resumed = true;
                return outcome;
            }
            executed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(*delay).await;
            let digest = match &payload {
                Payload::DeployJson(json) => serde_json::from_str::<DeploySpec>(json)
                    .ok()
                    .and_then(|s| s.image.rsplit_once('@').map(|(_, d)| d.to_owned())),
                _ => None,
            };
            let outcome = deploy::TaskOutcome {
                deployed_digest: digest,
                ..deploy::TaskOutcome::succeeded()
            };
            lock(&shared.dry_done).insert(run_key, outcome.clone());
            outcome
        }
        (Runner::Docker(executor), Some(Payload::Check(check))) => {
            let argv = vec!["sh".to_owned(), "-c".to_owned(), check.command.clone()];
            let timeout = Duration::from_millis(u64::from(check.timeout_ms.max(100)));
            match executor.run_check(&check.container, &argv, timeout).await {
                Ok(()) => deploy::TaskOutcome::succeeded(),
                Err(e) => deploy::TaskOutcome::failed(ErrorKind::Health, false, e.to_string()),
            }
        }
        (Runner::Docker(executor), Some(payload)) => {
            let interrupted = matches!(
                executor.journal().read(&run_key),
                Ok(Some(r)) if r.state == RecordState::Running
            );
            let (events, mut rx) = mpsc::unbounded_channel::<TaskEvent>();
            let forward = {
                let shared = shared.clone();
                let run_key = run_key.clone();
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        match event {
                            TaskEvent::Status {
                                container,
                                phase,
                                message,
                                ..
                            } => update(
                                &shared,
                                &run_key,
                                &phase.to_string(),
                                vec![system(format!("{container}: {message}"))],
                            ),
                            TaskEvent::Log {
                                container, line, ..
                            } => update(
                                &shared,
                                &run_key,
                                "",
                                vec![LogLine {
                                    stream: "stdout".into(),
                                    line: format!("{container}: {line}"),
                                }],
                            ),
                            TaskEvent::Finished { .. } => {}
                        }
                    }
                })
            };
            let outcome = match payload {
                Payload::DeployJson(json) => match serde_json::from_str::<DeploySpec>(&json) {
                    Ok(mut spec) if spec.task_id == run_key => {
                        spec.registry_auth = auth;
                        executor.deploy(&spec, events).await
                    }
                    Ok(_) => {
                        drop(events);
                        let _ = forward.await;
                        return invalid("the spec's task id is not its run key".into());
                    }
                    Err(e) => {
                        drop(events);
                        let _ = forward.await;
                        return invalid(format!("bad deploy spec: {e}"));
                    }
                },
                Payload::ComposeJson(json) => match serde_json::from_str::<ComposeLock>(&json) {
                    Ok(mut lock) if lock.task_id == run_key => {
                        lock.registry_auth = auth;
                        executor.apply_compose(&lock, events).await
                    }
                    Ok(_) => {
                        drop(events);
                        let _ = forward.await;
                        return invalid("the compose-lock's task id is not its run key".into());
                    }
                    Err(e) => {
                        drop(events);
                        let _ = forward.await;
                        return invalid(format!("bad compose-lock: {e}"));
                    }
                },
                Payload::Check(_) => {
                    drop(events);
                    let _ = forward.await;
                    return invalid("misrouted check task".into());
                }
            };
            let _ = forward.await;
            match outcome {
                Ok(record) => outcome_of(record, interrupted),
                Err(e) => invalid(e.to_string()),
            }
        }
    }
}

/// The deploy contract's outcome of what the Docker executor recorded: the
/// one place the agent's record becomes what it reports. `interrupted`:
/// the journal found the run key running when the task started.
fn outcome_of(record: executor::TaskOutcome, interrupted: bool) -> deploy::TaskOutcome {
    let json = serde_json::to_string(&record).ok();
    let mut outcome = if record.status == TaskStatus::Succeeded {
        deploy::TaskOutcome::succeeded()
    } else {
        let (kind, retryable) = match record.status {
            TaskStatus::RolledBack => (ErrorKind::Health, false),
            // The agent stopped while it ran: nothing runs it again under
            // this key; a new attempt (a new key) may.
            _ if interrupted => (ErrorKind::Connection, true),
            _ => (ErrorKind::Command, false),
        };
        deploy::TaskOutcome::failed(kind, retryable, record.message)
    };
    outcome.deployed_digest = record.deployed_digest;
    outcome.logs = record.logs;
    outcome.resumed = record.replayed;
    outcome.record = json;
    outcome
}

/// Why a task's artifacts could not be written.
#[derive(Debug, thiserror::Error)]
enum ArtifactError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid artifact name {name:?}")]
    InvalidName { name: String },
    #[error("artifact {name} does not match its sha256 ({actual} ≠ {expected})")]
    Checksum {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the task's artifacts to `DATA_DIR/artifacts/RUN_KEY/`, checking
/// each sha256.
fn write_artifacts(
    data_dir: &Path,
    run_key: &str,
    artifacts: &[pb::Artifact],
) -> Result<(), ArtifactError> {
    use sha2::Digest as _;
    if artifacts.is_empty() {
        return Ok(());
    }
    let dir = data_dir.join("artifacts").join(run_key);
    if let Err(source) = std::fs::create_dir_all(&dir) {
        return Err(ArtifactError::CreateDir { dir, source });
    }
    for a in artifacts {
        if a.name.is_empty() || a.name.contains('/') || a.name.starts_with('.') {
            return Err(ArtifactError::InvalidName {
                name: a.name.clone(),
            });
        }
        let sum = hex::encode(sha2::Sha256::digest(&a.content));
        if sum != a.sha256 {
            return Err(ArtifactError::Checksum {
                name: a.name.clone(),
                actual: sum,
                expected: a.sha256.clone(),
            });
        }
        let path = dir.join(&a.name);
        if let Err(source) = std::fs::write(&path, &a.content) {
            return Err(ArtifactError::Write { path, source });
        }
    }
    Ok(())
}

/// Exponential backoff with full jitter.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);

    fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST,
            max: max.max(Self::FIRST),
        }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn next(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        ceiling.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: TaskStatus) -> executor::TaskOutcome {
        executor::TaskOutcome {
            task_id: "t-1.1".into(),
            status,
            deployed_digest: (status == TaskStatus::Succeeded).then(|| "sha256:1".into()),
            container_id: Some("c1".into()),
            previous: None,
            message: "what happened".into(),
            logs: vec!["last".into()],
            services: Vec::new(),
            started_at: 1,
            finished_at: 2,
            replayed: false,
        }
    }

    /// The `TaskResult` fields the agent sent before it reported a
    /// [`deploy::TaskOutcome`].
    #[test]
    fn an_executor_record_becomes_the_result_it_was() {
        let success = outcome_of(
            executor::TaskOutcome {
                replayed: true,
                ..record(TaskStatus::Succeeded)
            },
            false,
        )
        .into_result("t-1.1");
        assert!(success.success && success.replayed);
        assert_eq!(success.deployed_digest, "sha256:1");
        assert_eq!(
            (success.error.as_str(), success.error_type.as_str()),
            ("", "")
        );
        assert_eq!(success.logs, ["last"]);
        let record_json: serde_json::Value = serde_json::from_str(&success.outcome_json).unwrap();
        assert_eq!(record_json["container_id"], "c1");

        for (status, interrupted, kind, retryable) in [
            (TaskStatus::RolledBack, false, "health", false),
            (TaskStatus::RolledBack, true, "health", false),
            (TaskStatus::Failed, true, "connection", true),
            (TaskStatus::Failed, false, "command", false),
        ] {
            let failed = outcome_of(record(status), interrupted).into_result("t-1.1");
            assert!(!failed.success);
            assert_eq!(failed.error, "what happened");
            assert_eq!(
                failed.error_type, kind,
                "{status} interrupted={interrupted}"
            );
            assert_eq!(failed.retryable, retryable);
            assert_eq!(failed.deployed_digest, "");
            assert!(!failed.outcome_json.is_empty());
        }
    }
}
