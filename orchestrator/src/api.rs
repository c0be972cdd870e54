//! The orchestrator's REST API (JSON, tenant-scoped), documented by the
//! OpenAPI document at `/api/openapi.json`.
//!
//! **Who is calling** (`crate::auth`). With tokens configured, every route
//! of the API and the job page needs `Authorization: Bearer …`, which
//! names the tenant and the actor (the token's subject; `X-Sextant-Actor`
//! is ignored); `GET` needs the `read`, `deploy` or `admin` scope, every
//! other method `deploy` or `admin`. Without tokens (the local default,
//! loopback only) the tenant is `default` and the actor is the
//! `X-Sextant-Actor` header (`local` if absent). The OpenAPI document,
//! health and metrics are open.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sextant_exporters::rate_limit::{RateLimited, TenantLimiter};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::agents::AgentView;
use crate::auth::{Access, AuthError, Tokens};
use crate::config::{Applied, Document};
use crate::model::{
    ComponentSpec, EnvironmentSpec, PromotionState, Release, ReleaseComponent, Strategy, TargetSpec,
};
use crate::promotion::PromotionRequest;
use crate::service::{Orchestrator, OrchestratorError};
use crate::store::{
    Approval, ArtifactInfo, DecisionRecord, Deployed, Job, Promotion, StateEvent, Store, Task,
    TaskLogLine,
};

pub use crate::auth::TokenConfig;

/// API state.
#[derive(Clone)]
pub struct ApiState {
    pub orchestrator: Arc<Orchestrator>,
    tokens: Arc<Tokens>,
    /// Registries reached over plain HTTP when resolving tags.
    insecure_registries: Arc<Vec<String>>,
    http_metrics: Arc<sextant_exporters::http_metrics::HttpMetrics>,
    /// Per-tenant request limit of every authenticated route.
    rate_limit: TenantLimiter,
    /// `/metrics` answers only a token with the `metrics` or `admin` scope.
    metrics_require_token: bool,
}

impl ApiState {
    pub fn new(
        orchestrator: Arc<Orchestrator>,
        tokens: &[TokenConfig],
        insecure_registries: Vec<String>,
    ) -> Self {
        Self {
            orchestrator,
            tokens: Arc::new(Tokens::new(tokens)),
            insecure_registries: Arc::new(insecure_registries),
            http_metrics: Arc::default(),
            rate_limit: TenantLimiter::unlimited(),
            metrics_require_token: false,
        }
    }

    /// Makes `/metrics` answer only a token with the `metrics` (or `admin`)
    /// scope; it needs tokens.
    pub fn with_metrics_token(mut self, required: bool) -> Self {
        self.metrics_require_token = required;
        self
    }

    /// Limits each tenant's requests (unlimited by default).
    pub fn with_rate_limit(mut self, limit: TenantLimiter) -> Self {
        self.rate_limit = limit;
        self
    }
}

/// An API error: `{"error": {"code", "message"}}`; the code is stable.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (429 only).
    retry_after: Option<u64>,
}

/// The one shape of every API error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid`, `not_found`, `conflict`, `forbidden`,
    /// `unauthenticated`, `rate_limited`, `internal`.
    code: String,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl ApiError {
    /// 429 `rate_limited`, with `Retry-After`.
    fn rate_limited(tenant: &str, limit: &TenantLimiter, limited: RateLimited) -> Self {
        let secs = limited.retry_after_secs();
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: format!(
                "tenant {tenant:?} is over its API rate limit ({}); retry in {secs} s",
                limit.config().describe()
            ),
            retry_after: Some(secs),
        }
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(e: OrchestratorError) -> Self {
        let (status, code) = match &e {
            OrchestratorError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OrchestratorError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            OrchestratorError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            OrchestratorError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            OrchestratorError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "API request failed");
        }
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after: None,
        }
    }
}

/// 401 `unauthenticated` without a known token, 403 `forbidden` (naming
/// the missing scope) when its scopes do not cover the request.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (status, code) = match e {
            AuthError::Missing | AuthError::Unknown => {
                (StatusCode::UNAUTHORIZED, "unauthenticated")
            }
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        };
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after: None,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        OrchestratorError::Store(e).into()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid",
        message: message.into(),
        retry_after: None,
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: message.into(),
        retry_after: None,
    }
}

