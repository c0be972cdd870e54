//! The agent's health routes: `/health/ready` (the Docker engine answers a
//! ping) and `/health` (docs/telemetry.md "Health"): the Docker engine, the
//! outbox's backlog per OTLP endpoint and, with an orchestrator, whether
//! this agent is registered with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus::{IntGaugeVec, Registry};
use sextant_exporters::outbox::Outbox;
use sextant_kit::health::{self, CHECK_TIMEOUT, Check, Probe, Report};

use super::docker::DockerLink;
use crate::executor::Journal;

/// The service name `/health` reports.
pub const SERVICE: &str = "sextant-agent";

/// An endpoint whose oldest unsent record is older than this gets a
/// warning: the hub (or the collector in between) has not taken anything
/// for a while. Nothing is lost meanwhile; the outbox keeps it on disk.
pub const OUTBOX_BEHIND: Duration = Duration::from_secs(300);

/// What the listener's routes read: the health probes' inputs and the
/// metrics registry.
pub(super) struct HealthState {
    pub(super) docker: Arc<DockerLink>,
    pub(super) registry: Registry,
    pub(super) outbox: Outbox,
    pub(super) journal: Journal,
    pub(super) tasks: IntGaugeVec,
    pub(super) health: HealthConfig,
}

/// What `/health` needs beyond the Docker link and the outbox.
pub(super) struct HealthConfig {
    /// The OTLP endpoints, in the outbox's consumer order.
    pub endpoints: Vec<String>,
    /// Where the orchestrator channel keeps this agent's identity.
    pub data_dir: PathBuf,
    /// Whether an orchestrator is configured.
    pub orchestrator: bool,
}

/// Why the Docker engine does not answer a ping.
#[derive(Debug, thiserror::Error)]
pub(super) enum PingError {
    #[error("not connected to the Docker engine yet")]
    NotConnected,
    /// The ping failed, or (before the first connection) the last attempt
    /// to connect did.
    #[error("Docker engine unreachable: {0}")]
    Unreachable(#[source] Arc<bollard::errors::Error>),
}

/// The outbox's figures could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the outbox: {0}")]
pub(super) struct OutboxReadError(#[source] tokio::task::JoinError);

/// Pings the engine once it has answered; why not, otherwise.
async fn docker_ping(link: &DockerLink) -> Result<(), PingError> {
    let Some(docker) = link.docker.get() else {
        let error = link.error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        return Err(error.map_or(PingError::NotConnected, PingError::Unreachable));
    };
    docker
        .ping()
        .await
        .map(|_| ())
        .map_err(|e| PingError::Unreachable(Arc::new(e)))
}

pub(super) async fn ready(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    match tokio::time::timeout(CHECK_TIMEOUT, docker_ping(&state.docker)).await {
        Ok(Ok(())) => (StatusCode::OK, "ready".to_owned()),
        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, why.to_string()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Docker engine did not answer within 3 s".to_owned(),
        ),
    }
}

pub(super) async fn health(State(state): State<Arc<HealthState>>) -> Report {
    let docker = health::timed("docker", CHECK_TIMEOUT, async {
        docker_ping(&state.docker)
            .await
            .map(|()| Probe::pass("the Docker engine answers"))
    });
    let outbox = health::timed(
        "outbox",
        CHECK_TIMEOUT,
        outbox(state.outbox.clone(), state.health.endpoints.clone()),
    );
    let (docker, outbox) = tokio::join!(docker, outbox);
    let mut checks = vec![docker, outbox];
    if state.health.orchestrator {
        checks.push(orchestrator(&state.health.data_dir));
    }
    Report::new(SERVICE, env!("CARGO_PKG_VERSION"), checks)
}

/// Records not yet acknowledged per endpoint, and the oldest one's age.
async fn outbox(outbox: Outbox, endpoints: Vec<String>) -> Result<Probe, OutboxReadError> {
    // Reads one record header per endpoint from disk.
    let stats = tokio::task::spawn_blocking(move || outbox.stats())
        .await
        .map_err(OutboxReadError)?;
    let pending: u64 = stats.consumers.iter().map(|c| c.pending).sum();
    let oldest = stats.consumers.iter().filter_map(|c| c.oldest_age).max();
    let behind: Vec<String> = stats
        .consumers
        .iter()
        .filter(|c| c.oldest_age.is_some_and(|age| age > OUTBOX_BEHIND))
        .map(|c| {
            // Consumers are named `endpoint-<i>` in endpoint order.
            let endpoint = c
                .name
                .strip_prefix("endpoint-")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| endpoints.get(i))
                .map_or(c.name.as_str(), String::as_str);
            format!(
                "{endpoint}: {} record(s) unsent, the oldest {} s old",
                c.pending,
                c.oldest_age.map_or(0, |a| a.as_secs())
            )
        })
        .collect();
    let probe = if !behind.is_empty() {
        Probe::warn(format!(
            "sending is behind (kept on disk): {}",
            behind.join("; ")
        ))
    } else if pending == 0 {
        Probe::pass(format!(
            "everything sent to {} endpoint(s)",
            endpoints.len()
        ))
    } else {
        Probe::pass(format!(
            "{pending} record(s) on their way to {} endpoint(s)",
            endpoints.len()
        ))
    };
    Ok(probe
        .with("pending", pending)
        .with("bytes", stats.bytes)
        .with("oldest_pending_seconds", oldest.map_or(0, |a| a.as_secs())))
}

/// Whether the orchestrator channel has registered this agent (its
/// identity file exists); it keeps no other state a request could read.
fn orchestrator(data_dir: &std::path::Path) -> Check {
    let probe = match crate::channel::Identity::load(data_dir) {
        Ok(Some(identity)) => Ok(Probe::pass(format!(
            "registered with the orchestrator as agent {}",
            identity.agent_id
        ))),
        Ok(None) => Ok(Probe::warn(
            "not registered with the orchestrator yet (no identity)",
        )),
        Err(e) => Err(e),
    };
    Check::instant("orchestrator", probe)
}
