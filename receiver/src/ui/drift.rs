//! `/drift`: deployments that differ from what was desired, failed or
//! went stale.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::HostDeployment;

use crate::read::ApiState;
use crate::store::{CurrentQuery, StateQuery};

use super::layout::{
    SourceParams, filter_form_with, given, origin_line, page, path_segment, query_string,
    reason_label, short_revision, source_badge, status_class, when,
};
use super::{PAGE, UiError, viewer};

#[derive(Debug, Default, Deserialize)]
pub(super) struct DriftParams {
    environment: Option<String>,
    workload: Option<String>,
    host: Option<String>,
    cursor: Option<String>,
    source: Option<String>,
    reconciler: Option<String>,
}

/// The job column's cell: a link to the job's page in this UI when the
/// hub knows the orchestrator, else the job id.
pub(super) fn job_cell(job: Option<&str>, orchestrator: Option<&str>) -> Markup {
    html! {
        @match (job, orchestrator) {
            (Some(job), Some(_)) => {
                a.job href={ "/jobs/" (path_segment(job)) } title={ "job " (job) } { (short_revision(job)) }
            }
            (Some(job), None) => { span title=(job) { (short_revision(job)) } }
            (None, _) => { span.none { "—" } }
        }
    }
}

pub(super) fn deployments_table(
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
                            td { @match &d.desired { Some(v) => { (v.version) (origin_line(v)) }, None => { span.none { "—" } } } }
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
pub(super) async fn drift(
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
    let mut rows: Vec<HostDeployment> = rows
        .into_iter()
        .take(PAGE as usize)
        .map(|(d, _)| d)
        .collect();
    state.links.fill(&mut rows);
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
            (deployments_table(&rows, true, state.links.orchestrator.as_deref()))
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
