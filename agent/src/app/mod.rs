//! `sextant agent run`, in the hub's shape: [`Application::build`] opens
//! the outbox and the task journal and binds the health and metrics
//! listener (so a test or the banner can read [`Application::addr`]);
//! [`Application::run_until_stopped`] runs every component, each on a
//! child token of its shutdown stage: the observer writing into the durable
//! outbox ([`sink`]), the orchestrator channel when one is configured, one
//! sender per OTLP endpoint draining the outbox, and `/metrics`,
//! `/health/live`, `/health/ready` (the Docker engine answers a ping) and
//! `/health` (`health`).
//!
//! When the caller's token fires (or a component fails) they stop in
//! order, each stage within [`STAGE_DEADLINE`]: the listener, the Docker
//! event watch and the orchestrator session stop taking new work; the
//! tasks the orchestrator gave finish; then the senders deliver what the
//! outbox holds and stop. What they could not deliver stays on disk for
//! the next start. (The stages' tokens are not children of the caller's,
//! or they would all fire at once.)

mod docker;
mod error;
mod health;
mod routes;
pub mod sink;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use sextant_exporters::OutboxMetrics;
use sextant_exporters::outbox::{Outbox, OutboxConfig};
use sextant_exporters::sender::{
    self, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport, SenderConfig, TlsConfig,
};
use sextant_kit::shutdown::Stage;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::{self, ChannelConfig, ChannelError, InFlight, Runner};
use crate::config::{AgentConfig, Protocol};
use crate::executor::{Executor, Journal};
use crate::observe::{Identity, Observer, ObserverConfig};
use docker::DockerLink;
pub use error::AgentError;
pub use sink::{AgentMetrics, OutboxSink};

/// How long each stage of shutdown may take before the next one starts:
/// the three stages fit in the 10 s Docker gives a container to stop.
pub const STAGE_DEADLINE: Duration = Duration::from_secs(3);

/// How long the senders have to stop once told, when the flush took its
/// whole deadline: they stop at once, but need to be polled to.
const SENDER_STOP: Duration = Duration::from_millis(500);

/// How often the last stage looks whether the senders have caught up.
const FLUSH_POLL: Duration = Duration::from_millis(20);

/// The consumer name of the `i`-th endpoint in the outbox.
fn consumer(i: usize) -> String {
    format!("endpoint-{i}")
}

/// The transport of one endpoint.
enum AnyTransport {
    Grpc(GrpcTransport),
    Http(HttpTransport),
}

/// One transport per endpoint, in order; refuses a bad endpoint or an
/// unusable TLS file (with its path and why).
fn transports(config: &AgentConfig) -> Result<Vec<AnyTransport>, AgentError> {
    let tls = TlsConfig {
        ca_file: config.ca_file.clone(),
        client_cert: config.client_cert.as_ref().map(|(cert, _)| cert.clone()),
        client_key: config.client_cert.as_ref().map(|(_, key)| key.clone()),
    };
    let token = config.token.clone();
    config
        .otlp_endpoints
        .iter()
        .map(|endpoint| {
            Ok(match config.protocol {
                Protocol::Grpc => AnyTransport::Grpc(
                    GrpcTransport::new(GrpcConfig {
                        token: token.clone(),
                        gzip: config.gzip,
                        tls: tls.clone(),
                        ..GrpcConfig::new(endpoint.clone())
                    })
                    .map_err(AgentError::Endpoint)?,
                ),
                Protocol::HttpProtobuf => AnyTransport::Http(
                    HttpTransport::new(HttpConfig {
                        token: token.clone(),
                        gzip: config.gzip,
                        tls: tls.clone(),
                        ..HttpConfig::new(endpoint.clone())
                    })
                    .map_err(AgentError::Endpoint)?,
                ),
            })
        })
        .collect()
}

/// The agent, built and ready to run.
pub struct Application {
    config: AgentConfig,
    outbox: Outbox,
    transports: Vec<AnyTransport>,
    metrics: AgentMetrics,
    docker: Arc<DockerLink>,
    listener: TcpListener,
    addr: SocketAddr,
    router: axum::Router,
    refused: prometheus::IntCounter,
}

