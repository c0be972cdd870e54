//! The orchestrator's HTML job page, `GET /jobs/{id}`: a job, its tasks, and
//! links to the hub's view of each task's target (issue 6 §4 "Links").
//! Server-rendered (maud), no JavaScript, no CDN; the look is a light copy
//! of the hub's UI (receiver/src/ui).
//!
//! The page reads what `GET /api/v1/jobs/{id}` reads, through the same
//! store calls, and is scoped to the caller's tenant by the API's
//! authentication ([`Caller`], `crate::api::auth`): without tokens it opens in
//! a browser; with tokens it needs a bearer token with the `read`, `deploy`
//! or `admin` scope, and a request without one gets the API's 401 JSON
//! error.
//!
//! Hub links, when the orchestrator has a hub (`--hub-url`): the
//! environment (`/?environments=ENV`), its hosts (`/hosts?environment=ENV`),
//! the agent's host page (`/hosts/AGENT`) for a target of execution model
//! `agent` whose agent can be resolved, and each component's workload
//! history on the target (`/workloads/COMPONENT/history?environment=ENV&
//! target=HUB_TARGET`). An SSH target's `ssh.host` is an address to
//! connect to, not necessarily the host name it reports to the hub, so it
//! gets no host link.
//!
//! Trace and log links (`trace_url_template`, `logs_url_template`;
//! `crate::api::links`) wherever the job's or the promotion's trace id is
//! known. `GET /promotions/{id}` shows a promotion, its trail and its job.
//!
//! `GET /` redirects to the hub's pipeline page ([`home`]).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::agents::AgentView;
use crate::api::state::{ApiState, Caller};
use crate::domain::{AgentConnection, JobState, Strategy, TargetSpec, TaskState};
use crate::store::{Job, Task};

