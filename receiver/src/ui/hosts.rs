//! `/hosts` and `/hosts/{host}`: the hosts, and what runs on one.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::Source;
use sextant_model::{HostDeployment, UnixNanos};

use crate::read::ApiState;
use crate::store::{CurrentQuery, ListQuery, StateQuery};

use super::drift::deployments_table;
use super::layout::{
    SourceParams, filter_form_with, given, page, path_segment, query_string, source_badge, when,
};
use super::{PAGE, UiError, viewer};

#[derive(Debug, Default, Deserialize)]
pub(super) struct HostsParams {
    environment: Option<String>,
    host: Option<String>,
    after: Option<String>,
    source: Option<String>,
    reconciler: Option<String>,
}

/// All hosts with their last report and status counts.
pub(super) async fn hosts(
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
pub(super) async fn host(
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
    let mut rows: Vec<HostDeployment> = rows.into_iter().map(|(d, _)| d).collect();
    state.links.fill(&mut rows);
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
        (deployments_table(&rows, false, state.links.orchestrator.as_deref()))
    };
    Ok(page(&state, &format!("Host {name}"), "/hosts", body))
}
