//! The hub as one application: OTLP/gRPC, OTLP/HTTP and the API, each on its
//! own listener, over one store. [`Application::build`] checks the
//! configuration, opens the store and binds the listeners;
//! [`Application::run_until_stopped`] serves until its token fires, then
//! stops in stages, each under [`STAGE_DEADLINE`] (the kit's
//! [`Stage`]s, as in the orchestrator and the agent): the listeners stop
//! accepting and finish the requests in hand, then the background work
//! (the stale sweep, and the deriver of the deployments DORA reads)
//! stops, then the store closes.

mod error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, TryFutureExt as _};
use sextant_kit::database::redact_url;
use sextant_kit::serve::{ListenerLimits, ServerTls, bind, fit_connections, serve_http_tls};
use sextant_kit::shutdown::Stage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::HubConfig;
use crate::metrics::HubMetrics;
use crate::otlp::admission::Admission;
use crate::otlp::body::BodyBudget;
use crate::otlp::http::HttpState;
use crate::otlp::ingest::Ingestor;
use crate::otlp::{grpc, http};
use crate::rate_limit::SurfaceLimiter;
use crate::read::{ApiState, Links, ReportCache};
use crate::reconcilers::{self, Reconcilers};
use crate::routes;
use crate::store::{self, HubStore};
use sextant_kit::links::TraceLinks;

pub use error::AppError;

/// How long each stage of the shutdown may take before the next one
/// starts.
pub const STAGE_DEADLINE: Duration = Duration::from_secs(10);

/// A built, bound hub, ready to run.
pub struct Application {
    grpc: TcpListener,
    http: TcpListener,
    api: TcpListener,
    store: Arc<dyn HubStore>,
    auth: Authenticator,
    metrics: HubMetrics,
    max_request_bytes: usize,
    budget: BodyBudget,
    listeners: ListenerLimits,
    /// TLS of all three listeners, when configured.
    tls: Option<ServerTls>,
    stale_after: std::time::Duration,
    max_future_skew: std::time::Duration,
    environments: Arc<[String]>,
    ui_refresh: std::time::Duration,
    orchestrator_url: Option<Arc<str>>,
    trace_links: Arc<TraceLinks>,
    api_limit: SurfaceLimiter,
    ingest_limit: SurfaceLimiter,
    metrics_require_token: bool,
    metrics_max_environments: usize,
    reconcilers: Arc<Reconcilers>,
    csrf: crate::ui::CsrfKey,
}

