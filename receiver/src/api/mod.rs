//! The read API (JSON, tenant-scoped), health checks and `/metrics`.

mod docs;
mod health;
mod reports;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
pub use sextant_kit::api_error::ApiError;
use sextant_kit::serve::Peer;
use sextant_model::{ErrorBody, HostSummary, Page, Rollout, TargetState, UnixNanos};

use crate::auth::{AuthError, Principal, Scope};
use crate::read::{ApiState, ParamError};
use crate::store::{ListQuery, StateQuery};

/// The OpenAPI document's frame; the paths come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sextant hub API",
        version = "1",
        description = "What runs where: the hub's read API. JSON, scoped to the caller's tenant. \
            Lists are paginated with `limit` and an opaque `cursor` (pass back `next_cursor`). \
            Errors share one shape: `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "state", description = "Current state per target and rollout progress"),
        (name = "reports", description = "Environment state, compare, drift, host view, history"),
        (name = "lists", description = "Environments, applications, workloads, targets, hosts"),
        (name = "insights", description = "DORA's delivery metrics from the hub's history")
    )
)]
struct ApiDoc;

/// Declares the `Authorization: Bearer` scheme (needed when tokens are
/// configured).
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

/// The API routes with their OpenAPI document.
fn api_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(state_handler))
        .routes(routes!(rollout_handler))
        .routes(routes!(hosts_handler))
        .routes(routes!(reports::host::host))
        .routes(routes!(reports::catalog::environments))
        .routes(routes!(reports::catalog::applications))
        .routes(routes!(reports::catalog::workloads))
        .routes(routes!(reports::catalog::targets))
        .routes(routes!(reports::environment_state::environment_state))
        .routes(routes!(reports::compare::compare))
        .routes(routes!(reports::drift::drift))
        .routes(routes!(reports::history::history))
        .routes(routes!(reports::dora::dora))
        .split_for_parts()
}

/// The OpenAPI document of the API, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The API, its OpenAPI document and reference page, health and metrics
/// routes, before the state is given (`routes::router` adds the UI).
pub(crate) fn routes() -> Router<ApiState> {
    let (api, doc) = api_routes();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    let page: Arc<str> = docs::render(&doc).into();
    api.route(
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
    .route(
        "/api/docs",
        get(move || {
            let page = page.clone();
            async move { axum::response::Html(page.to_string()) }
        }),
    )
    .route("/health", get(health::health))
    .route("/health/live", get(health::live))
    .route("/health/ready", get(health::ready))
    .route("/metrics", get(metrics))
}

/// Refuses a percent-encoded NUL (`%00`) anywhere in the path or the query
/// with 400: no name the hub stores can hold one, and PostgreSQL text cannot
/// even be compared with it (docs/security.md). A raw NUL cannot reach here;
/// HTTP parsing rejects it.
pub(crate) async fn refuse_nul(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri();
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the request contains a NUL character (%00), which no name can hold",
        )
        .into_response();
    }
    next.run(request).await
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

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_data_error() {
            tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "Store refused a query's value");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "a value of the query cannot be stored or compared by the hub's database",
            );
        }
        ApiError::unavailable("the hub store", &e)
    }
}

/// The caller of a read endpoint: authenticated with the `read` scope and
/// within its tenant's rate limit. Extracting it answers 401, 403 or 429.
pub(crate) struct Reader(pub(crate) Principal);

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let peer = parts.extensions.get::<Peer>();
        let principal = state.auth.check_request(authorization, peer, Scope::Read)?;
        state
            .rate_limit
            .check(&principal.tenant)
            .map_err(|limited| {
                ApiError::rate_limited(&principal.tenant, &state.rate_limit.describe(), limited)
            })?;
        Ok(Self(principal))
    }
}