/// The authenticated caller, as recorded in events and approvals.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub actor: String,
}

/// Takes the caller [`authenticate`] found; a route outside that layer
/// authenticates here, with the same rules.
impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => Caller::authenticate(state, &parts.headers, &parts.method),
        }
    }
}

/// Authenticates every request of the API and the job page before its
/// handler runs, so a route added later cannot be left open by a handler
/// that forgets to ask for the [`Caller`]. The method says what the request
/// needs (`crate::auth::Access`); the caller goes into the request's
/// extensions for the handler.
async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    match Caller::authenticate(&state, request.headers(), request.method()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

impl Caller {
    /// Who sends `headers`, if they may make a `method` request; then one
    /// request from their tenant's rate limit.
    fn authenticate(
        state: &ApiState,
        headers: &HeaderMap,
        method: &Method,
    ) -> Result<Self, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let identity = state.tokens.authenticate(
            header(header::AUTHORIZATION.as_str()),
            header(ACTOR_HEADER),
            Access::of(method),
        )?;
        Caller {
            tenant: identity.tenant,
            actor: identity.actor,
        }
        .within_limit(state)
    }

    /// Takes one request from the caller's tenant's rate limit.
    fn within_limit(self, state: &ApiState) -> Result<Self, ApiError> {
        match state.rate_limit.check(&self.tenant) {
            Ok(()) => Ok(self),
            Err(limited) => Err(ApiError::rate_limited(
                &self.tenant,
                &state.rate_limit,
                limited,
            )),
        }
    }
}

/// Who is acting, in open mode only.
const ACTOR_HEADER: &str = "x-sextant-actor";

type ApiResult<T> = Result<Json<T>, ApiError>;

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
        .routes(routes!(apply))
        .routes(routes!(environments))
        .routes(routes!(targets))
        .routes(routes!(components))
        .routes(routes!(create_release, list_releases))
        .routes(routes!(get_release))
        .routes(routes!(finalize_release))
        .routes(routes!(create_promotion, list_promotions))
        .routes(routes!(get_promotion))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(cancel))
        .routes(routes!(gate))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(task_logs))
        .routes(routes!(rollback))
        .routes(routes!(deployed))
        .routes(routes!(whoami))
        .routes(routes!(list_agents))
        .routes(routes!(get_agent))
        .routes(routes!(revoke_agent))
        .routes(routes!(create_agent_token))
        .split_for_parts()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The API with health and the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = api_routes();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    // Everything above this layer needs a caller; what is added below it
    // (the document, health, metrics) is open.
    api.merge(crate::ui::router())
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
        .route("/health", get(health))
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            sextant_exporters::http_metrics::track,
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
    match crate::metrics::render(
        &state.http_metrics,
        &state.orchestrator.replica_metrics,
        &state.orchestrator.store,
        heartbeat,
    )
    .await
    {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                sextant_exporters::exposition::content_type(),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the metrics: {e}"),
        )
            .into_response(),
    }
}

/// Every dependency with its latency (`crate::service_health`).
async fn health(State(state): State<ApiState>) -> sextant_exporters::health::Report {
    crate::service_health::report(&state.orchestrator).await
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

// -- config ---------------------------------------------------------------

/// Applies a configuration document (YAML or JSON body).
#[utoipa::path(post, path = "/api/v1/apply", tag = "config",
    request_body(content = Document, content_type = "application/yaml"),
    responses((status = 200, body = [Applied]), (status = 400, body = ErrorBody)))]
async fn apply(
    State(state): State<ApiState>,
    caller: Caller,
    body: String,
) -> ApiResult<Vec<Applied>> {
    let doc = Document::parse(&body).map_err(invalid)?;
    Ok(Json(state.orchestrator.apply(&caller.tenant, &doc).await?))
}

/// Environments in promotion order.
#[utoipa::path(get, path = "/api/v1/environments", tag = "config",
    responses((status = 200, body = [EnvironmentSpec])))]
async fn environments(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Vec<EnvironmentSpec>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .environments(&caller.tenant)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TargetParams {
    environment: Option<String>,
}

/// Targets, optionally of one environment.
#[utoipa::path(get, path = "/api/v1/targets", tag = "config", params(TargetParams),
    responses((status = 200, body = [TargetSpec])))]