/// A few rules of the hub's stylesheet (receiver/src/ui/sextant.css).
const CSS: &str = r#":root{--ok:#1f8a4c;--bad:#c62828;--busy:#b26a00;--line:#dde2ea;--bg:#f6f7f9;--ink:#1d2430}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);background:var(--bg);font-size:15px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.6rem 1rem;background:#1d2430;color:#fff}
header a{color:#cfd8e3;text-decoration:none}header a:hover{color:#fff;text-decoration:underline}
.brand{font-weight:700;color:#fff!important;font-size:1.1rem}
nav{display:flex;flex-wrap:wrap;gap:1rem}
main{padding:1rem;max-width:100rem;margin:0 auto}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line)}
th,td{border:1px solid var(--line);padding:.4rem .5rem;vertical-align:top;text-align:left}
thead th{background:#eef1f5}
tbody th{background:#fafbfc;white-space:nowrap}
.mono{font-family:ui-monospace,monospace}
.status{font-weight:600}.status.ok{color:var(--ok)}.status.bad{color:var(--bad)}.status.busy{color:var(--busy)}
.none,.small{color:#778;font-size:.8rem}
.links a+a{margin-left:.6rem}
.empty{padding:1rem;background:#fff;border:1px dashed var(--line)}
.error{color:var(--bad)}
@media (max-width:700px){main{padding:.5rem}table.list thead{display:none}table.list tr{display:block;border-bottom:2px solid var(--line)}table.list td{display:block;border:0;padding:.2rem .5rem}}
"#;

/// How often an unfinished job's page reloads itself, in seconds.
const REFRESH_SECS: u32 = 5;

/// The HTML routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/jobs/{id}", get(job_page))
        .route("/promotions/{id}", get(promotion_page))
}

/// `GET /`: the flow is shown by the hub, so this sends a browser to its
/// pipeline page (303). Open to callers without a token (`api::router`
/// adds it outside the authentication layer): the hub's address is all it
/// reveals. Without a hub there is nowhere to go: 404.
pub async fn home(State(state): State<ApiState>) -> Response {
    let hub = state
        .orchestrator
        .hub
        .as_ref()
        .and_then(|h| HubLinks::new(h.base_url()));
    match hub {
        Some(hub) => axum::response::Redirect::to(&hub.pipeline()).into_response(),
        None => crate::api::ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no page here: this orchestrator has no hub (hub_url) to show the pipeline",
        )
        .into_response(),
    }
}

/// The frame of a page; `refresh` reloads it every few seconds.
fn layout(title: &str, hub: Option<&HubLinks>, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECS); }
                title { (title) " · Sextant orchestrator" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    span.brand { "Sextant orchestrator" }
                    nav {
                        @if let Some(hub) = hub { a href=(hub.home()) { "Hub" } }
                        a href="/api/openapi.json" { "API" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        layout(title, None, false, html! { p.error { (message) } }),
    )
        .into_response()
}

/// Links into the hub's UI (receiver/src/ui/mod.rs), from its base URL.
#[derive(Debug, Clone)]
pub struct HubLinks {
    base: url::Url,
}

impl HubLinks {
    /// `None` when `base` is not an http(s) URL that can carry a path.
    pub fn new(base: &str) -> Option<Self> {
        let mut base = url::Url::parse(base).ok()?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return None;
        }
        base.set_query(None);
        base.set_fragment(None);
        Some(Self { base })
    }

    /// The base URL, as shown to people.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `segments` below the base (each percent-encoded), with a query of
    /// form-encoded `pairs`.
    fn link(&self, segments: &[&str], pairs: &[(&str, &str)]) -> String {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url.into()
    }

    /// The hub's pipeline page: environments in order, what is promoted
    /// where (docs/ui-flow.md).
    pub fn pipeline(&self) -> String {
        self.link(&["pipeline"], &[])
    }

    /// The hub's home page (the environment × workload matrix).
    pub fn home(&self) -> String {
        self.link(&[""], &[])
    }

    /// The matrix narrowed to one environment.
    pub fn environment(&self, environment: &str) -> String {
        self.link(&[""], &[("environments", environment)])
    }

    /// The hosts of an environment.
    pub fn hosts(&self, environment: &str) -> String {
        self.link(&["hosts"], &[("environment", environment)])
    }

    /// Everything one host runs.
    pub fn host(&self, host: &str) -> String {
        self.link(&["hosts", host], &[])
    }

    /// A workload's history in an environment, on one hub target.
    pub fn history(&self, workload: &str, environment: &str, target: &str) -> String {
        self.link(
            &["workloads", workload, "history"],
            &[("environment", environment), ("target", target)],
        )
    }
}

/// The agent a target's `agent` connection names, as the agent executor
/// resolves it: by id, or the one non-revoked agent whose labels match the
/// selector. `None` when that is not exactly one agent.
pub fn resolve_agent<'a>(conn: &AgentConnection, agents: &'a [AgentView]) -> Option<&'a AgentView> {
    if let Some(id) = &conn.id {
        return agents.iter().find(|a| &a.id == id);
    }
    let mut matching = agents.iter().filter(|a| {
        a.revoked_at.is_none()
            && conn
                .selector
                .iter()
                .all(|(k, v)| a.labels.get(k) == Some(v))
    });
    match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

fn job_state_class(s: JobState) -> &'static str {
    match s {
        JobState::Completed => "ok",
        JobState::Failed | JobState::RolledBack | JobState::Cancelled => "bad",
        JobState::Pending
        | JobState::Preparing
        | JobState::Running
        | JobState::Completing
        | JobState::RollingBack => "busy",
    }
}

fn task_state_class(s: TaskState) -> &'static str {
    match s {
        TaskState::Succeeded => "ok",
        TaskState::Failed => "bad",
        TaskState::Pending | TaskState::Skipped => "",
        TaskState::Queued
        | TaskState::Dispatched
        | TaskState::Running
        | TaskState::Verifying
        | TaskState::Retrying => "busy",
    }
}

/// `rolling (batch_size 2, max_unavailable 0)`: the strategy's type and
/// settings.
fn strategy_label(s: &Strategy) -> String {
    let settings = serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|o| {
            o.into_iter()
                .filter(|(k, _)| k != "type")
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k} {s}"),
                    other => format!("{k} {other}"),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if settings.is_empty() {
        s.name().to_owned()
    } else {
        format!("{} ({})", s.name(), settings.join(", "))
    }
}