impl Application {
    /// Checks the endpoints and their TLS files, opens the outbox and the
    /// task journal, and binds the health and metrics listener; nothing
    /// runs yet.
    pub async fn build(config: AgentConfig) -> Result<Self, AgentError> {
        // Endpoints and TLS files first: a bad one is refused before
        // anything else is opened.
        let transports = transports(&config)?;
        let registry = Registry::new();
        let outbox_metrics = OutboxMetrics::new();
        outbox_metrics.register(&registry)?;
        let metrics = AgentMetrics::new(&registry)?;
        let refused = sextant_kit::serve::refused_counter();
        registry.register(Box::new(refused.clone()))?;
        let outbox_config = OutboxConfig {
            max_bytes: config.outbox_max_bytes,
            consumers: (0..config.otlp_endpoints.len()).map(consumer).collect(),
            ..OutboxConfig::default()
        };
        let outbox = Outbox::open_with_metrics(
            config.data_dir.join("outbox"),
            outbox_config,
            outbox_metrics,
        )
        .map_err(AgentError::Outbox)?;
        let journal = Journal::open(&config.data_dir).map_err(AgentError::Journal)?;
        let (listener, addr) =
            sextant_kit::serve::bind(config.listen, "health and metrics").await?;
        let docker = Arc::new(DockerLink::default());
        let router = routes::router(health::HealthState {
            docker: docker.clone(),
            registry,
            outbox: outbox.clone(),
            journal,
            tasks: metrics.tasks.clone(),
            health: health::HealthConfig {
                endpoints: config.otlp_endpoints.clone(),
                data_dir: config.data_dir.clone(),
                orchestrator: !config.orchestrator.is_empty(),
            },
        });
        Ok(Self {
            refused: refused.with_label_values(&["health"]),
            config,
            outbox,
            transports,
            metrics,
            docker,
            listener,
            addr,
            router,
        })
    }

    /// Where `/metrics` and `/health/*` listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The outbox the observer writes into and the senders drain.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Runs every component until `shutdown` fires or one of them fails,
    /// then stops them in order (see the module docs). The first failure,
    /// if any, is the result.
    pub async fn run_until_stopped(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<(), AgentError> {
        let in_flight = InFlight::default();
        tracing::info!(
            host = %self.config.host_name,
            environment = %self.config.environment,
            endpoints = ?self.config.otlp_endpoints,
            listen = %self.addr,
            "Sextant agent started"
        );
        let mut senders = Stage::new("outbox senders");
        self.spawn_senders(&mut senders);
        let outbox = self.outbox.clone();
        let mut intake = Stage::new("intake");
        self.spawn_intake(&mut intake, &in_flight);
        // Until asked to stop, or until a component ends.
        let mut result = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            ended = intake.ended() => ended,
            ended = senders.ended() => ended,
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "Agent component failed; stopping");
        }
        // 1. Stop taking new work: the listener, the Docker event watch and
        // the orchestrator session.
        intake.stop(STAGE_DEADLINE, &mut result).await;
        // 2. The tasks the orchestrator gave finish (their journal records
        // them as running if they do not in time).
        if tokio::time::timeout(STAGE_DEADLINE, in_flight.finished())
            .await
            .is_err()
        {
            tracing::warn!(tasks = in_flight.count(), deadline = ?STAGE_DEADLINE,
                "Tasks still running at shutdown; leaving them");
        }
        // 3. The senders deliver what the outbox holds, then stop, both
        // within the one deadline.
        let deadline = Instant::now() + STAGE_DEADLINE;
        if tokio::time::timeout_at(deadline, caught_up(&outbox))
            .await
            .is_err()
        {
            tracing::warn!(deadline = ?STAGE_DEADLINE,
                "Records left unsent at shutdown; they stay in the outbox for the next start");
        }
        let deadline = deadline.max(Instant::now() + SENDER_STOP);
        senders.stop_by(deadline, &mut result).await;
        result
    }

    /// One sender per endpoint, each on its own consumer of the outbox.
    fn spawn_senders(&mut self, senders: &mut Stage<AgentError>) {
        let endpoints = self.config.otlp_endpoints.iter();
        for (i, (transport, endpoint)) in self.transports.drain(..).zip(endpoints).enumerate() {
            let (outbox, cancel, name) = (self.outbox.clone(), senders.child_token(), consumer(i));
            let endpoint = endpoint.clone();
            let failed = move |source| AgentError::Sender { endpoint, source };
            let config = SenderConfig::default();
            match transport {
                AnyTransport::Grpc(transport) => senders.spawn(async move {
                    sender::run(outbox, name, transport, config, cancel)
                        .await
                        .map_err(failed)
                }),
                AnyTransport::Http(transport) => senders.spawn(async move {
                    sender::run(outbox, name, transport, config, cancel)
                        .await
                        .map_err(failed)
                }),
            }
        }
    }

    /// What takes new work: the listener, and, once the Docker engine has
    /// answered, the observer and the orchestrator channel.
    fn spawn_intake(self, intake: &mut Stage<AgentError>, in_flight: &InFlight) {
        // The health listener has the same limits as every other
        // (docs/security.md); one listener, so all the room it can get.
        let limits = sextant_kit::serve::ListenerLimits::default();
        let limits = sextant_kit::serve::ListenerLimits {
            max_connections: sextant_kit::serve::fit_connections(limits.max_connections, 1),
            ..limits
        };
        let (listener, router, refused) = (self.listener, self.router, self.refused);
        let c = intake.child_token();
        intake.spawn(async move {
            sextant_kit::serve::serve_http(listener, router, limits, refused, c)
                .await
                .map_err(AgentError::Serve)
        });
        let sink = OutboxSink::new(self.outbox, &identity(&self.config), self.metrics);
        intake.spawn(watch_docker(
            self.config,
            self.docker,
            sink,
            in_flight.clone(),
            intake.child_token(),
        ));
    }
}

