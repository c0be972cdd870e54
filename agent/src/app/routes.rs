//! The agent's one listener: `/metrics`, `/health/live`, `/health/ready`
//! and `/health` ([`super::health`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

use super::health::{self, HealthState};

/// The routes on `state`.
pub(super) fn router(state: HealthState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health::health))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(health::ready))
        .with_state(Arc::new(state))
}

impl HealthState {
    /// Sets `sextant_agent_tasks` from the journal. A journal that cannot
    /// be read leaves the last figures and logs why.
    async fn refresh_tasks(&self) {
        let journal = self.journal.clone();
        match tokio::task::spawn_blocking(move || journal.counts()).await {
            Ok(Ok(counts)) => {
                self.tasks.reset();
                for ((kind, result), n) in counts {
                    self.tasks
                        .with_label_values(&[kind.as_str(), result.as_str()])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the task journal"),
            Err(e) => tracing::warn!(error = %e, "counting the task journal stopped"),
        }
    }
}

async fn metrics(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    state.outbox.refresh_metrics();
    state.refresh_tasks().await;
    sextant_kit::exposition::response(&state.registry.gather())
}