fn job_href(id: &str) -> String {
    let mut path = String::from("/jobs/");
    path.extend(url::form_urlencoded::byte_serialize(id.as_bytes()));
    path
}

fn promotion_href(id: &str) -> String {
    let mut path = String::from("/promotions/");
    path.extend(url::form_urlencoded::byte_serialize(id.as_bytes()));
    path
}

/// The "trace" and "logs" links of a trace, or a dash when neither is
/// known.
fn trace_links(links: &sextant_kit::links::Links) -> Markup {
    html! {
        @if links.trace_url.is_none() && links.logs_url.is_none() {
            span.none { "—" }
        } @else {
            span.links.trace-links {
                @if let Some(url) = &links.trace_url { a href=(url) rel="noopener" { "trace" } }
                @if let Some(url) = &links.logs_url { a href=(url) rel="noopener" { "logs" } }
            }
        }
    }
}

fn opt(v: Option<&str>) -> Markup {
    html! {
        @match v {
            Some(v) => { (v) }
            None => { span.none { "—" } }
        }
    }
}

/// What the page shows of one task's target on the hub.
struct TargetView<'a> {
    spec: Option<&'a TargetSpec>,
    /// The agent's name, for a target of execution model `agent`.
    agent: Option<String>,
}

impl TargetView<'_> {
    fn execution(&self) -> Option<&'static str> {
        self.spec
            .and_then(|s| s.connection().ok())
            .map(|c| c.execution())
    }

    fn hub_target<'t>(&'t self, task: &'t Task) -> &'t str {
        self.spec
            .map_or(task.target.as_str(), TargetSpec::hub_target)
    }
}

/// A job, its tasks and the hub links of their targets.
async fn job_page(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    match render(&state, &caller.tenant, &id).await {
        Ok(Some(page)) => ([(header::CACHE_CONTROL, "no-store")], page).into_response(),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Job not found",
            &format!("No job {id:?}."),
        ),
        Err(e) => {
            tracing::error!(error = %e, job = %id, "Store read failed for the job page");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Error",
                "the orchestrator's store is unavailable",
            )
        }
    }
}

async fn render(
    state: &ApiState,
    tenant: &str,
    id: &str,
) -> Result<Option<Markup>, crate::store::StoreError> {
    let o = &state.orchestrator;
    let store = &o.store;
    let Some(job) = store.job(Some(tenant), id).await? else {
        return Ok(None);
    };
    let tasks = store.tasks(&job.id).await?;
    let rollback_job = store.rollback_job_of(&job.id).await?;
    // A rollback's tasks restore other releases than the job's: by name.
    let mut releases: HashMap<String, String> = HashMap::new();
    for t in &tasks {
        if t.release_id != job.release_id && !releases.contains_key(&t.release_id) {
            let name = store
                .release(tenant, &t.release_id)
                .await?
                .map_or_else(|| t.release_id.clone(), |r| r.name);
            releases.insert(t.release_id.clone(), name);
        }
    }
    let hub = o.hub.as_ref().and_then(|h| HubLinks::new(h.base_url()));

    let specs: HashMap<String, TargetSpec> = store
        .targets(tenant, Some(&job.environment))
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let needs_agents = hub.is_some()
        && tasks.iter().any(|t| {
            specs
                .get(&t.target)
                .is_some_and(|s| s.ssh.is_none() && s.agent.is_some())
        });
    let agents: Vec<AgentView> = match (&o.agents, needs_agents) {
        (Some(channel), true) => channel.views(tenant).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Cannot list agents for the job page's host links");
            Vec::new()
        }),
        _ => Vec::new(),
    };
    let targets: HashMap<&str, TargetView<'_>> = tasks
        .iter()
        .map(|t| {
            let spec = specs.get(&t.target);
            let agent = spec
                .filter(|s| s.ssh.is_none())
                .and_then(|s| s.agent.as_ref())
                .and_then(|conn| resolve_agent(conn, &agents))
                .map(|a| a.name.clone());
            (t.target.as_str(), TargetView { spec, agent })
        })
        .collect();

    let links = crate::api::links::job(&state.links, &job);
    let body = html! {
        (job_summary(&job, rollback_job.as_deref(), &links))
        h2 { "On the hub" }
        @match &hub {
            Some(hub) => {
                p.links {
                    a href=(hub.environment(&job.environment)) { "environment " (job.environment) }
                    a href=(hub.hosts(&job.environment)) { "hosts in " (job.environment) }
                }
                p.small { "Hub: " a href=(hub.home()) { (hub.base()) } }
            }
            None => {
                p.empty { "no hub configured: this orchestrator runs without a hub (--no-hub), so the page has no links to the hub's view of these targets." }
            }
        }
        h2 { "Tasks" }
        @if tasks.is_empty() {
            p.empty { "This job has no tasks yet." }
        } @else {
            (task_table(&tasks, &targets, &releases, hub.as_ref(), &job.environment))
        }
    };
    let title = format!("Job {}", job.id);
    Ok(Some(layout(
        &title,
        hub.as_ref(),
        !job.state.is_terminal(),
        body,
    )))
}

