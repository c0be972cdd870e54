//! What the hub's read surfaces share: the state every route of the API
//! listener reads ([`ApiState`]), the report cache it holds, and the query
//! parameters the API and the UI both parse. `api` and `ui` are siblings
//! that depend on this module; `routes` assembles them.

mod cache;
mod links;
mod params;

pub use cache::ReportCache;
pub(crate) use cache::cached_json;
pub use links::{Linked, Links};
pub use params::ParamError;
pub(crate) use params::{parse_time, source_filter};

use std::sync::Arc;

use sextant_model::UnixNanos;

use crate::auth::Authenticator;
use crate::metrics::HubMetrics;
use crate::store::HubStore;

/// State of the API listener's routes: the API, the UI, health and
/// `/metrics`.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn HubStore>,
    pub auth: Authenticator,
    pub metrics: HubMetrics,
    /// A host with no report for this long is stale.
    pub stale_after: std::time::Duration,
    /// The configured order of environments.
    pub environments: Arc<[String]>,
    /// How often UI pages refresh themselves.
    pub ui_refresh: std::time::Duration,
    /// Serialized environment-state and compare responses.
    pub reports: Arc<ReportCache>,
    /// Where links to jobs, promotions, traces and logs point.
    pub links: Links,
    /// Per-tenant limit of the `/api/v1` routes.
    pub rate_limit: crate::rate_limit::SurfaceLimiter,
    /// `/metrics` answers only a token with the `metrics` (or `admin`)
    /// scope.
    pub metrics_require_token: bool,
    /// Environments per tenant with series of their own on `/metrics`.
    pub metrics_max_environments: usize,
    /// The orchestrator's API, which the UI's flow pages read and act
    /// through as the signed-in person (none: no orchestrator configured).
    pub orchestrator: Option<sextant_kit::orchestrator::OrchestratorClient>,
    /// The key of the UI forms' CSRF tokens.
    pub csrf: crate::ui::CsrfKey,
    /// The API listener serves TLS (cookies are `Secure` then).
    pub tls: bool,
}

impl ApiState {
    /// Rows observed before this are stale.
    pub(crate) fn stale_before(&self) -> UnixNanos {
        let window = i64::try_from(self.stale_after.as_nanos()).unwrap_or(i64::MAX);
        UnixNanos(UnixNanos::now().0.saturating_sub(window))
    }
}