/// The error answers every read endpoint may give, for the OpenAPI
/// document: `responses((status = 200, ...), ReadErrors)`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description, never built
pub(crate) enum ReadErrors {
    #[response(status = 400, description = "Invalid query")]
    InvalidQuery(ErrorBody),
    #[response(status = 401, description = "Missing or unknown token")]
    Unauthenticated(ErrorBody),
    #[response(status = 403, description = "Token lacks the `read` scope")]
    Forbidden(ErrorBody),
    #[response(
        status = 429,
        description = "Over the tenant's rate limit: retry after `Retry-After` seconds"
    )]
    RateLimited(ErrorBody),
    #[response(status = 503, description = "The hub store is unavailable")]
    Unavailable(ErrorBody),
}

/// The [`StateQuery`] of a request's filters: `$p` has the fields
/// `workspace`, `application`, `workload`, `environment`, `target`,
/// `source` and `reconciler`. Evaluates to `Result<StateQuery, ApiError>`.
macro_rules! state_query {
    ($p:expr) => {
        $crate::read::source_filter($p.source.as_deref(), $p.reconciler).map(|source| {
            $crate::store::StateQuery {
                source,
                workspace: $p.workspace,
                application: $p.application,
                workload: $p.workload,
                environment: $p.environment,
                target: $p.target,
                workloads: None,
            }
        })
    };
}
pub(crate) use state_query;

/// Filters of `GET /api/v1/state`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StateParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    /// Only hosts reported by these sources, comma-separated: `flux`,
    /// `argocd`, `agent`, `kalypso`, `otlp`. Targets none of them reports
    /// are left out.
    source: Option<String>,
    /// Only hosts reported by the reconciler of this name.
    reconciler: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/state",
    tag = "state",
    params(StateParams),
    responses(
        (status = 200, description = "OK", body = Vec<TargetState>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
async fn state_handler(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<StateParams>, QueryRejection>,
) -> Result<Json<Vec<TargetState>>, ApiError> {
    let Query(p) = params?;
    let query = state_query!(p)?;
    let mut states = state.store.state(&principal.tenant, &query).await?;
    state.links.fill(&mut states);
    Ok(Json(states))
}

/// Default and largest page size of a list.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Filters and paging of `GET /api/v1/hosts`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HostsParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    environment: Option<String>,
    target: Option<String>,
    host: Option<String>,
    /// Only hosts with rows from these sources, comma-separated: `flux`,
    /// `argocd`, `agent`, `kalypso`, `otlp`; their counts are of those rows.
    source: Option<String>,
    /// Only hosts with rows from the reconciler of this name; their counts
    /// are of those rows.
    reconciler: Option<String>,
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

#[utoipa::path(
    get,
    path = "/api/v1/hosts",
    tag = "lists",
    params(HostsParams),
    responses(
        (status = 200, description = "OK", body = Page<HostSummary>),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
async fn hosts_handler(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<HostsParams>, QueryRejection>,
) -> Result<Json<Page<HostSummary>>, ApiError> {
    let Query(p) = params?;
    let limit = page_limit(p.limit)?;
    let query = ListQuery {
        filter: state_query!(p)?,
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
    let stale_before = state.stale_before().0;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let items = rows
        .into_iter()
        .map(|r| HostSummary {
            stale: sextant_model::Source::host_is_stale(&r.sources, r.last_seen_at, stale_before),
            last_seen_at: UnixNanos(r.last_seen_at),
            workloads: count(r.workloads),
            succeeded: count(r.succeeded),
            failed: count(r.failed),
            in_progress: count(r.in_progress),
            sources: r.sources,
            host: r.host,
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// Parameters of `GET /api/v1/rollout`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RolloutParams {
    workload: String,
    environment: String,
    target: Option<String>,
    application: Option<String>,
    workspace: Option<String>,
    /// `attention` (default): the hosts not yet succeeded on the desired
    /// revision, failed first, at most `limit`; `all`: every host.
    hosts: Option<String>,
    /// With `hosts=attention`, how many hosts to list (1–1000, default 100).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/rollout",
    tag = "state",
    params(RolloutParams),
    responses(
        (status = 200, description = "OK", body = Rollout),
        (status = 404, description = "No such workload in the environment", body = ErrorBody),
        ReadErrors,
    ),
    security((), ("bearer" = []))
)]
async fn rollout_handler(
    State(state): State<ApiState>,
    Reader(principal): Reader,
    params: Result<Query<RolloutParams>, QueryRejection>,
) -> Result<Json<Rollout>, ApiError> {
    let Query(p) = params?;
    let query = StateQuery {
        workspace: p.workspace,
        application: p.application,
        workload: Some(p.workload.clone()),
        environment: Some(p.environment.clone()),
        target: p.target.clone(),
        source: crate::store::SourceFilter::default(),
        workloads: None,
    };
    let not_found = || {
        let target = p
            .target
            .as_ref()
            .map(|t| format!(" and target {t:?}"))
            .unwrap_or_default();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no workload {:?} in environment {:?}{target}",
                p.workload, p.environment
            ),
        )
    };
    match p.hosts.as_deref().unwrap_or("attention") {
        "all" => {
            let states = state.store.state(&principal.tenant, &query).await?;
            if states.is_empty() {
                return Err(not_found());
            }
            Ok(Json(Rollout::from_states(&states)))
        }
        "attention" => {
            let limit = match p.limit {
                None => 100,
                Some(n @ 1..=1000) => n,
                Some(n) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("limit must be between 1 and 1000, not {n}"),
                    ));
                }
            };
            // The counts come from the targets' host counters; only the
            // hosts that need attention are read one by one.
            let summaries = state.store.summaries(&principal.tenant, &query);
            let listed = state
                .store
                .attention_hosts(&principal.tenant, &query, limit);
            // Both at once on PostgreSQL, each on its own pooled connection.
            let (summaries, listed) = if state.store.backend() == "postgres" {
                futures::try_join!(summaries, listed)?
            } else {
                (summaries.await?, listed.await?)
            };
            if summaries.is_empty() {
                return Err(not_found());
            }
            Ok(Json(Rollout::from_summaries(&summaries, listed)))
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("hosts must be `attention` or `all`, not {other:?}"),
        )),
    }
}

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if state.metrics_require_token {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = state.auth.check(authorization, Scope::Metrics) {
            return ApiError::from(e).into_response();
        }
    }
    refresh_drift_gauges(&state).await;
    refresh_dora_gauges(&state).await;
    sextant_kit::exposition::response(&state.metrics.gather())
}