async fn targets(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<TargetParams>,
) -> ApiResult<Vec<TargetSpec>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .targets(&caller.tenant, q.environment.as_deref())
            .await?,
    ))
}

/// Components.
#[utoipa::path(get, path = "/api/v1/components", tag = "config",
    responses((status = 200, body = [ComponentSpec])))]
async fn components(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Vec<ComponentSpec>> {
    Ok(Json(
        state.orchestrator.store.components(&caller.tenant).await?,
    ))
}

// -- releases -------------------------------------------------------------

/// A component of a new release: a pinned image, or a tag resolved now.
#[derive(Debug, Deserialize, ToSchema)]
struct NewReleaseComponent {
    component: String,
    /// `repo@sha256:…`, or `repo:tag` (resolved to a digest once, now).
    image: String,
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewRelease {
    name: String,
    components: Vec<NewReleaseComponent>,
    /// Keep it a draft (default: finalize at once).
    #[serde(default)]
    draft: bool,
}

/// Creates a release, resolving tags to digests.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = NewRelease,
    responses((status = 201, body = Release), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_release(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewRelease>,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    if body.name.trim().is_empty() {
        return Err(invalid("a release needs a name"));
    }
    if body.components.is_empty() {
        return Err(invalid("a release needs at least one component"));
    }
    let o = &state.orchestrator;
    let known = o.store.components(&caller.tenant).await?;
    let mut components = Vec::new();
    for c in &body.components {
        let Some(spec) = known.iter().find(|k| k.name == c.component) else {
            return Err(invalid(format!("unknown component {:?}", c.component)));
        };
        let image = if c.image.contains(['@', ':']) && c.image.starts_with(&spec.image) {
            c.image.clone()
        } else if c.image.starts_with(':') || c.image.starts_with('@') {
            format!("{}{}", spec.image, c.image)
        } else {
            c.image.clone()
        };
        let host = image.split('/').next().unwrap_or_default();
        let insecure = state.insecure_registries.iter().any(|r| r == host);
        let (pinned, digest, tag) = crate::registry::resolve(&o.http, &image, insecure)
            .await
            .map_err(invalid)?;
        let repository = pinned.split('@').next().unwrap_or_default();
        if repository != spec.image {
            return Err(invalid(format!(
                "component {} is image {}, not {repository}",
                c.component, spec.image
            )));
        }
        components.push(ReleaseComponent {
            component: c.component.clone(),
            image: pinned,
            digest,
            tag,
        });
    }
    let release = o
        .store
        .create_release(
            &caller.tenant,
            &body.name,
            &components,
            &caller.actor,
            !body.draft,
        )
        .await?
        .ok_or_else(|| ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: format!("release {:?} exists; releases are immutable", body.name),
            retry_after: None,
        })?;
    Ok((StatusCode::CREATED, Json(release)))
}

/// Releases, newest first.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases",
    responses((status = 200, body = [Release])))]
async fn list_releases(State(state): State<ApiState>, caller: Caller) -> ApiResult<Vec<Release>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .releases(&caller.tenant, 200)
            .await?,
    ))
}

/// A release by id or name.
#[utoipa::path(get, path = "/api/v1/releases/{release}", tag = "releases",
    params(("release" = String, Path, description = "id or name")),
    responses((status = 200, body = Release), (status = 404, body = ErrorBody)))]
async fn get_release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(release): Path<String>,
) -> ApiResult<Release> {
    state
        .orchestrator
        .store
        .release(&caller.tenant, &release)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("no release {release:?}")))
}

/// Finalizes a draft release.
#[utoipa::path(post, path = "/api/v1/releases/{release}/finalize", tag = "releases",
    params(("release" = String, Path, description = "id or name")),
    responses((status = 200, body = Release), (status = 409, body = ErrorBody)))]
async fn finalize_release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(release): Path<String>,
) -> ApiResult<Release> {
    let store = &state.orchestrator.store;
    let r = store
        .release(&caller.tenant, &release)
        .await?
        .ok_or_else(|| not_found(format!("no release {release:?}")))?;
    store.finalize_release(&caller.tenant, &r.id).await?;
    Ok(Json(
        store.release(&caller.tenant, &r.id).await?.unwrap_or(r),
    ))
}