/// Who this agent reports as.
fn identity(config: &AgentConfig) -> Identity {
    Identity {
        host: config.host_name.clone(),
        environment: config.environment.clone(),
        labels: config.labels.clone(),
    }
}

/// Waits for the Docker engine, then runs the observer and, with an
/// orchestrator, the channel, until `cancel`.
async fn watch_docker(
    config: AgentConfig,
    link: Arc<DockerLink>,
    sink: OutboxSink,
    in_flight: InFlight,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let Some(docker) = link.connect(config.docker_host.as_deref(), &cancel).await else {
        return Ok(());
    };
    let mut observer = Observer::new(
        docker.clone(),
        config.environment.clone(),
        ObserverConfig {
            heartbeat: config.heartbeat,
            resync: config.resync,
            watch_labels: config.watch_labels.clone(),
        },
        sink,
    );
    let observe = async {
        observer.run(cancel.clone()).await;
        Ok::<(), AgentError>(())
    };
    if config.orchestrator.is_empty() {
        return observe.await;
    }
    let runner = if config.dry_run {
        Runner::DryRun {
            delay: Duration::ZERO,
            executed: Arc::default(),
            fail_image: None,
        }
    } else {
        Runner::Docker(Arc::new(
            Executor::with_docker(docker, config.data_dir.clone()).map_err(AgentError::Executor)?,
        ))
    };
    let channel = ChannelConfig {
        endpoints: config.orchestrator.clone(),
        registration_token: config.registration_token.clone(),
        name: config.host_name.clone(),
        labels: config.labels.iter().cloned().collect(),
        data_dir: config.data_dir.clone(),
        max_backoff: Duration::from_secs(30),
        tls: config.orchestrator_tls.clone(),
    };
    let run_channel = async {
        match channel::run_tracked(channel, runner, in_flight, cancel.clone()).await {
            // Asked to stop while it was still registering.
            Ok(()) | Err(ChannelError::Stopped) => Ok(()),
            Err(e) => Err(AgentError::Channel(e)),
        }
    };
    tokio::try_join!(observe, run_channel).map(|_| ())
}

/// Resolves once every consumer of `outbox` has had every record
/// acknowledged.
async fn caught_up(outbox: &Outbox) {
    let mut poll = tokio::time::interval(FLUSH_POLL);
    loop {
        poll.tick().await;
        // Reads one record header per consumer that is behind.
        let o = outbox.clone();
        match tokio::task::spawn_blocking(move || o.stats()).await {
            Ok(stats) if stats.consumers.iter().all(|c| c.pending == 0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
