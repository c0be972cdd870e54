//! `/workloads/{workload}/history`: a workload's deployments over time.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::{DesiredView, HistoryEntry, UnixNanos};

use crate::read::{ApiState, parse_time};
use crate::store::{HistoryQuery, StateQuery};

use super::drift::job_cell;
use super::layout::{
    filter_form, given, origin_line, page, path_segment, query_string, short_revision,
    source_badge, status_class, when,
};
use super::{PAGE, UiError, viewer};

#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryParams {
    environment: Option<String>,
    application: Option<String>,
    target: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
}

/// A workload's history as a timeline.
pub(super) async fn history(
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
    let mut entries: Vec<HistoryEntry> = rows
        .into_iter()
        .take(PAGE as usize)
        .map(|(e, _)| e)
        .collect();
    state.links.fill(&mut entries);
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
                    HistoryEntry::Desired { at, target, version, revision, hosts, origin } => {
                        li.desired {
                            (when(*at)) " "
                            strong { "Promoted " span.version { (version) } }
                            " to " (target.environment) " / " (target.target)
                            (origin_line(&DesiredView { version: version.clone(), revision: revision.clone(), at: *at, origin: origin.clone() }))
                            div.small {
                                span.status.ok { (hosts.succeeded) " succeeded" } " "
                                span.status.busy { (hosts.in_progress) " in progress" } " "
                                span.status.bad { (hosts.failed) " failed" }
                            }
                        }
                    }
                    HistoryEntry::Observed { at, target, host, reconciler, source, version, revision, status, message, job } => {
                        li class={ "observed " (status_class(*status)) } {
                            (when(*at)) " "
                            (source_badge(*source, reconciler.as_deref())) " "
                            a href={ "/hosts/" (path_segment(host)) } { (host) }
                            " reports " span.version { (version.as_deref().unwrap_or_else(|| short_revision(revision))) }
                            " " span class={ "status " (status_class(*status)) } { (status.as_str().replace('_', " ")) }
                            " in " (target.environment) " / " (target.target)
                            @if let Some(job) = job { " by job " (job_cell(Some(job), state.links.orchestrator.as_deref())) }
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
