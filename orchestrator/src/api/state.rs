//! What every handler shares ([`ApiState`]) and who is calling
//! ([`Caller`]), authenticated once for every route of the API and the UI.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sextant_kit::rate_limit::TenantLimiter;

use crate::api::auth::{Access, Tokens};
use crate::service::Orchestrator;

pub use crate::api::auth::TokenConfig;

use super::error::*;

/// API state.
#[derive(Clone)]
pub struct ApiState {
    pub orchestrator: Arc<Orchestrator>,
    pub(super) tokens: Arc<Tokens>,
    /// Registries reached over plain HTTP when resolving tags.
    pub(super) insecure_registries: Arc<Vec<String>>,
    pub(super) http_metrics: Arc<sextant_kit::http_metrics::HttpMetrics>,
    /// Per-tenant request limit of every authenticated route.
    pub(super) rate_limit: TenantLimiter,
    /// `/metrics` answers only a token with the `metrics` or `admin` scope.
    pub(super) metrics_require_token: bool,
    /// Trace and log links of the trace ids the API and the pages show.
    pub(crate) links: Arc<sextant_kit::links::TraceLinks>,
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
            links: Arc::default(),
        }
    }

    /// Shows trace and log links made from these templates.
    pub fn with_links(mut self, links: sextant_kit::links::TraceLinks) -> Self {
        self.links = Arc::new(links);
        self
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

/// The authenticated caller, as recorded in events and approvals.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub actor: String,
    /// The caller's token may change state, not only read.
    pub can_change: bool,
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
/// needs (`crate::api::auth::Access`); the caller goes into the request's
/// extensions for the handler.
pub(super) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
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
            can_change: identity.can_change,
        }
        .within_limit(state)
    }

    /// Takes one request from the caller's tenant's rate limit.
    fn within_limit(self, state: &ApiState) -> Result<Self, ApiError> {
        match state.rate_limit.check(&self.tenant) {
            Ok(()) => Ok(self),
            Err(limited) => Err(ApiError::rate_limited(
                &self.tenant,
                &state.rate_limit.config().describe(),
                limited,
            )),
        }
    }
}

/// Who is acting, in open mode only.
const ACTOR_HEADER: &str = "x-sextant-actor";
