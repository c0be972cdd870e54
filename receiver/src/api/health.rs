//! The hub's health routes: `/health/live` (the process answers),
//! `/health/ready` (the database answers) and `/health` (every dependency
//! with its latency, docs/telemetry.md "Health").

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sextant_kit::health::{self, CHECK_TIMEOUT, Probe, Report};

use crate::read::ApiState;

/// The service name `/health` reports.
pub const SERVICE: &str = "sextant-hub";

pub(super) async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "live"}))
}

/// How long `/health/ready` waits for the database: a load balancer or
/// an orchestrator probing readiness wants an answer within a second or
/// so, not after the store's own connection timeout.
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) async fn ready(State(state): State<ApiState>) -> Response {
    let backend = state.store.backend();
    let error = match tokio::time::timeout(READY_DEADLINE, state.store.ping()).await {
        Ok(Ok(())) => {
            return Json(serde_json::json!({"status": "ready", "database": backend}))
                .into_response();
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "the database did not answer within {} ms",
            READY_DEADLINE.as_millis()
        ),
    };
    tracing::warn!(error = %error, "Readiness check failed: database does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"status": "not_ready", "database": backend, "error": error})),
    )
        .into_response()
}

/// The hub depends on its database alone: OTLP is written to it and the
/// API reads it.
pub(super) async fn health(State(state): State<ApiState>) -> Report {
    let backend = state.store.backend();
    let database = health::timed("database", CHECK_TIMEOUT, async {
        state
            .store
            .ping()
            .await
            .map(|()| Probe::pass(format!("{backend} answers")))
    })
    .await;
    Report::new(SERVICE, env!("CARGO_PKG_VERSION"), vec![database])
}
