//! The hub's health routes: `/health/live` (the process answers),
//! `/health/ready` (the database answers) and `/health` (every dependency
//! with its latency, docs/telemetry.md "Health").

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sextant_exporters::health::{self, CHECK_TIMEOUT, Probe, Report};

use super::ApiState;

/// The service name `/health` reports.
pub const SERVICE: &str = "sextant-hub";

pub(super) async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "live"}))
}

pub(super) async fn ready(State(state): State<ApiState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready", "database": state.store.backend()}))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "Readiness check failed: database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "not_ready", "database": state.store.backend(), "error": e.to_string()})),
            )
                .into_response()
        }
    }
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