impl Application {
    /// Opens and migrates the store and binds the three listeners. Port 0
    /// picks a free port (tests).
    pub async fn build(config: &HubConfig) -> Result<Self, AppError> {
        config.check_tls()?;
        let tls = config.tls.load().map_err(AppError::Tls)?;
        let auth = Authenticator::new(&config.tokens).with_client_certs(&config.client_certs);
        if auth.is_open() {
            let public = config.public_addrs();
            if !public.is_empty() {
                let addrs: Vec<String> = public.iter().map(ToString::to_string).collect();
                return Err(AppError::OpenOnPublicAddress {
                    addrs: addrs.join(", "),
                });
            }
            tracing::warn!(
                "No tokens configured: listening on loopback only, everything belongs to tenant `default`"
            );
        }
        config.listeners.validate().map_err(AppError::Listeners)?;
        let trace_links = TraceLinks::from_settings(
            ("trace_url_template", &config.trace_url_template),
            ("logs_url_template", &config.logs_url_template),
            "",
        )
        .map_err(AppError::LinkTemplate)?;
        if config.metrics_require_token && config.tokens.is_empty() {
            return Err(AppError::MetricsWithoutTokens);
        }
        let minimum = BodyBudget::minimum(config.max_request_bytes);
        if config.max_inflight_request_bytes < minimum {
            return Err(AppError::InflightBudget {
                inflight: config.max_inflight_request_bytes,
                max: config.max_request_bytes,
                minimum,
            });
        }
        let metrics = HubMetrics::new();
        let budget = BodyBudget::new(config.max_inflight_request_bytes)
            .with_gauge(metrics.inflight_request_bytes.clone());
        // Three listeners share the process's open files (docs/security.md).
        let listeners = ListenerLimits {
            max_connections: fit_connections(config.listeners.max_connections, 3),
            ..config.listeners
        };
        let limits = &config.rate_limits;
        let limiter = |config, surface| {
            SurfaceLimiter::new(config, surface, &metrics)
                .map_err(|source| AppError::RateLimit { surface, source })
        };
        let api_limit = limiter(limits.api, crate::metrics::API)?;
        let ingest_limit = limiter(limits.ingest, crate::metrics::INGEST)?;
        let url = config.database_url();
        let store = store::open(&url).await.map_err(|source| AppError::Store {
            url: redact_url(&url),
            source,
        })?;
        store.set_stale_after(std::time::Duration::from_secs(config.stale_after_seconds));
        Ok(Self {
            grpc: bind(config.otlp_grpc_addr, "OTLP/gRPC").await?.0,
            http: bind(config.otlp_http_addr, "OTLP/HTTP").await?.0,
            api: bind(config.api_addr, "the API").await?.0,
            store,
            auth,
            metrics,
            max_request_bytes: config.max_request_bytes,
            budget,
            listeners,
            tls,
            stale_after: std::time::Duration::from_secs(config.stale_after_seconds),
            max_future_skew: std::time::Duration::from_secs(config.max_future_skew_seconds),
            environments: config.environments.clone().into(),
            ui_refresh: std::time::Duration::from_secs(config.ui_refresh_seconds),
            orchestrator_url: config.orchestrator_url.as_deref().map(orchestrator_base),
            trace_links: Arc::new(trace_links),
            api_limit,
            ingest_limit,
            metrics_require_token: config.metrics_require_token,
            metrics_max_environments: config.metrics_max_environments.max(1),
            reconcilers: Arc::new(Reconcilers::new(config.reconcilers.clone())),
            csrf: crate::ui::CsrfKey::random(),
        })
    }

    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether the listeners speak TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Links job ids on host pages to this orchestrator (`http://…`),
    /// unless the configuration named one.
    pub fn link_orchestrator(&mut self, url: &str) {
        if self.orchestrator_url.is_none() {
            self.orchestrator_url = Some(orchestrator_base(url));
        }
    }

    /// The store, for tests and tools.
    pub fn store(&self) -> Arc<dyn HubStore> {
        self.store.clone()
    }

    /// Runs one stale sweep now (the hub also runs them in the background
    /// while it serves) and returns how many rows it marked stale. Tools
    /// that load an estate behind the hub's back call it before measuring.
    pub async fn sweep_stale(&self) -> Result<u64, AppError> {
        let window = i64::try_from(self.stale_after.as_nanos()).unwrap_or(i64::MAX);
        let stale_before = sextant_model::UnixNanos::now().0.saturating_sub(window);
        self.store
            .sweep_stale(stale_before)
            .await
            .map_err(AppError::Sweep)
    }

    /// The API listener's router (read API, UI, health, `/metrics`), for
    /// tests that call it without a socket.
    pub fn api_router(&self) -> axum::Router {
        routes::router(ApiState {
            store: self.store.clone(),
            auth: self.auth.clone(),
            metrics: self.metrics.clone(),
            stale_after: self.stale_after,
            environments: self.environments.clone(),
            ui_refresh: self.ui_refresh,
            reports: Arc::new(ReportCache::default()),
            links: Links {
                orchestrator: self.orchestrator_url.clone(),
                traces: self.trace_links.clone(),
            },
            rate_limit: self.api_limit.clone(),
            metrics_require_token: self.metrics_require_token,
            metrics_max_environments: self.metrics_max_environments,
            orchestrator: self.orchestrator_url.as_deref().and_then(|url| {
                sextant_kit::orchestrator::OrchestratorClient::new(url)
                    .inspect_err(
                        |e| tracing::warn!(error = %e, "The UI cannot reach the orchestrator"),
                    )
                    .ok()
            }),
            csrf: self.csrf.clone(),
            tls: self.tls.is_some(),
        })
    }