// -- promotions -----------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
struct NewPromotion {
    release: String,
    environment: String,
    #[serde(default)]
    strategy: Option<Strategy>,
    #[serde(default)]
    reason: Option<String>,
}

/// A promotion with its trail.
#[derive(Debug, Serialize, ToSchema)]
struct PromotionDetail {
    #[serde(flatten)]
    promotion: Promotion,
    events: Vec<StateEvent>,
    approvals: Vec<Approval>,
    decision: Option<DecisionRecord>,
}

async fn promotion_detail(state: &ApiState, tenant: &str, id: &str) -> ApiResult<PromotionDetail> {
    let store = &state.orchestrator.store;
    let promotion = store
        .promotion(tenant, id)
        .await?
        .ok_or_else(|| not_found(format!("no promotion {id:?}")))?;
    Ok(Json(PromotionDetail {
        events: store.promotion_events(id).await?,
        approvals: store.approvals(id).await?,
        decision: store.decision(id).await?,
        promotion,
    }))
}

/// Requests a promotion.
#[utoipa::path(post, path = "/api/v1/promotions", tag = "promotions", request_body = NewPromotion,
    responses((status = 201, body = PromotionDetail), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_promotion(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewPromotion>,
) -> Result<(StatusCode, Json<PromotionDetail>), ApiError> {
    let request = PromotionRequest {
        release: body.release,
        environment: body.environment,
        strategy: body.strategy.unwrap_or_default(),
        reason: body.reason,
        task_timeout: None,
    };
    let p = state
        .orchestrator
        .request_promotion(&caller.tenant, &caller.actor, &request)
        .await?;
    let detail = promotion_detail(&state, &caller.tenant, &p.id).await?;
    Ok((StatusCode::CREATED, detail))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PromotionParams {
    /// Comma-separated states.
    state: Option<String>,
    limit: Option<i64>,
}

/// Promotions, newest first.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "promotions", params(PromotionParams),
    responses((status = 200, body = [Promotion]), (status = 400, body = ErrorBody)))]
async fn list_promotions(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<PromotionParams>,
) -> ApiResult<Vec<Promotion>> {
    let states = q
        .state
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<PromotionState>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Ok(Json(
        state
            .orchestrator
            .store
            .promotions(
                &caller.tenant,
                &states,
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}

/// A promotion with its events, approvals and decision record.
#[utoipa::path(get, path = "/api/v1/promotions/{id}", tag = "promotions",
    params(("id" = String, Path)),
    responses((status = 200, body = PromotionDetail), (status = 404, body = ErrorBody)))]
async fn get_promotion(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<PromotionDetail> {
    promotion_detail(&state, &caller.tenant, &id).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct Comment {
    #[serde(default)]
    comment: Option<String>,
}

/// Approves a promotion as the caller.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/approve", tag = "promotions",
    params(("id" = String, Path)), request_body = Comment,
    responses((status = 200, body = PromotionDetail), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Comment>>,
) -> ApiResult<PromotionDetail> {
    let comment = body.and_then(|b| b.0.comment);
    state
        .orchestrator
        .approve(&caller.tenant, &caller.actor, &id, true, comment.as_deref())
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

/// Rejects a promotion as the caller.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/reject", tag = "promotions",
    params(("id" = String, Path)), request_body = Comment,
    responses((status = 200, body = PromotionDetail), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Comment>>,
) -> ApiResult<PromotionDetail> {
    let comment = body.and_then(|b| b.0.comment);
    state
        .orchestrator
        .approve(
            &caller.tenant,
            &caller.actor,
            &id,
            false,
            comment.as_deref(),
        )
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

/// Cancels a promotion that has not started deploying.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/cancel", tag = "promotions",
    params(("id" = String, Path)),
    responses((status = 200, body = PromotionDetail), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<PromotionDetail> {
    state
        .orchestrator
        .cancel_promotion(&caller.tenant, &caller.actor, &id)
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

#[derive(Debug, Deserialize, ToSchema)]
struct GateAction {
    /// `open` or `close`.
    action: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Opens or closes a manual gate of a promotion.
#[utoipa::path(post, path = "/api/v1/promotions/{id}/gates/{gate}", tag = "promotions",
    params(("id" = String, Path), ("gate" = String, Path, description = "manual gate name")),
    request_body = GateAction,
    responses((status = 200, body = PromotionDetail), (status = 404, body = ErrorBody)))]
async fn gate(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, gate)): Path<(String, String)>,
    Json(body): Json<GateAction>,
) -> ApiResult<PromotionDetail> {
    let open = match body.action.as_str() {
        "open" => true,
        "close" => false,
        other => return Err(invalid(format!("action is open or close, not {other:?}"))),
    };
    state
        .orchestrator
        .set_manual_gate(
            &caller.tenant,
            &caller.actor,
            &id,
            &gate,
            open,
            body.comment.as_deref(),
        )
        .await?;
    promotion_detail(&state, &caller.tenant, &id).await
}

// -- jobs -------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobParams {
    /// Only unfinished jobs.
    #[serde(default)]
    active: bool,
    limit: Option<i64>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobParams),
    responses((status = 200, body = [Job])))]
async fn list_jobs(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<JobParams>,
) -> ApiResult<Vec<Job>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .jobs(
                &caller.tenant,
                q.active,
                q.limit.unwrap_or(100).clamp(1, 1000),
            )
            .await?,
    ))
}

