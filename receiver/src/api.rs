//! The read API (JSON, tenant-scoped), health checks and `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sextant_model::{Rollout, TargetState};

use crate::auth::{AuthError, Authenticator, Principal, Scope};
use crate::metrics::HubMetrics;
use crate::store::{HubStore, StateQuery};

/// State of the API routes.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn HubStore>,
    pub auth: Authenticator,
    pub metrics: HubMetrics,
}

/// The API, health and metrics routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/state", get(state_handler))
        .route("/api/v1/rollout", get(rollout_handler))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// An API error: `{"error": {"code": "...", "message": "..."}}`. The code
/// is stable; the message is for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AuthError::Missing | AuthError::Unknown => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "Store read failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub store is unavailable",
        )
    }
}

fn reader(state: &ApiState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(state.auth.check(authorization, Scope::Read)?)
}

/// Filters of `GET /api/v1/state`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
}

async fn state_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<StateParams>, QueryRejection>,
) -> Result<Json<Vec<TargetState>>, ApiError> {
    let principal = reader(&state, &headers)?;
    let Query(p) = params?;
    let query = StateQuery {
        workspace: p.workspace,
        application: p.application,
        workload: p.workload,
        environment: p.environment,
        target: p.target,
    };
    Ok(Json(state.store.state(&principal.tenant, &query).await?))
}

/// Parameters of `GET /api/v1/rollout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutParams {
    workload: String,
    environment: String,
    target: Option<String>,
    application: Option<String>,
    workspace: Option<String>,
}

async fn rollout_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<RolloutParams>, QueryRejection>,
) -> Result<Json<Rollout>, ApiError> {
    let principal = reader(&state, &headers)?;
    let Query(p) = params?;
    let query = StateQuery {
        workspace: p.workspace,
        application: p.application,
        workload: Some(p.workload.clone()),
        environment: Some(p.environment.clone()),
        target: p.target.clone(),
    };
    let states = state.store.state(&principal.tenant, &query).await?;
    if states.is_empty() {
        let target = p
            .target
            .map(|t| format!(" and target {t:?}"))
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no workload {:?} in environment {:?}{target}",
                p.workload, p.environment
            ),
        ));
    }
    Ok(Json(Rollout::from_states(&states)))
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "live"}))
}

async fn ready(State(state): State<ApiState>) -> Response {
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

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