    /// Serves until `shutdown` is cancelled or a component fails, then
    /// stops in stages (see the module docs). The first failure, if any,
    /// is the result.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let api = self.api_router();
        let ingestor = Ingestor::new(
            self.store.clone(),
            self.metrics.clone(),
            self.max_future_skew,
        )
        .with_reconcilers(self.reconcilers);
        let http_state = HttpState {
            ingestor: ingestor.clone(),
            auth: self.auth.clone(),
            max_request_bytes: self.max_request_bytes,
            rate_limit: self.ingest_limit.clone(),
            budget: self.budget.clone(),
            metrics: self.metrics.clone(),
        };
        // The reconcilers' webhooks share the OTLP/HTTP listener, its
        // tokens, rate limit and memory budget (docs/reconcilers.md).
        let otlp_http =
            http::router(http_state.clone()).merge(reconcilers::http::router(http_state));
        let admission = Admission {
            auth: self.auth.clone(),
            rate_limit: self.ingest_limit,
            budget: self.budget,
            max_request_bytes: self.max_request_bytes,
            metrics: self.metrics.clone(),
        };
        let refused = |listener: &str| self.metrics.listener_refused.with_label_values(&[listener]);
        let mut serving = Stage::new("listeners");
        serving.spawn(
            grpc::serve(
                self.grpc,
                ingestor,
                admission,
                self.listeners,
                refused("otlp_grpc"),
                self.tls.clone(),
                serving.child_token(),
            )
            .map_err(AppError::Grpc),
        );
        for (what, listener, router) in
            [("OTLP/HTTP", self.http, otlp_http), ("API", self.api, api)]
        {
            let label = if what == "API" { "api" } else { "otlp_http" };
            serving.spawn(
                serve_http_tls(
                    listener,
                    router,
                    self.listeners,
                    refused(label),
                    self.tls.clone(),
                    serving.child_token(),
                )
                .map_err(move |source| AppError::Http { what, source }),
            );
        }
        let mut sweeping = Stage::new("background work");
        sweeping.spawn(
            sweep_stale_until(
                self.store.clone(),
                self.stale_after,
                self.metrics.clone(),
                sweeping.child_token(),
            )
            .map(Ok),
        );
        sweeping.spawn(
            derive_until(
                self.store.clone(),
                self.metrics.clone(),
                sweeping.child_token(),
            )
            .map(Ok),
        );
        // Until asked to stop, or until a component ends.
        let mut result = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            ended = serving.ended() => ended,
            ended = sweeping.ended() => ended,
        };
        if let Err(error) = &result {
            tracing::error!(%error, "Hub component failed; stopping");
        }
        // 1. Stop accepting; the requests in hand finish (an acknowledged
        // batch is committed before its answer goes out).
        serving.stop(STAGE_DEADLINE, &mut result).await;
        // 2. The stale sweep and the deriver stop (either, interrupted,
        // goes on at the next start).
        sweeping.stop(STAGE_DEADLINE, &mut result).await;
        // 3. The store closes once its last connection comes back.
        if tokio::time::timeout(STAGE_DEADLINE, self.store.close())
            .await
            .is_err()
        {
            tracing::warn!(deadline = ?STAGE_DEADLINE, "The store did not close before the deadline");
        }
        shutdown.cancel();
        result
    }
}

