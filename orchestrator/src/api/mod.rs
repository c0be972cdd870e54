//! The orchestrator's REST API (JSON, tenant-scoped), documented by the
//! OpenAPI document at `/api/openapi.json`.
//!
//! **Who is calling** (`crate::api::auth`). With tokens configured, every route
//! of the API and the job page needs `Authorization: Bearer …`, which
//! names the tenant and the actor (the token's subject; `X-Sextant-Actor`
//! is ignored); `GET` needs the `read`, `deploy` or `admin` scope, every
//! other method `deploy` or `admin`. Without tokens (the local default,
//! loopback only) the tenant is `default` and the actor is the
//! `X-Sextant-Actor` header (`local` if absent). The OpenAPI document,
//! health and metrics are open.

pub mod auth;
pub mod health;

mod agents;
mod apply;
mod error;
mod jobs;
pub mod links;
mod promotions;
mod releases;
pub mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Access;

pub use crate::api::auth::TokenConfig;

use error::*;
pub use error::{ApiError, ErrorBody, ErrorDetail};
use state::authenticate;
pub use state::{ApiState, Caller};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sextant orchestrator API",
        description = "Releases pinned by digest, promotions with approvals and gates, deployment jobs and their tasks. \
            With tokens configured every operation needs `Authorization: Bearer TOKEN`: GET needs the `read`, \
            `deploy` or `admin` scope, every other method `deploy` or `admin` (401 `unauthenticated`, \
            403 `forbidden`). Without tokens (loopback only) the actor is the `X-Sextant-Actor` header."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "config", description = "Environments, targets and components"),
        (name = "releases", description = "Immutable bundles of component digests"),
        (name = "promotions", description = "Promotions, approvals, gates and decision records"),
        (name = "jobs", description = "Deployment jobs, tasks, logs, artifacts and rollback"),
        (name = "agents", description = "Agents, their registration tokens and status"),
        (name = "auth", description = "Who the caller is"),
    )
)]
struct ApiDoc;

/// Declares the `Authorization: Bearer` scheme every operation takes when
/// tokens are configured.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(apply::apply))
        .routes(routes!(apply::environments))
        .routes(routes!(apply::targets))
        .routes(routes!(apply::components))
        .routes(routes!(releases::create_release, releases::list_releases))
        .routes(routes!(releases::get_release))
        .routes(routes!(releases::finalize_release))
        .routes(routes!(
            promotions::create_promotion,
            promotions::list_promotions
        ))
        .routes(routes!(promotions::get_promotion))
        .routes(routes!(promotions::approve))
        .routes(routes!(promotions::reject))
        .routes(routes!(promotions::cancel))
        .routes(routes!(promotions::gate))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::task_logs))
        .routes(routes!(jobs::rollback))
        .routes(routes!(jobs::deployed))
        .routes(routes!(agents::whoami))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::get_agent))
        .routes(routes!(agents::revoke_agent))
        .routes(routes!(agents::create_agent_token))
        .split_for_parts()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The API with health and the OpenAPI document. `pages` (the UI) sit
/// behind the same authentication as the API; the API itself knows
/// nothing of them.
pub fn router(state: ApiState, pages: Router<ApiState>) -> Router {
    let (api, doc) = api_routes();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    // Everything above this layer needs a caller; what is added below it
    // (the document, health, metrics, the redirect of `/`) is open.
    api.merge(pages)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .route(
            "/api/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                }
            }),
        )
        .route("/", get(crate::ui::home))
        .route("/health", get(health))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            sextant_kit::http_metrics::track,
        ))
        .fallback(|| async { not_found("no such route") })
        .with_state(state)
}

/// Prometheus metrics (docs/telemetry.md; `crate::metrics`).
async fn metrics(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    if state.metrics_require_token {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = state
            .tokens
            .authenticate(authorization, None, Access::Metrics)
        {
            return ApiError::from(e).into_response();
        }
    }
    let heartbeat = state
        .orchestrator
        .agents
        .as_ref()
        .map_or(std::time::Duration::from_secs(30), |a| a.heartbeat);
    // OpenMetrics, with exemplars, for a scraper that prefers it (as
    // Prometheus does); the classic text format otherwise.
    let format = sextant_kit::exposition::Format::negotiate(
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
    );
    match crate::metrics::render(
        &state.http_metrics,
        &state.orchestrator.replica_metrics,
        &state.orchestrator.store,
        heartbeat,
        format,
    )
    .await
    {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the metrics: {e}"),
        )
            .into_response(),
    }
}

/// Every dependency with its latency (`crate::api::health`).
async fn health(State(state): State<ApiState>) -> sextant_kit::health::Report {
    crate::api::health::report(&state.orchestrator).await
}

/// How long `/health/ready` waits for the database, as the hub's does.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

async fn ready(State(state): State<ApiState>) -> Response {
    match tokio::time::timeout(READY_DEADLINE, state.orchestrator.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "database unavailable: no answer within {} ms",
                READY_DEADLINE.as_millis()
            ),
        )
            .into_response(),
    }
}