/// A job with its tasks, events and artifacts.
#[derive(Debug, Serialize, ToSchema)]
struct JobDetail {
    #[serde(flatten)]
    job: Job,
    /// The rollback job created for this job, once there is one.
    rollback_job_id: Option<String>,
    tasks: Vec<Task>,
    events: Vec<StateEvent>,
    artifacts: Vec<ArtifactInfo>,
}

/// A job with its tasks, events and artifacts.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobDetail), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<JobDetail> {
    let store = &state.orchestrator.store;
    let job = store
        .job(Some(&caller.tenant), &id)
        .await?
        .ok_or_else(|| not_found(format!("no job {id:?}")))?;
    Ok(Json(job_detail(store, job).await?))
}

async fn job_detail(store: &Store, job: Job) -> Result<JobDetail, ApiError> {
    let id = job.id.clone();
    Ok(JobDetail {
        rollback_job_id: store.rollback_job_of(&id).await?,
        tasks: store.tasks(&id).await?,
        events: store.job_events(&id).await?,
        artifacts: store.artifact_infos(&id).await?,
        job,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogParams {
    /// Lines after this id.
    after: Option<i64>,
    limit: Option<i64>,
}

/// A task's log lines.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/tasks/{task}/logs", tag = "jobs",
    params(("id" = String, Path), ("task" = String, Path), LogParams),
    responses((status = 200, body = [TaskLogLine]), (status = 404, body = ErrorBody)))]
async fn task_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, task)): Path<(String, String)>,
    Query(q): Query<LogParams>,
) -> ApiResult<Vec<TaskLogLine>> {
    let store = &state.orchestrator.store;
    store
        .job(Some(&caller.tenant), &id)
        .await?
        .ok_or_else(|| not_found(format!("no job {id:?}")))?;
    match store.task(&task).await? {
        Some(t) if t.job_id == id => {}
        _ => return Err(not_found(format!("no task {task:?} in job {id}"))),
    }
    Ok(Json(
        store
            .task_logs(
                &task,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(1000).clamp(1, 10_000),
            )
            .await?,
    ))
}

/// Rolls a completed or failed deploy job back to what ran before it. The
/// job moves to `rolling_back` at once (202); the engine then creates its
/// rollback job, whose id appears as `rollback_job_id` in `GET
/// /api/v1/jobs/{id}` (the response carries it when it already exists).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/rollback", tag = "jobs",
    params(("id" = String, Path)),
    responses((status = 202, body = JobDetail), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn rollback(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    let job = state
        .orchestrator
        .request_rollback(&caller.tenant, &caller.actor, &id)
        .await?;
    let detail = job_detail(&state.orchestrator.store, job).await?;
    Ok((StatusCode::ACCEPTED, Json(detail)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeployedParams {
    target: Option<String>,
}

/// What last succeeded on each (target, component).
#[utoipa::path(get, path = "/api/v1/deployed", tag = "jobs", params(DeployedParams),
    responses((status = 200, body = [Deployed])))]
async fn deployed(
    State(state): State<ApiState>,
    caller: Caller,
    Query(q): Query<DeployedParams>,
) -> ApiResult<Vec<Deployed>> {
    Ok(Json(
        state
            .orchestrator
            .store
            .deployed(&caller.tenant, q.target.as_deref())
            .await?,
    ))
}

/// Who the API takes the caller for.
#[derive(Debug, Serialize, ToSchema)]
struct WhoAmI {
    tenant: String,
    /// The actor recorded in events and approvals: the token's subject
    /// (the header is ignored then), or the `X-Sextant-Actor` header when
    /// no tokens are configured.
    actor: String,
}

/// The caller's tenant and actor, as the API will record them.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(caller: Caller) -> ApiResult<WhoAmI> {
    Ok(Json(WhoAmI {
        tenant: caller.tenant,
        actor: caller.actor,
    }))
}

// -- agents ---------------------------------------------------------------

fn channel(state: &ApiState) -> Result<&Arc<crate::agents::AgentChannel>, ApiError> {
    state.orchestrator.agents.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "no_agent_channel",
        message: "this orchestrator runs no agent channel".into(),
        retry_after: None,
    })
}

