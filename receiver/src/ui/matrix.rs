//! Home: the environment × workload matrix, a page of workloads at a time.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::{TargetSummary, order_environments};

use crate::read::ApiState;
use crate::store::{PAGE_TARGETS, StateQuery, WorkloadKey, plan_workload_page};

use super::layout::{
    SourceParams, filter_form_with, given, page, path_segment, query_string, short_revision,
    source_badge, status_class,
};
use super::{UiError, viewer};

#[derive(Debug, Default, Deserialize)]
pub(super) struct MatrixParams {
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
pub(super) async fn workload_page(
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
pub(super) fn next_link(
    path: &str,
    pairs: &[(&str, Option<&str>)],
    next: Option<&WorkloadKey>,
) -> Markup {
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

pub(super) fn env_list(s: Option<&str>) -> Vec<String> {
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
pub(super) async fn matrix(
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
    let (summaries, drift) = summaries_and_drift(&state, &principal.tenant, &filter).await?;
    let (envs, hidden) = matrix_columns(&state, &summaries, p.environments.as_deref());
    let rows = matrix_rows(summaries);
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
            (matrix_table(&envs, &rows, &drift))
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

/// The summaries of a page's workloads and their drift counts; nothing
/// when the page has no workloads.
async fn summaries_and_drift(
    state: &ApiState,
    tenant: &str,
    filter: &StateQuery,
) -> Result<(Vec<TargetSummary>, DriftCounts), UiError> {
    Ok(match filter.workloads {
        Some(_) => {
            let summaries =
                async { Ok::<_, UiError>(state.store.summaries(tenant, filter).await?) };
            let drift = drift_counts(state, tenant, filter.clone());
            // Both at once on PostgreSQL, each on its own pooled connection.
            if state.store.backend() == "postgres" {
                futures::try_join!(summaries, drift)?
            } else {
                (summaries.await?, drift.await?)
            }
        }
        None => (Vec::new(), DriftCounts::new()),
    })
}

/// The matrix's environment columns, in the configured order and limited
/// to the `environments` asked for, with how many were left out.
fn matrix_columns(
    state: &ApiState,
    summaries: &[TargetSummary],
    environments: Option<&str>,
) -> (Vec<String>, usize) {
    let wanted = env_list(environments);
    let mut envs: Vec<String> = summaries.iter().map(|s| s.at.environment.clone()).collect();
    envs.sort();
    envs.dedup();
    envs.retain(|e| wanted.is_empty() || wanted.contains(e));
    order_environments(&mut envs, |e| e.as_str(), &state.environments);
    // Environment names are the senders' choice: the page shows a bounded
    // number of columns whatever they invent, and says what it left out.
    let hidden = envs.len().saturating_sub(MATRIX_ENVIRONMENTS);
    envs.truncate(MATRIX_ENVIRONMENTS);
    (envs, hidden)
}

/// The matrix's rows: per (workspace, application, workload), the targets
/// in each environment.
type MatrixRows = BTreeMap<(String, String, String), HashMap<String, Vec<TargetSummary>>>;

fn matrix_rows(summaries: Vec<TargetSummary>) -> MatrixRows {
    let mut rows = MatrixRows::new();
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
    rows
}

/// The matrix itself: a row per workload, a cell per environment with its
/// targets, drift flags and a link to the history.
fn matrix_table(envs: &[String], rows: &MatrixRows, drift: &DriftCounts) -> Markup {
    html! {
        div.scroll {
            table.matrix {
                thead { tr {
                    th { "Workload" }
                    @for env in envs { th { (env) } }
                } }
                tbody {
                    @for ((workspace, application, workload), cells) in rows {
                        tr {
                            th scope="row" {
                                span.app { (application) @if workspace != "default" { " · " (workspace) } }
                                br;
                                (workload)
                            }
                            @for env in envs {
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
    }
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
