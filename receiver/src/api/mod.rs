//! The read API (JSON, tenant-scoped), health checks and `/metrics`.

mod reports;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sextant_model::{HostSummary, Page, Rollout, TargetState, UnixNanos};

use crate::auth::{AuthError, Authenticator, Principal, Scope};
use crate::metrics::HubMetrics;
use crate::store::{HubStore, ListQuery, StateQuery};

/// State of the API routes.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn HubStore>,
    pub auth: Authenticator,
    pub metrics: HubMetrics,
    /// A host with no report for this long is stale.
    pub stale_after: std::time::Duration,
    /// The configured order of environments.
    pub environments: Arc<[String]>,
}

/// The API, health and metrics routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/state", get(state_handler))
        .route("/api/v1/rollout", get(rollout_handler))
        .route("/api/v1/hosts", get(hosts_handler))
        .route("/api/v1/hosts/{host}", get(reports::host))
        .route("/api/v1/environments", get(reports::environments))
        .route("/api/v1/applications", get(reports::applications))
        .route("/api/v1/workloads", get(reports::workloads))
        .route("/api/v1/targets", get(reports::targets))
        .route(
            "/api/v1/environments/{environment}/state",
            get(reports::environment_state),
        )
        .route("/api/v1/compare", get(reports::compare))
        .route("/api/v1/drift", get(reports::drift))
        .route("/api/v1/history", get(reports::history))
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
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

pub(crate) fn reader(state: &ApiState, headers: &HeaderMap) -> Result<Principal, ApiError> {
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

/// Default and largest page size of a list.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Filters and paging of `GET /api/v1/hosts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    host: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A list cursor: the last row's name, hex-encoded so it stays opaque and
/// URL-safe.
fn encode_cursor(name: &str) -> String {
    hex::encode(name)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "invalid cursor: pass back the next_cursor of the previous page",
            )
        })
}

pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        n => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit {n} is out of range 1..={MAX_LIMIT}"),
        )),
    }
}

async fn hosts_handler(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<HostsParams>, QueryRejection>,
) -> Result<Json<Page<HostSummary>>, ApiError> {
    let principal = reader(&state, &headers)?;
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let query = ListQuery {
        filter: StateQuery {
            workspace: p.workspace,
            application: p.application,
            workload: p.workload,
            environment: p.environment,
            target: p.target,
        },
        host: p.host,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = state.store.hosts(&principal.tenant, &query).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(&r.host)))
        .flatten();
    let stale_before = UnixNanos::now()
        .0
        .saturating_sub(i64::try_from(state.stale_after.as_nanos()).unwrap_or(i64::MAX));
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let items = rows
        .into_iter()
        .map(|r| HostSummary {
            stale: r.last_seen_at < stale_before,
            last_seen_at: UnixNanos(r.last_seen_at),
            workloads: count(r.workloads),
            succeeded: count(r.succeeded),
            failed: count(r.failed),
            in_progress: count(r.in_progress),
            host: r.host,
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
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