/// Every agent of the caller's tenant: status (online, degraded, offline,
/// revoked), version, labels, last heartbeat and current tasks.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = [AgentView])))]
async fn list_agents(State(state): State<ApiState>, caller: Caller) -> ApiResult<Vec<AgentView>> {
    let views = channel(&state)?
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    Ok(Json(views))
}

/// One agent, by id or name.
#[utoipa::path(get, path = "/api/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "Agent id or name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(agent): Path<String>,
) -> ApiResult<AgentView> {
    let views = channel(&state)?
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    find_agent(views, &agent).map(Json)
}

fn find_agent(views: Vec<AgentView>, key: &str) -> Result<AgentView, ApiError> {
    let mut matching: Vec<AgentView> = views
        .into_iter()
        .filter(|a| a.id == key || a.name == key)
        .collect();
    match matching.len() {
        0 => Err(not_found(format!("no agent {key}"))),
        1 => Ok(matching.remove(0)),
        n => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "ambiguous",
            message: format!("{n} agents are named {key}; use an id"),
            retry_after: None,
        }),
    }
}

/// Revokes an agent: its stream is closed and refused from now on.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/revoke", tag = "agents",
    params(("agent" = String, Path, description = "Agent id or name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
async fn revoke_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(agent): Path<String>,
) -> ApiResult<AgentView> {
    let channel = channel(&state)?;
    let views = channel
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    let view = find_agent(views, &agent)?;
    channel
        .store
        .revoke_agent(&caller.tenant, &view.id)
        .await
        .map_err(OrchestratorError::from)?;
    tracing::info!(agent = %view.id, actor = %caller.actor, "Agent revoked");
    let views = channel
        .views(&caller.tenant)
        .await
        .map_err(OrchestratorError::from)?;
    find_agent(views, &view.id).map(Json)
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewAgentToken {
    /// How long the token may be used, in seconds (default 3600, at most
    /// 7 days).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// A one-time registration token, shown once.
#[derive(Debug, Serialize, ToSchema)]
struct AgentToken {
    token: String,
    expires_at: String,
}

/// Creates a one-time registration token for an agent of the caller's
/// tenant.
#[utoipa::path(post, path = "/api/v1/agents/tokens", tag = "agents", request_body = NewAgentToken,
    responses((status = 201, body = AgentToken), (status = 400, body = ErrorBody)))]
async fn create_agent_token(
    State(state): State<ApiState>,
    caller: Caller,
    Json(body): Json<NewAgentToken>,
) -> Result<(StatusCode, Json<AgentToken>), ApiError> {
    let ttl = body.ttl_seconds.unwrap_or(3600);
    if ttl == 0 || ttl > 7 * 24 * 3600 {
        return Err(OrchestratorError::Invalid(
            "ttl_seconds must be between 1 and 604800 (7 days)".into(),
        )
        .into());
    }
    let token = format!(
        "{}{}",
        crate::agents::TOKEN_PREFIX,
        crate::agents::new_secret()
    );
    let expires = crate::store::now_ms() + (ttl * 1000) as i64;
    channel(&state)?
        .store
        .create_agent_token(
            &caller.tenant,
            &caller.actor,
            &crate::agents::secret_hash(&token),
            expires,
        )
        .await
        .map_err(OrchestratorError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(AgentToken {
            token,
            expires_at: crate::store::rfc3339(expires),
        }),
    ))
}
