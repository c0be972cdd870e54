//! The web UI, served by the hub on the API address: server-rendered HTML
//! (maud) with a little plain JavaScript that refreshes each page in place.
//! No CDN, no Node build, works offline. Filters live in the URL.
//!
//! Pages: `/` (environment × workload matrix), `/compare`, `/drift`,
//! `/hosts`, `/hosts/{host}`, `/workloads/{workload}/history`.
//!
//! With tokens configured, the UI reads as the token in the
//! `Authorization` header or in the `sextant_token` cookie set by `/login`.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use sextant_exporters::serve::Peer;
use sextant_model::Source;
use sextant_model::{
    Comparison, DeploymentStatus, DriftReason, HistoryEntry, HostDeployment, TargetSummary,
    UnixNanos, order_environments,
};

use crate::auth::{AuthError, Principal, Scope};
use crate::read::{ApiState, parse_time, source_filter};
use crate::store::{
    CurrentQuery, HistoryQuery, ListQuery, PAGE_TARGETS, SourceFilter, StateQuery, WorkloadKey,
    plan_workload_page,
};

const CSS: &str = include_str!("sextant.css");
const JS: &str = include_str!("sextant.js");
const COOKIE: &str = "sextant_token";
/// Rows a UI list shows per page.
const PAGE: u32 = 100;

/// The UI routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/", get(matrix))
        .route("/compare", get(compare))
        .route("/drift", get(drift))
        .route("/hosts", get(hosts))
        .route("/hosts/{host}", get(host))
        .route("/workloads/{workload}/history", get(history))
        .route("/login", get(login_page).post(login))
}

/// A page that could not be shown.
enum UiError {
    Login(String),
    Status(StatusCode, String),
}

impl From<AuthError> for UiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden(_) => UiError::Status(StatusCode::FORBIDDEN, e.to_string()),
            AuthError::Missing | AuthError::Unknown => UiError::Login(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "Store read failed for the UI");
        UiError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub store is unavailable".into(),
        )
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login(why) => {
                (StatusCode::UNAUTHORIZED, login_form(Some(&why))).into_response()
            }
            UiError::Status(status, message) => (
                status,
                layout("Error", "", 0, html! { p.error { (message) } }),
            )
                .into_response(),
        }
    }
}

/// The caller, from the Authorization header or the UI's cookie.
fn viewer(
    state: &ApiState,
    headers: &HeaderMap,
    peer: Option<&Extension<Peer>>,
) -> Result<Principal, UiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next()
        .map(|t| format!("Bearer {t}"));
    // Without a token, a client certificate `[[client_certs]]` maps.
    Ok(state.auth.check_request(
        header.or(cookie).as_deref(),
        peer.map(|p| &p.0),
        Scope::Read,
    )?)
}

/// "42s ago", "3h ago": how long before now.
fn ago(t: UnixNanos) -> String {
    let secs = (UnixNanos::now().0 - t.0) / 1_000_000_000;
    match secs {
        s if s < 0 => "just now".into(),
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// A time for people: `2026-11-23 16:40:01Z`, with the exact time on hover.
fn when(t: UnixNanos) -> Markup {
    let exact = t.to_rfc3339();
    let short = format!("{} {}Z", &exact[..10], &exact[11..19.min(exact.len())]);
    html! { time datetime=(exact) title=(exact) { (short) " · " (ago(t)) } }
}

fn status_class(s: DeploymentStatus) -> &'static str {
    match s {
        DeploymentStatus::Succeeded => "ok",
        DeploymentStatus::Failed => "bad",
        DeploymentStatus::InProgress => "busy",
    }
}

fn reason_label(r: DriftReason) -> &'static str {
    match r {
        DriftReason::WrongRevision => "wrong revision",
        DriftReason::Failed => "failed",
        DriftReason::NoDesiredState => "no desired state",
        DriftReason::Stale => "stale",
    }
}

