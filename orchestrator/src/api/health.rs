//! The orchestrator's own health, `GET /health` (docs/telemetry.md
//! "Health"): its database and its agents, each with the time the check
//! took. Not to be confused with [`crate::jobs::health_check`], which verifies the
//! targets a deployment changed.

use std::time::Duration;

use sextant_kit::health::{self, CHECK_TIMEOUT, Probe, Report};

use crate::service::Orchestrator;

/// The service name `/health` reports.
pub const SERVICE: &str = "sextant-orchestrator";

/// Runs the checks side by side.
pub async fn report(orchestrator: &Orchestrator) -> Report {
    let database = health::timed("database", CHECK_TIMEOUT, async {
        let backend = orchestrator.store.backend();
        orchestrator
            .store
            .ping()
            .await
            .map(|()| Probe::pass(format!("{backend} answers")))
    });
    let agents = health::timed("agents", CHECK_TIMEOUT, agents(orchestrator));
    let (database, agents) = tokio::join!(database, agents);
    Report::new(SERVICE, env!("CARGO_PKG_VERSION"), vec![database, agents])
}

/// Agents registered (not revoked) and connected, over every tenant, as
/// `/metrics` counts them: `warn` when agents are registered but none is
/// connected (agent targets cannot deploy), `pass` otherwise, including
/// when none is registered (an SSH-only estate).
async fn agents(orchestrator: &Orchestrator) -> crate::store::Result<Probe> {
    let heartbeat = orchestrator
        .agents
        .as_ref()
        .map_or(Duration::from_secs(30), |a| a.heartbeat);
    let agents = orchestrator.store.agent_liveness().await?;
    let now = crate::store::now_ms();
    let live: Vec<_> = agents.iter().filter(|a| !a.1).collect();
    let registered = live.len() as u64;
    let connected = live
        .iter()
        .filter(|(_, _, session, last)| {
            crate::metrics::is_connected(*session, *last, now, heartbeat)
        })
        .count() as u64;
    let local = orchestrator
        .agents
        .as_ref()
        .map_or(0, |a| a.local_streams() as u64);
    let probe = match (registered, connected) {
        (0, _) => Probe::pass("no agents registered"),
        (n, 0) => Probe::warn(format!(
            "{n} agent(s) registered, none connected: agent targets cannot deploy"
        )),
        (n, c) => Probe::pass(format!("{c} of {n} registered agent(s) connected")),
    };
    Ok(probe
        .with("registered", registered)
        .with("connected", connected)
        .with("streams_on_this_replica", local))
}
