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
//!
//! [`identity`] keeps the identity file; [`task`] runs what a stream
//! delivers; [`error`] says why the channel stops.

pub mod error;
pub mod identity;
mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sextant_protocol::AgentServiceClient;
use sextant_protocol::v1::{
    AgentMessage, Heartbeat, Hello, RegisterRequest, ServerMessage, agent_message, server_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::executor::Executor;
pub use error::{ChannelError, EndpointError, Refused};
use error::{SessionError, chain};
pub use identity::{Identity, IdentityError};
use sextant_kit::Secret;
pub use task::InFlight;
use task::{Shared, lock};

/// How to reach the orchestrator and who this agent is.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The orchestrator's agent endpoints (`http://host:8082`), tried in turn.
    pub endpoints: Vec<String>,
    /// A one-time registration token, needed only until the identity file
    /// exists. A `Secret`: this config's `Debug` never shows it.
    pub registration_token: Option<Secret>,
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
    /// (for the control-plane benchmark and `sextant up --demo`). Results
    /// are kept in memory; `executed` counts the tasks actually run (not
    /// replayed).
    DryRun {
        delay: Duration,
        executed: Arc<std::sync::atomic::AtomicU64>,
        /// A deploy whose image contains this text fails as a container
        /// that never became healthy would (`health`, not retryable), so
        /// that a dry run can show a failure and its rollback. `None`:
        /// every deploy succeeds.
        fail_image: Option<String>,
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

/// Registers (when there is no identity yet), then keeps a stream open
/// until `cancel`. Returns an error only when the orchestrator refuses this
/// agent for good (a bad token, a revoked agent). Tasks still running when
/// it returns go on by themselves.
pub async fn run(
    config: ChannelConfig,
    runner: Runner,
    cancel: CancellationToken,
) -> Result<(), ChannelError> {
    run_tracked(config, runner, InFlight::default(), cancel).await
}

/// [`run`], counting the tasks it starts in `in_flight`, so that the
/// caller can wait for them once it has returned.
pub async fn run_tracked(
    config: ChannelConfig,
    runner: Runner,
    in_flight: InFlight,
    cancel: CancellationToken,
) -> Result<(), ChannelError> {
    if config.endpoints.is_empty() {
        return Err(ChannelError::NoEndpoint);
    }
    // A bad endpoint or TLS file stops the agent now, not at every retry.
    for endpoint in &config.endpoints {
        grpc_endpoint(endpoint, &config.tls)?;
    }
    let identity = match Identity::load(&config.data_dir)? {
        Some(identity) => identity,
        None => {
            let Some(token) = &config.registration_token else {
                return Err(ChannelError::NoIdentity {
                    data_dir: config.data_dir.clone(),
                });
            };
            let identity = register(&config, &runner, token.expose(), &cancel).await?;
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
            Err(SessionError::Refused(refused)) => return Err(refused.into()),
            Err(e) => {
                tracing::warn!(%endpoint, error = %chain(&e), "Orchestrator stream failed; reconnecting")
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
) -> Result<tonic::transport::Endpoint, EndpointError> {
    let parsed =
        tonic::transport::Endpoint::from_shared(endpoint.to_owned()).map_err(|source| {
            EndpointError::Invalid {
                endpoint: endpoint.to_owned(),
                source,
            }
        })?;
    Ok(sextant_exporters::sender::with_tls(parsed, endpoint, tls)?)
}

async fn connect(
    endpoint: &str,
    tls: &sextant_exporters::sender::TlsConfig,
) -> Result<AgentServiceClient<tonic::transport::Channel>, SessionError> {
    let channel = grpc_endpoint(endpoint, tls)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(15))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|source| SessionError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    Ok(AgentServiceClient::new(channel))
}

async fn register(
    config: &ChannelConfig,
    runner: &Runner,
    token: &str,
    cancel: &CancellationToken,
) -> Result<Identity, ChannelError> {
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
            client.register(request).await.map_err(SessionError::from)
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
                if let SessionError::Status(status) = &e
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
                tracing::warn!(%endpoint, error = %chain(&e), "Cannot register yet; retrying");
            }
        }
        attempt += 1;
        tokio::select! {
            () = cancel.cancelled() => return Err(ChannelError::Stopped),
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
) -> Result<(), SessionError> {
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
        .map_err(|_| SessionError::Credential)?;
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
        other => return Err(SessionError::NoWelcome(format!("{other:?}"))),
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
                    Some(server_message::Body::Task(task)) => task::accept(shared, task),
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

    #[test]
    fn the_registration_token_never_shows_in_debug() {
        let config = ChannelConfig {
            endpoints: vec!["http://127.0.0.1:8082".into()],
            registration_token: Some(Secret::new("sxt_reg_do_not_print")),
            name: "agent".into(),
            labels: BTreeMap::new(),
            data_dir: PathBuf::from("/tmp"),
            max_backoff: Duration::from_secs(1),
            tls: sextant_exporters::sender::TlsConfig::default(),
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("sxt_reg_do_not_print"), "{debug}");
    }
}