/// The first 12 characters (of the hex, for a `sha256:` digest). Reported
/// text may be any UTF-8, so this cuts at a character boundary.
fn short_revision(r: &str) -> &str {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    hex.char_indices().nth(12).map_or(hex, |(i, _)| &hex[..i])
}

/// A filter field's value: an empty field (the filter form submits every
/// field) filters nothing.
fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

/// A query string from the non-empty pairs.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty()).map(|v| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The frame of every page.
/// A page of `state`'s UI, refreshing itself at the configured interval.
fn page(state: &ApiState, title: &str, active: &str, body: Markup) -> Markup {
    let ms = u64::try_from(state.ui_refresh.as_millis()).unwrap_or(u64::MAX);
    layout(title, active, ms, body)
}

/// The frame of every page; `refresh_ms` 0 means no refresh.
fn layout(title: &str, active: &str, refresh_ms: u64, body: Markup) -> Markup {
    let nav = [
        ("/", "Matrix"),
        ("/compare", "Compare"),
        ("/drift", "Drift"),
        ("/hosts", "Hosts"),
        ("/api/docs", "API"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="sextant-refresh-ms" content=(refresh_ms);
                title { (title) " · Sextant" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a.brand href="/" { "Sextant" }
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(active == href).then_some("active")] { (label) }
                        }
                    }
                    span #updated { "Updated " (when(UnixNanos::now())) }
                }
                main #content data-title=(title) {
                    h1 { (title) }
                    (body)
                }
                script { (PreEscaped(JS)) }
            }
        }
    }
}

/// A filter form whose fields become the URL's query.
fn filter_form(action: &str, fields: &[(&str, &str, Option<&str>)]) -> Markup {
    filter_form_with(action, fields, None)
}

/// A filter form with the source and reconciler filters after `fields`.
fn filter_form_with(
    action: &str,
    fields: &[(&str, &str, Option<&str>)],
    source: Option<&SourceParams>,
) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            @for (name, label, value) in fields {
                label { (label) " " input type="text" name=(name) value=[value]; }
            }
            @if let Some(p) = source {
                @let current = p.source.as_deref().unwrap_or("");
                label { "Source "
                    select name="source" {
                        option value="" selected[current.is_empty()] { "any" }
                        @for s in Source::ALL {
                            option value=(s.as_str()) selected[current == s.as_str()] { (s.as_str()) }
                        }
                        @if !current.is_empty() && current.parse::<Source>().is_err() {
                            option value=(current) selected { (current) }
                        }
                    }
                }
                label { "Reconciler " input type="text" name="reconciler" value=[p.reconciler.as_deref()]; }
            }
            button type="submit" { "Filter" }
            a href=(action) { "Clear" }
        }
    }
}

/// The source filter of a page: `source` (comma-separated source names)
/// and `reconciler`, as the API takes them.
#[derive(Debug, Default, Clone, Deserialize)]
struct SourceParams {
    source: Option<String>,
    reconciler: Option<String>,
}

impl SourceParams {
    /// The store's filter; an unknown source is a 400 page naming the
    /// allowed ones.
    fn filter(&self) -> Result<SourceFilter, UiError> {
        source_filter(self.source.as_deref(), self.reconciler.clone()).map_err(|_| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                format!(
                    "source={:?} names no source: choose from {} (comma-separated)",
                    self.source.as_deref().unwrap_or_default(),
                    Source::names()
                ),
            )
        })
    }

    /// The pairs to carry into links.
    fn pairs(&self) -> [(&'static str, Option<&str>); 2] {
        [
            ("source", self.source.as_deref()),
            ("reconciler", self.reconciler.as_deref()),
        ]
    }
}