/// A promotion, its trail, its job and its trace.
async fn promotion_page(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let store = &state.orchestrator.store;
    let read = async {
        let Some(p) = store.promotion(&caller.tenant, &id).await? else {
            return Ok(None);
        };
        let events = store.promotion_events(&p.id).await?;
        Ok::<_, crate::store::StoreError>(Some((p, events)))
    };
    match read.await {
        Ok(Some((p, events))) => {
            let links = crate::api::links::promotion(&state.links, &p);
            let hub = state
                .orchestrator
                .hub
                .as_ref()
                .and_then(|h| HubLinks::new(h.base_url()));
            let body = html! {
                div.scroll {
                    table.summary {
                        tbody {
                            tr { th scope="row" { "Id" } td.mono #promotion-id { (p.id) } }
                            tr { th scope="row" { "State" } td { span.status #promotion-state { (p.state.as_str()) } } }
                            tr { th scope="row" { "Release" } td { (p.release) " " span.small.mono { (p.release_id) } } }
                            tr { th scope="row" { "Environment" } td { (p.environment) } }
                            tr { th scope="row" { "Strategy" } td { (strategy_label(&p.strategy)) } }
                            tr { th scope="row" { "Requested" } td { (p.created_at) " by " (p.requested_by) } }
                            @if let Some(reason) = &p.reason {
                                tr { th scope="row" { "Reason" } td { (reason) } }
                            }
                            tr { th scope="row" { "Job" } td.mono { @match &p.job_id {
                                Some(job) => { a href=(job_href(job)) { (job) } }
                                None => { span.none { "—" } }
                            } } }
                            tr { th scope="row" { "Trace" } td #promotion-trace { (trace_links(&links)) } }
                            tr { th scope="row" { "JSON" } td { a href={ "/api/v1" (promotion_href(&p.id)) } { "GET /api/v1" (promotion_href(&p.id)) } } }
                        }
                    }
                }
                h2 { "Events" }
                div.scroll {
                    table.list {
                        thead { tr { th { "At" } th { "Actor" } th { "From" } th { "To" } th { "Detail" } } }
                        tbody {
                            @for e in &events {
                                tr {
                                    td { (e.at) } td { (e.actor) } td { (opt(e.from.as_deref())) }
                                    td { (e.to) } td { (e.detail.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            };
            let page = layout(
                &format!("Promotion {}", p.id),
                hub.as_ref(),
                !p.state.is_terminal(),
                body,
            );
            ([(header::CACHE_CONTROL, "no-store")], page).into_response()
        }
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "Promotion not found",
            &format!("No promotion {id:?}."),
        ),
        Err(e) => {
            tracing::error!(error = %e, promotion = %id, "Store read failed for the promotion page");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Error",
                "the orchestrator's store is unavailable",
            )
        }
    }
}

fn job_summary(job: &Job, rollback_job: Option<&str>, links: &sextant_kit::links::Links) -> Markup {
    html! {
        div.scroll {
            table.summary {
                tbody {
                    tr { th scope="row" { "Id" } td.mono #job-id { (job.id) } }
                    tr { th scope="row" { "Kind" } td { (job.kind.as_str()) } }
                    tr { th scope="row" { "State" } td {
                        span class={ "status " (job_state_class(job.state)) } #job-state { (job.state.as_str()) }
                        @if !job.state.is_terminal() { " " span.small { "(this page reloads every " (REFRESH_SECS) " s)" } }
                    } }
                    tr { th scope="row" { "Release" } td { (job.release) " " span.small.mono { (job.release_id) } } }
                    tr { th scope="row" { "Environment" } td { (job.environment) } }
                    tr { th scope="row" { "Strategy" } td { (strategy_label(&job.strategy)) } }
                    tr { th scope="row" { "Attempts" } td { (job.attempts) " of " (job.max_attempts) } }
                    tr { th scope="row" { "Created" } td { (job.created_at) " by " (job.created_by) } }
                    tr { th scope="row" { "Finished" } td { (opt(job.finished_at.as_deref())) } }
                    @if let Some(error) = &job.error {
                        tr { th scope="row" { "Error" } td.error { (error) } }
                    }
                    @if let Some(promotion) = &job.promotion_id {
                        tr { th scope="row" { "Promotion" } td.mono { a href=(promotion_href(promotion)) { (promotion) } } }
                    }
                    tr { th scope="row" { "Trace" } td #job-trace { (trace_links(links)) } }
                    @if let Some(parent) = &job.parent_job_id {
                        tr { th scope="row" { "Parent job" } td.mono { a href=(job_href(parent)) { (parent) } } }
                    }
                    @if let Some(rollback) = rollback_job {
                        tr { th scope="row" { "Rollback job" } td.mono { a href=(job_href(rollback)) { (rollback) } } }
                    }
                    tr { th scope="row" { "JSON" } td { a href={ "/api/v1" (job_href(&job.id)) } { "GET /api/v1" (job_href(&job.id)) } } }
                }
            }
        }
    }
}

fn task_table(
    tasks: &[Task],
    targets: &HashMap<&str, TargetView<'_>>,
    releases: &HashMap<String, String>,
    hub: Option<&HubLinks>,
    environment: &str,
) -> Markup {
    html! {
        div.scroll {
            table.list.tasks {
                thead { tr {
                    th { "Target" } th { "Component" } th { "Kind" } th { "State" } th { "Attempts" }
                    th { "Error type" } th { "Error" } th { "Started" } th { "Finished" }
                } }
                tbody {
                    @for t in tasks {
                        @let view = targets.get(t.target.as_str());
                        tr data-task=(t.id) data-target=(t.target) {
                            td {
                                (target_cell(t, view, hub, environment))
                            }
                            td {
                                (t.component)
                                div.small.mono title=(t.image) { (t.digest) }
                                @if let Some(name) = releases.get(&t.release_id) {
                                    div.small { "release " span.task-release { (name) } }
                                }
                                @if let (Some(hub), Some(view)) = (hub, view) {
                                    div.small.links {
                                        a href=(hub.history(&t.component, environment, view.hub_target(t))) { "history on the hub" }
                                    }
                                }
                            }
                            td { (t.kind.as_str()) @if let Some(slot) = &t.slot { " " span.small { "slot " (slot) } } }
                            td { span class={ "status " (task_state_class(t.state)) } { (t.state.as_str()) } }
                            td { (t.attempts) " of " (t.max_attempts) }
                            td { (opt(t.error_type.and_then(|e| serde_json::to_value(e).ok()).as_ref().and_then(|v| v.as_str()))) }
                            td.error { (t.error.as_deref().unwrap_or("")) }
                            td { (opt(t.started_at.as_deref())) }
                            td { (opt(t.finished_at.as_deref())) }
                        }
                    }
                }
            }
        }
    }
}

fn target_cell(
    t: &Task,
    view: Option<&TargetView<'_>>,
    hub: Option<&HubLinks>,
    environment: &str,
) -> Markup {
    let execution = view.and_then(TargetView::execution);
    let agent = view.and_then(|v| v.agent.as_deref());
    html! {
        @match (hub, agent) {
            (Some(hub), Some(agent)) => { a href=(hub.host(agent)) { (t.target) } }
            (Some(hub), None) => { a href=(hub.hosts(environment)) { (t.target) } }
            (None, _) => { (t.target) }
        }
        div.small {
            @if let Some(e) = execution { (e) }
            @if let Some(agent) = agent { " · agent " (agent) }
            @if let Some(v) = view { @if v.hub_target(t) != t.target { " · hub target " (v.hub_target(t)) } }
        }
        @if let Some(hub) = hub {
            div.small.links {
                a href=(hub.environment(environment)) { "environment" }
                a href=(hub.hosts(environment)) { "hosts" }
                @if let Some(agent) = agent { a href=(hub.host(agent)) { "host " (agent) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hub_links_encode_paths_and_queries() {
        let hub = HubLinks::new("http://127.0.0.1:8080").expect("a base");
        assert_eq!(hub.base(), "http://127.0.0.1:8080");
        assert_eq!(hub.home(), "http://127.0.0.1:8080/");
        assert_eq!(
            hub.environment("prod eu"),
            "http://127.0.0.1:8080/?environments=prod+eu"
        );
        assert_eq!(
            hub.hosts("a&b"),
            "http://127.0.0.1:8080/hosts?environment=a%26b"
        );
        assert_eq!(hub.host("h 1/x"), "http://127.0.0.1:8080/hosts/h%201%2Fx");
        assert_eq!(
            hub.history("web", "prod", "eu-1"),
            "http://127.0.0.1:8080/workloads/web/history?environment=prod&target=eu-1"
        );
        // A base with a path keeps it.
        let hub = HubLinks::new("https://example.com/sextant/").expect("a base");
        assert_eq!(hub.home(), "https://example.com/sextant/");
        assert_eq!(
            hub.hosts("dev"),
            "https://example.com/sextant/hosts?environment=dev"
        );
        assert!(HubLinks::new("not a url").is_none());
        assert!(HubLinks::new("mailto:a@b").is_none());
    }

    fn agent(id: &str, name: &str, labels: &[(&str, &str)], revoked: bool) -> AgentView {
        AgentView {
            id: id.into(),
            name: name.into(),
            version: "0".into(),
            status: crate::agents::AgentStatus::Online,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            capabilities: Vec::new(),
            registered_at: String::new(),
            revoked_at: revoked.then(String::new),
            last_heartbeat: None,
            heartbeat_age_seconds: None,
            replica: None,
            current_tasks: Vec::new(),
        }
    }

    fn conn(id: Option<&str>, selector: &[(&str, &str)]) -> AgentConnection {
        AgentConnection {
            id: id.map(str::to_owned),
            selector: selector
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            container: None,
        }
    }

    #[test]
    fn agents_resolve_by_id_or_a_single_selector_match() {
        let agents = [
            agent("a1", "web-1", &[("role", "web"), ("zone", "a")], false),
            agent("a2", "web-2", &[("role", "web"), ("zone", "b")], false),
            agent("a3", "old", &[("role", "db")], true),
        ];
        let name = |c: &AgentConnection| resolve_agent(c, &agents).map(|a| a.name.as_str());
        assert_eq!(name(&conn(Some("a2"), &[])), Some("web-2"));
        assert_eq!(name(&conn(Some("nope"), &[])), None);
        assert_eq!(name(&conn(None, &[("zone", "a")])), Some("web-1"));
        assert_eq!(name(&conn(None, &[("role", "web")])), None, "two match");
        assert_eq!(name(&conn(None, &[("role", "db")])), None, "revoked");
    }
}