/// How long the DORA gauges are reused: they read the deployments of the
/// trailing 30 days, and change with deployments, not with every scrape.
const DORA_GAUGES_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The window of the DORA gauges.
const DORA_GAUGES_WINDOW: i64 = 30 * 86_400 * 1_000_000_000;

/// Re-reads the DORA gauges from the derived deployments table when they
/// are older than [`DORA_GAUGES_FOR`]; a store error keeps the last
/// values and is logged.
async fn refresh_dora_gauges(state: &ApiState) {
    let mut read_at = state.metrics.dora_read_at.lock().await;
    if read_at.is_some_and(|at| at.elapsed() < DORA_GAUGES_FOR) {
        return;
    }
    let now = UnixNanos::now().0;
    match state
        .store
        .dora_groups(
            now.saturating_sub(DORA_GAUGES_WINDOW),
            now,
            &crate::store::EnvironmentBound {
                max: state.metrics_max_environments,
                order: &state.environments,
                other: OTHER_ENVIRONMENTS,
            },
        )
        .await
    {
        Ok(groups) => {
            state.metrics.dora.set(&groups);
            *read_at = Some(std::time::Instant::now());
        }
        Err(error) => tracing::warn!(%error, "Cannot read the DORA gauges"),
    }
}

/// How long the drift and stale gauges are reused: counting stale hosts
/// reads every current row.
const DRIFT_GAUGES_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The `env` label value that stands for a tenant's environments past
/// `metrics_max_environments`.
pub const OTHER_ENVIRONMENTS: &str = "_other";

