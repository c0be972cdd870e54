//! `/compare`: two environments side by side.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::serve::Peer;
use sextant_model::{Comparison, order_environments};

use crate::read::ApiState;
use crate::store::StateQuery;

use super::layout::{filter_form, given, page};
use super::matrix::{env_list, next_link, workload_page};
use super::{UiError, viewer};

#[derive(Debug, Default, Deserialize)]
pub(super) struct CompareParams {
    environments: Option<String>,
    application: Option<String>,
    workload: Option<String>,
    /// The workload to continue after (a page's "next" link).
    after: Option<String>,
}

/// Environments side by side.
pub(super) async fn compare(
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