/// A row's source as a small badge, with the reconciler's name.
fn source_badge(source: Source, reconciler: Option<&str>) -> Markup {
    html! {
        span class={ "source src-" (source.as_str()) } data-source=(source.as_str())
            title={ "reported by " (source.as_str()) @if let Some(r) = reconciler { " reconciler " (r) } } {
            (source.as_str())
            @if let Some(r) = reconciler { " " span.rname { (r) } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct MatrixParams {
    workspace: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    /// Comma-separated environments to show; all when empty.
    environments: Option<String>,
    source: Option<String>,
    reconciler: Option<String>,
    /// The workload to continue after (a page's "next" link).
    after: Option<String>,
}

/// Most workloads on a page of the matrix or of compare; a page also stops
/// at [`crate::store::PAGE_TARGETS`] targets.
const PAGE_WORKLOADS: u32 = 100;

/// A page's "next" parameter: the last workload's names, as JSON.
fn encode_after(key: &WorkloadKey) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

fn decode_after(after: Option<&str>) -> Result<Option<WorkloadKey>, UiError> {
    match after.filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(a) => serde_json::from_str(a).map(Some).map_err(|_| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                "invalid page: follow the page's Next link".into(),
            )
        }),
    }
}

/// Narrows `filter` to one page of workloads after `after` (a page's
/// "next" parameter): its targets, not the tenant's, are read. `None` in
/// the returned filter's `workloads`: no workload left. Also returns the
/// workload the next page starts after.
async fn workload_page(
    state: &ApiState,
    tenant: &str,
    filter: StateQuery,
    after: Option<&str>,
) -> Result<(StateQuery, Option<WorkloadKey>), UiError> {
    let (range, next) = plan_workload_page(
        state.store.as_ref(),
        tenant,
        &filter,
        decode_after(after)?,
        PAGE_WORKLOADS,
        PAGE_TARGETS,
    )
    .await?;
    Ok((
        StateQuery {
            workloads: range,
            ..filter
        },
        next,
    ))
}

/// The link to the page after `next`, keeping the other parameters.
fn next_link(path: &str, pairs: &[(&str, Option<&str>)], next: Option<&WorkloadKey>) -> Markup {
    let Some(next) = next else {
        return html! {};
    };
    let after = encode_after(next);
    let mut all = pairs.to_vec();
    all.push(("after", Some(after.as_str())));
    html! {
        p.pager { a.next rel="next" href={ (path) (query_string(&all)) } { "Next workloads →" } }
    }
}

fn env_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Drift per (workspace, application, workload, environment): (drifting
/// rows, failed rows, stale rows).
type DriftCounts = HashMap<(String, String, String, String), (u64, u64, u64)>;

async fn drift_counts(
    state: &ApiState,
    tenant: &str,
    filter: StateQuery,
) -> Result<DriftCounts, UiError> {
    let rows = state
        .store
        .drift_summary(tenant, &filter, state.stale_before())
        .await?;
    let mut counts = DriftCounts::new();
    for d in rows {
        let c = counts
            .entry((d.workspace, d.application, d.workload, d.environment))
            .or_default();
        c.0 += d.rows;
        c.1 += d.failed;
        c.2 += d.stale;
    }
    Ok(counts)
}

/// Most environment columns the matrix shows.
const MATRIX_ENVIRONMENTS: usize = 50;

/// Home: the environment × workload matrix.
async fn matrix(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(p): Query<MatrixParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let sp = SourceParams {
        source: p.source.clone(),
        reconciler: p.reconciler.clone(),
    };
    let filter = StateQuery {
        workspace: given(&p.workspace),
        application: given(&p.application),
        workload: given(&p.workload),
        environment: None,
        target: None,
        source: sp.filter()?,
        workloads: None,
    };
    let (filter, next) =
        workload_page(&state, &principal.tenant, filter, p.after.as_deref()).await?;
    let (summaries, drift) = match filter.workloads {
        Some(_) => {
            let summaries = async {
                Ok::<_, UiError>(state.store.summaries(&principal.tenant, &filter).await?)
            };
            let drift = drift_counts(&state, &principal.tenant, filter.clone());
            // Both at once on PostgreSQL, each on its own pooled connection.
            if state.store.backend() == "postgres" {
                futures::try_join!(summaries, drift)?
            } else {
                (summaries.await?, drift.await?)
            }
        }
        None => (Vec::new(), DriftCounts::new()),
    };
    let wanted = env_list(p.environments.as_deref());
    let mut envs: Vec<String> = summaries.iter().map(|s| s.at.environment.clone()).collect();
    envs.sort();
    envs.dedup();
    envs.retain(|e| wanted.is_empty() || wanted.contains(e));
    order_environments(&mut envs, |e| e.as_str(), &state.environments);
    // Environment names are the senders' choice: the page shows a bounded
    // number of columns whatever they invent, and says what it left out.
    let hidden = envs.len().saturating_sub(MATRIX_ENVIRONMENTS);
    envs.truncate(MATRIX_ENVIRONMENTS);

    let mut rows: BTreeMap<(String, String, String), HashMap<String, Vec<TargetSummary>>> =
        BTreeMap::new();
    for s in summaries {
        rows.entry((
            s.at.workspace.clone(),
            s.at.application.clone(),
            s.at.workload.clone(),
        ))
        .or_default()
        .entry(s.at.environment.clone())
        .or_default()
        .push(s);
    }
    let body = html! {
        (filter_form_with("/", &[
            ("workspace", "Workspace", p.workspace.as_deref()),
            ("application", "Application", p.application.as_deref()),
            ("workload", "Workload", p.workload.as_deref()),
            ("environments", "Environments", p.environments.as_deref()),
        ], Some(&sp)))
        @if hidden > 0 {
            p.note.hidden-environments {
                (hidden) " more environments are not shown; list the ones to see under Environments (comma-separated)."
            }
        }
        @if rows.is_empty() {
            p.empty { "No deployment state yet. Send some over OTLP (see docs/otlp-conventions.md) or start with " code { "sextant up --demo" } "." }
        } @else {
            div.scroll {
                table.matrix {
                    thead { tr {
                        th { "Workload" }
                        @for env in &envs { th { (env) } }
                    } }
                    tbody {
                        @for ((workspace, application, workload), cells) in &rows {
                            tr {
                                th scope="row" {
                                    span.app { (application) @if workspace != "default" { " · " (workspace) } }
                                    br;
                                    (workload)
                                }
                                @for env in &envs {
                                    @let targets = cells.get(env);
                                    @let (drifting, failed, stale) = drift
                                        .get(&(workspace.clone(), application.clone(), workload.clone(), env.clone()))
                                        .copied()
                                        .unwrap_or_default();
                                    td.cell.drift[drifting > 0].failed[failed > 0].stale[stale > 0]
                                        data-environment=(env) data-workload=(workload) {
                                        @if let Some(targets) = targets {
                                            @for t in targets { (matrix_target(t)) }
                                            div.flags {
                                                @if failed > 0 { span.flag.bad { (failed) " failed" } }
                                                @if drifting > failed + stale { span.flag.warn { (drifting - failed - stale) " drifted" } }
                                                @if stale > 0 { span.flag.stale { (stale) " stale" } }
                                            }
                                            a.more href={ "/workloads/" (path_segment(workload)) "/history" (query_string(&[("environment", Some(env)), ("application", Some(application))])) } { "history" }
                                        } @else {
                                            span.none { "—" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (next_link("/", &[
                ("workspace", p.workspace.as_deref()),
                ("application", p.application.as_deref()),
                ("workload", p.workload.as_deref()),
                ("environments", p.environments.as_deref()),
                ("source", p.source.as_deref()),
                ("reconciler", p.reconciler.as_deref()),
            ], next.as_ref()))
        }
    };
    Ok(page(&state, "What runs where", "/", body))
}

fn matrix_target(t: &TargetSummary) -> Markup {
    html! {
        div.target data-target=(t.at.target) {
            div.tname { (t.at.target) }
            div.sources {
                @for r in &t.sources {
                    (source_badge(r.source, r.reconciler.as_deref()))
                }
            }
            div.desired {
                @match &t.desired {
                    Some(d) => { "desired " strong.version { (d.version) } }
                    None => { em { "no desired version" } }
                }
            }
            ul.groups {
                @for g in &t.deployed {
                    li class=(status_class(g.status)) title=(g.revision) {
                        span.version { (g.version.as_deref().unwrap_or_else(|| short_revision(&g.revision))) }
                        " " (g.status.as_str().replace('_', " ")) " "
                        span.count { (g.hosts) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CompareParams {
    environments: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    /// The workload to continue after (a page's "next" link).
    after: Option<String>,
}

/// Environments side by side.
async fn compare(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(p): Query<CompareParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let filter = StateQuery {
        application: given(&p.application),
        workload: given(&p.workload),
        ..StateQuery::default()
    };
    let (filter, next) =
        workload_page(&state, &principal.tenant, filter, p.after.as_deref()).await?;
    let summaries = match filter.workloads {
        Some(_) => state.store.summaries(&principal.tenant, &filter).await?,
        None => Vec::new(),
    };
    let mut envs = env_list(p.environments.as_deref());
    if envs.is_empty() {
        envs = summaries.iter().map(|s| s.at.environment.clone()).collect();
        envs.sort();
        envs.dedup();
        order_environments(&mut envs, |e| e.as_str(), &state.environments);
    }
    let summaries = summaries
        .into_iter()
        .filter(|s| envs.contains(&s.at.environment))
        .collect();
    let c = Comparison::build(envs.clone(), summaries);
    let joined = envs.join(",");
    let body = html! {
        (filter_form("/compare", &[
            ("environments", "Environments", Some(joined.as_str())),
            ("application", "Application", p.application.as_deref()),
            ("workload", "Workload", p.workload.as_deref()),
        ]))
        div.scroll {
            table.compare {
                thead { tr {
                    th { "Workload" }
                    @for env in &c.environments { th { (env) } }
                    th { "Differs" }
                } }
                tbody {
                    @for row in &c.workloads {
                        tr.differs[row.differs] data-workload=(row.workload) {
                            th scope="row" { span.app { (row.application) } br; (row.workload) }
                            @for env in &c.environments {
                                td {
                                    @match row.environments.get(env) {
                                        Some(cell) => {
                                            div { "desired " strong.version { (cell.desired_versions.join(", ")) } }
                                            div.deployed { "running " (cell.deployed_versions.join(", ")) }
                                            @for t in &cell.targets {
                                                div.small { (t.target) ": " (t.total_hosts) " hosts" }
                                            }
                                        }
                                        None => { span.none { "not deployed" } }
                                    }
                                }
                            }
                            td { @if row.differs { span.flag.warn { "differs" } } @else { "same" } }
                        }
                    }
                }
            }
        }
        (next_link("/compare", &[
            ("environments", p.environments.as_deref()),
            ("application", p.application.as_deref()),
            ("workload", p.workload.as_deref()),
        ], next.as_ref()))
    };
    Ok(page(&state, "Compare environments", "/compare", body))
}

#[derive(Debug, Default, Deserialize)]
struct DriftParams {
    environment: Option<String>,
    workload: Option<String>,
    host: Option<String>,
    cursor: Option<String>,
    source: Option<String>,
    reconciler: Option<String>,
}

/// The job column's cell: a link to the orchestrator's job page when the
/// hub knows the orchestrator, else the job id.
fn job_cell(job: Option<&str>, orchestrator: Option<&str>) -> Markup {
    html! {
        @match (job, orchestrator) {
            (Some(job), Some(base)) => {
                a.job href={ (base) "/jobs/" (path_segment(job)) } title={ "job " (job) } { (short_revision(job)) }
            }
            (Some(job), None) => { span title=(job) { (short_revision(job)) } }
            (None, _) => { span.none { "—" } }
        }
    }
}

fn deployments_table(
    rows: &[HostDeployment],
    show_host: bool,
    orchestrator: Option<&str>,
) -> Markup {
    let jobs = rows.iter().any(|d| d.job.is_some());
    html! {
        div.scroll {
            table.list {
                thead { tr {
                    @if show_host { th { "Host" } }
                    th { "Source" }
                    th { "Workload" } th { "Environment" } th { "Target" } th { "Desired" }
                    th { "Running" } th { "Status" } th { "Drift" } th { "Reported" }
                    @if jobs { th { "Changed by" } }
                } }
                tbody {
                    @for d in rows {
                        tr.drift[!d.drift.is_empty()] data-host=(d.host) data-workload=(d.at.workload) data-source=(d.source.as_str()) {
                            @if show_host { td { a href={ "/hosts/" (path_segment(&d.host)) } { (d.host) } } }
                            td { (source_badge(d.source, d.reconciler.as_deref())) }
                            td { (d.at.application) " / " (d.at.workload) }
                            td { (d.at.environment) }
                            td { (d.at.target) }
                            td { @match &d.desired { Some(v) => { (v.version) }, None => { span.none { "—" } } } }
                            td title=(d.revision) { (d.version.as_deref().unwrap_or_else(|| short_revision(&d.revision))) }
                            td { span class={ "status " (status_class(d.status)) } { (d.status.as_str().replace('_', " ")) }
                                 @if let Some(m) = &d.message { div.small { (m) } } }
                            td { @for r in &d.drift { span.flag.warn { (reason_label(*r)) } " " } }
                            td { (when(d.observed_at)) }
                            @if jobs { td { (job_cell(d.job.as_deref(), orchestrator)) } }
                        }
                    }
                }
            }
        }
    }
}

/// Every (host, target) that differs from desired state.
async fn drift(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(p): Query<DriftParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let sp = SourceParams {
        source: p.source.clone(),
        reconciler: p.reconciler.clone(),
    };
    let after = p
        .cursor
        .as_deref()
        .and_then(|c| hex::decode(c).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let rows = state
        .store
        .current(
            &principal.tenant,
            &CurrentQuery {
                filter: StateQuery {
                    environment: given(&p.environment),
                    workload: given(&p.workload),
                    source: sp.filter()?,
                    ..StateQuery::default()
                },
                host: given(&p.host),
                drift_only: true,
                stale_before: state.stale_before(),
                after,
                limit: PAGE + 1,
            },
        )
        .await?;
    let next = (rows.len() > PAGE as usize)
        .then(|| rows.get(PAGE as usize - 1))
        .flatten()
        .and_then(|(_, c)| serde_json::to_vec(c).ok())
        .map(hex::encode);
    let rows: Vec<HostDeployment> = rows
        .into_iter()
        .take(PAGE as usize)
        .map(|(d, _)| d)
        .collect();
    let body = html! {
        (filter_form_with("/drift", &[
            ("environment", "Environment", p.environment.as_deref()),
            ("workload", "Workload", p.workload.as_deref()),
            ("host", "Host", p.host.as_deref()),
        ], Some(&sp)))
        @if rows.is_empty() {
            p.empty.good { "No drift: every host runs what was promoted." }
        } @else {
            p { (rows.len()) @if next.is_some() { "+" } " drifting deployments." }
            (deployments_table(&rows, true, state.orchestrator_url.as_deref()))
        }
        @if let Some(cursor) = next {
            a.next href={ "/drift" (query_string(&[
                ("environment", p.environment.as_deref()),
                ("workload", p.workload.as_deref()),
                ("host", p.host.as_deref()),
                sp.pairs()[0],
                sp.pairs()[1],
                ("cursor", Some(&cursor)),
            ])) } { "Next page →" }
        }
    };
    Ok(page(&state, "Drift", "/drift", body))
}

#[derive(Debug, Default, Deserialize)]
struct HostsParams {
    environment: Option<String>,
    host: Option<String>,
    after: Option<String>,
    source: Option<String>,
    reconciler: Option<String>,
}

/// All hosts with their last report and status counts.
async fn hosts(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(p): Query<HostsParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let sp = SourceParams {
        source: p.source.clone(),
        reconciler: p.reconciler.clone(),
    };
    let mut rows = state
        .store
        .hosts(
            &principal.tenant,
            &ListQuery {
                filter: StateQuery {
                    environment: given(&p.environment),
                    source: sp.filter()?,
                    ..StateQuery::default()
                },
                host: given(&p.host),
                after: given(&p.after),
                limit: PAGE + 1,
            },
        )
        .await?;
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let stale_before = state.stale_before().0;
    let body = html! {
        (filter_form_with("/hosts", &[
            ("environment", "Environment", p.environment.as_deref()),
            ("host", "Host", p.host.as_deref()),
        ], Some(&sp)))
        div.scroll {
            table.list {
                thead { tr { th { "Host" } th { "Sources" } th { "Workloads" } th { "Succeeded" } th { "Failed" } th { "In progress" } th { "Last report" } } }
                tbody {
                    @for h in &rows {
                        @let stale = Source::host_is_stale(&h.sources, h.last_seen_at, stale_before);
                        tr.stale[stale] data-host=(h.host) {
                            td { a href={ "/hosts/" (path_segment(&h.host)) } { (h.host) } }
                            td { @for s in &h.sources { (source_badge(*s, None)) } }
                            td { (h.workloads) }
                            td { span.status.ok { (h.succeeded) } }
                            td { @if h.failed > 0 { span.status.bad { (h.failed) } } @else { "0" } }
                            td { @if h.in_progress > 0 { span.status.busy { (h.in_progress) } } @else { "0" } }
                            td { (when(UnixNanos(h.last_seen_at)))
                                 @if stale { " " span.flag.stale { "stale" } } }
                        }
                    }
                }
            }
        }
        @if more {
            @if let Some(last) = rows.last() {
                a.next href={ "/hosts" (query_string(&[
                    ("environment", p.environment.as_deref()),
                    ("host", p.host.as_deref()),
                    sp.pairs()[0],
                    sp.pairs()[1],
                    ("after", Some(&last.host)),
                ])) } { "Next page →" }
            }
        }
    };
    Ok(page(&state, "Hosts", "/hosts", body))
}

/// Everything one host runs.
async fn host(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(sp): Query<SourceParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let stale_before = state.stale_before();
    let source = sp.filter()?;
    let filtered = !source.is_empty();
    let rows = state
        .store
        .current(
            &principal.tenant,
            &CurrentQuery {
                filter: StateQuery {
                    source,
                    ..StateQuery::default()
                },
                host: Some(name.clone()),
                drift_only: false,
                stale_before,
                after: None,
                limit: 10_000,
            },
        )
        .await?;
    let rows: Vec<HostDeployment> = rows.into_iter().map(|(d, _)| d).collect();
    let Some(last) = rows.iter().map(|d| d.observed_at).max() else {
        return Err(UiError::Status(
            StatusCode::NOT_FOUND,
            if filtered {
                format!("Host {name:?} has no deployments that pass the source filter.")
            } else {
                format!("No host {name:?} has reported.")
            },
        ));
    };
    let action = format!("/hosts/{}", path_segment(&name));
    let body = html! {
        (filter_form_with(&action, &[], Some(&sp)))
        p.summary {
            "Last report " (when(last))
            @if HostDeployment::host_is_stale(&rows, stale_before) { " " span.flag.stale { "stale" } }
            " · " (rows.len()) " deployments"
            " · " a href={ "/drift" (query_string(&[("host", Some(&name))])) } { "drift of this host" }
        }
        (deployments_table(&rows, false, state.orchestrator_url.as_deref()))
    };
    Ok(page(&state, &format!("Host {name}"), "/hosts", body))
}

#[derive(Debug, Default, Deserialize)]
struct HistoryParams {
    environment: Option<String>,
    application: Option<String>,
    target: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
}

/// A workload's history as a timeline.
async fn history(
    State(state): State<ApiState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(workload): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Markup, UiError> {
    let principal = viewer(&state, &headers, peer.as_ref())?;
    let now = UnixNanos::now();
    let since = match p.since.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_time("since", s, now).map_err(|_| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                format!("since={s:?} is not a time or a duration such as 7d"),
            )
        })?),
        None => None,
    };
    let after = p
        .cursor
        .as_deref()
        .and_then(|c| hex::decode(c).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let rows = state
        .store
        .history(
            &principal.tenant,
            &HistoryQuery {
                filter: StateQuery {
                    application: given(&p.application),
                    workload: Some(workload.clone()),
                    environment: given(&p.environment),
                    target: given(&p.target),
                    ..StateQuery::default()
                },
                host: None,
                since,
                until: None,
                after,
                limit: PAGE + 1,
            },
        )
        .await?;
    let next = (rows.len() > PAGE as usize)
        .then(|| rows.get(PAGE as usize - 1))
        .flatten()
        .and_then(|(_, c)| serde_json::to_vec(c).ok())
        .map(hex::encode);
    let entries: Vec<HistoryEntry> = rows
        .into_iter()
        .take(PAGE as usize)
        .map(|(e, _)| e)
        .collect();
    let action = format!("/workloads/{}/history", path_segment(&workload));
    let body = html! {
        (filter_form(&action, &[
            ("environment", "Environment", p.environment.as_deref()),
            ("application", "Application", p.application.as_deref()),
            ("target", "Target", p.target.as_deref()),
            ("since", "Since (e.g. 7d)", p.since.as_deref()),
        ]))
        @if entries.is_empty() { p.empty { "No history for this workload yet." } }
        ol.timeline {
            @for e in &entries {
                @match e {
                    HistoryEntry::Desired { at, target, version, hosts, .. } => {
                        li.desired {
                            (when(*at)) " "
                            strong { "Promoted " span.version { (version) } }
                            " to " (target.environment) " / " (target.target)
                            div.small {
                                span.status.ok { (hosts.succeeded) " succeeded" } " "
                                span.status.busy { (hosts.in_progress) " in progress" } " "
                                span.status.bad { (hosts.failed) " failed" }
                            }
                        }
                    }
                    HistoryEntry::Observed { at, target, host, reconciler, source, version, revision, status, message } => {
                        li class={ "observed " (status_class(*status)) } {
                            (when(*at)) " "
                            (source_badge(*source, reconciler.as_deref())) " "
                            a href={ "/hosts/" (path_segment(host)) } { (host) }
                            " reports " span.version { (version.as_deref().unwrap_or_else(|| short_revision(revision))) }
                            " " span class={ "status " (status_class(*status)) } { (status.as_str().replace('_', " ")) }
                            " in " (target.environment) " / " (target.target)
                            @if let Some(m) = message { div.small { (m) } }
                        }
                    }
                }
            }
        }
        @if let Some(cursor) = next {
            a.next href={ (action) (query_string(&[
                ("environment", p.environment.as_deref()),
                ("application", p.application.as_deref()),
                ("target", p.target.as_deref()),
                ("since", p.since.as_deref()),
                ("cursor", Some(&cursor)),
            ])) } { "Older →" }
        }
    };
    Ok(page(&state, &format!("History of {workload}"), "", body))
}

fn login_form(why: Option<&str>) -> Markup {
    layout(
        "Sign in",
        "",
        0,
        html! {
            @if let Some(why) = why { p.error { "This hub needs a token with the read scope (" (why) ")." } }
            form.login method="post" action="/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_page() -> Markup {
    login_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Stores the token in a cookie (HttpOnly, SameSite=Strict) after checking it.
async fn login(State(state): State<ApiState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let valid = token.chars().all(|c| c.is_ascii_graphic())
        && state
            .auth
            .check(Some(&format!("Bearer {token}")), Scope::Read)
            .is_ok();
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("that token cannot read")),
        )
            .into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}