/// How often the stale sweep runs: a tenth of the stale threshold, between
/// 1 s and 30 s. Reads stay exact between sweeps (see `store/drift.rs`);
/// the period bounds how many rows a read finds that crossed the threshold
/// since the last one.
fn sweep_period(stale_after: Duration) -> Duration {
    (stale_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Runs the stale sweep on start and then every [`sweep_period`] until
/// `shutdown`. A failed sweep is logged and counted, and tried again at the
/// next period.
async fn sweep_stale_until(
    store: Arc<dyn HubStore>,
    stale_after: Duration,
    metrics: HubMetrics,
    shutdown: CancellationToken,
) {
    let window = i64::try_from(stale_after.as_nanos()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(sweep_period(stale_after));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let stale_before = sextant_model::UnixNanos::now().0.saturating_sub(window);
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = store.sweep_stale(stale_before) => outcome,
        };
        match outcome {
            Ok(marked) => {
                metrics.stale_marked.inc_by(marked);
                if marked > 0 {
                    tracing::debug!(marked, elapsed = ?started.elapsed(), "stale sweep");
                }
            }
            Err(error) => {
                metrics.stale_sweep_errors.inc();
                tracing::warn!(%error, "stale sweep failed; trying again at the next period");
            }
        }
    }
}

/// How often the deriver says how far an upgrade's rebuild got, and
/// reads its backlog into the gauges.
const DERIVE_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How long the deriver rests when nothing is listed.
const DERIVE_PERIOD: Duration = Duration::from_millis(500);

/// Derives, from history, the deployments of the targets listed in
/// `deployments_backfill` (`store/deployments/`), a few at a time, in the
/// background until `shutdown`: those ingest listed (a DORA report derives
/// its own tenant's first, so it never waits for this loop) and those an
/// upgrade left to rebuild whole, while the listeners serve (a report says
/// how many of these it does not count yet). The upgrade's progress goes to
/// the log every [`DERIVE_PROGRESS_EVERY`]; both backlogs go to
/// `sextant_hub_deployments_rebuild_pending` and
/// `sextant_hub_deployments_derive_pending`. A failed step is logged and
/// tried again after a pause; an interrupted one goes on at the next start.
async fn derive_until(store: Arc<dyn HubStore>, metrics: HubMetrics, shutdown: CancellationToken) {
    let gauge = |g: &prometheus::IntGauge, n: u64| g.set(i64::try_from(n).unwrap_or(i64::MAX));
    let upgrade = store.rebuild_pending(None).await.unwrap_or(0);
    gauge(&metrics.rebuild_pending, upgrade);
    let mut rebuilding = upgrade > 0;
    if rebuilding {
        tracing::info!(targets = upgrade, "Rebuilding deployments from history");
    }
    let started = std::time::Instant::now();
    let mut said = std::time::Instant::now();
    let mut done = 0u64;
    loop {
        let step = tokio::select! {
            () = shutdown.cancelled() => return,
            step = store.derive_step() => step,
        };
        let rest = match step {
            Ok(0) => {
                metrics.derive_pending.set(0);
                if rebuilding {
                    rebuilding = false;
                    metrics.rebuild_pending.set(0);
                    tracing::info!(done, elapsed = ?started.elapsed(), "Deployments rebuilt from history");
                }
                Some(DERIVE_PERIOD)
            }
            Ok(n) => {
                done += n;
                None
            }
            Err(error) => {
                tracing::warn!(%error, "Deriving deployments failed; trying again");
                Some(Duration::from_secs(5))
            }
        };
        if let Some(rest) = rest {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(rest) => {}
            }
        }
        if said.elapsed() >= DERIVE_PROGRESS_EVERY {
            said = std::time::Instant::now();
            gauge(
                &metrics.derive_pending,
                store.derive_pending().await.unwrap_or(0),
            );
            if rebuilding {
                let left = store.rebuild_pending(None).await.unwrap_or(0);
                gauge(&metrics.rebuild_pending, left);
                tracing::info!(done, left, "Rebuilding deployments from history");
            }
        }
    }
}

/// An orchestrator URL without a trailing `/` or `/api/v1`.
fn orchestrator_base(url: &str) -> Arc<str> {
    url.trim_end_matches('/').trim_end_matches("/api/v1").into()
}