/// Re-reads the drift and stale gauges when they are older than
/// [`DRIFT_GAUGES_FOR`]; a store error keeps the last values and is logged.
async fn refresh_drift_gauges(state: &ApiState) {
    let mut read_at = state.metrics.drift_read_at.lock().await;
    if read_at.is_some_and(|at| at.elapsed() < DRIFT_GAUGES_FOR) {
        return;
    }
    let stale_before = state.stale_before().0;
    match state.store.drift_counts(stale_before).await {
        Ok(rows) => {
            let m = &state.metrics;
            m.drift_hosts.reset();
            m.stale_hosts.reset();
            for r in bound_environments(rows, state.metrics_max_environments, &state.environments) {
                for (reason, n) in [
                    ("no_desired", r.no_desired),
                    ("wrong_revision", r.wrong_revision),
                    ("failed", r.failed),
                ] {
                    m.drift_hosts
                        .with_label_values(&[r.tenant.as_str(), r.environment.as_str(), reason])
                        .set(n);
                }
                m.stale_hosts
                    .with_label_values(&[r.tenant.as_str(), r.environment.as_str()])
                    .set(r.stale_hosts);
            }
            *read_at = Some(std::time::Instant::now());
        }
        Err(error) => tracing::warn!(%error, "Cannot read the drift gauges"),
    }
}

/// Keeps at most `max` environments per tenant as label values (the
/// configured ones first, then by name) and adds the rest up under
/// [`OTHER_ENVIRONMENTS`]: environment names are the senders' choice, and
/// the series they make must not grow with whatever senders invent.
fn bound_environments(
    rows: Vec<crate::store::DriftCounts>,
    max: usize,
    order: &[String],
) -> Vec<crate::store::DriftCounts> {
    let mut by_tenant: std::collections::BTreeMap<String, Vec<crate::store::DriftCounts>> =
        std::collections::BTreeMap::new();
    for r in rows {
        by_tenant.entry(r.tenant.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (tenant, mut rows) in by_tenant {
        sextant_model::order_environments(&mut rows, |r| r.environment.as_str(), order);
        if rows.len() <= max {
            out.extend(rows);
            continue;
        }
        let rest = rows.split_off(max);
        let mut other = crate::store::DriftCounts {
            tenant,
            environment: OTHER_ENVIRONMENTS.to_owned(),
            ..Default::default()
        };
        for r in rest {
            other.no_desired += r.no_desired;
            other.wrong_revision += r.wrong_revision;
            other.failed += r.failed;
            other.stale_hosts += r.stale_hosts;
        }
        out.extend(rows);
        out.push(other);
    }
    out
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DriftCounts;

    fn row(tenant: &str, environment: &str, n: i64) -> DriftCounts {
        DriftCounts {
            tenant: tenant.into(),
            environment: environment.into(),
            no_desired: n,
            wrong_revision: 2 * n,
            failed: 0,
            stale_hosts: 1,
        }
    }

    #[test]
    fn environments_past_the_limit_add_up_under_other_per_tenant() {
        let rows = vec![
            row("a", "zeta", 1),
            row("a", "prod", 2),
            row("a", "alpha", 4),
            row("a", "beta", 8),
            row("b", "x", 16),
        ];
        let out = bound_environments(rows, 2, &["prod".to_owned()]);
        let got: Vec<(&str, &str, i64, i64, i64)> = out
            .iter()
            .map(|r| {
                (
                    r.tenant.as_str(),
                    r.environment.as_str(),
                    r.no_desired,
                    r.wrong_revision,
                    r.stale_hosts,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "prod", 2, 4, 1),
                ("a", "alpha", 4, 8, 1),
                ("a", OTHER_ENVIRONMENTS, 9, 18, 2),
                ("b", "x", 16, 32, 1),
            ]
        );
    }
}
