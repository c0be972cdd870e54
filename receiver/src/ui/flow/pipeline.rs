//! `/pipeline`: per application, the environments in their configured order
//! as columns; in each, the release promoted there with its state and age,
//! and what the hub observes there: hosts on the promoted digests, hosts in
//! all, drifting rows.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::HeaderMap;
use maud::{Markup, html};
use sextant_kit::orchestrator::{PageQuery, PromotionView, Release};

use crate::read::ApiState;
use crate::store::StateQuery;

use super::super::layout::{page, path_segment};
use super::super::{UiError, viewer};
use super::{Person, api_error, at, state_badge};

/// Promotions read per environment to find each application's latest.
const PER_ENVIRONMENT: u32 = 200;

/// What the hub sees of one application in one environment.
#[derive(Debug, Default, Clone)]
struct Observed {
    hosts: u64,
    on_release: u64,
    drifting: u64,
    /// Workloads counted: more than one, and `hosts` counts
    /// (host, component) pairs.
    workloads: std::collections::BTreeSet<String>,
}

/// The release's application(s): its components' hub applications.
fn applications(release: &Release, apps: &HashMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = release
        .components
        .iter()
        .map(|c| {
            apps.get(&c.component)
                .cloned()
                .unwrap_or_else(|| "default".into())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(super) async fn pipeline(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let me = person.whoami().await?;
    let (environments, components) =
        tokio::try_join!(api.environments(), api.components()).map_err(api_error)?;
    let mut environments = environments;
    environments.sort_by_key(|e| e.order.unwrap_or(i64::MAX));
    let apps: HashMap<String, String> = components
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.application.clone().unwrap_or_else(|| "default".into()),
            )
        })
        .collect();
    // The newest promotions into each environment, read side by side.
    let page_query = PageQuery {
        limit: Some(PER_ENVIRONMENT),
        before: None,
    };
    let reads = environments
        .iter()
        .map(|e| api.promotions(&[], Some(&e.name), None, &page_query));
    let per_environment = futures::future::try_join_all(reads)
        .await
        .map_err(api_error)?;
    // The releases they name: the newest in one read, older ones each once.
    let newest = api
        .releases(&PageQuery {
            limit: Some(1000),
            before: None,
        })
        .await
        .map_err(api_error)?;
    let mut releases: HashMap<String, Release> =
        newest.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut missing: Vec<&str> = per_environment
        .iter()
        .flatten()
        .map(|p| p.release_id.as_str())
        .filter(|id| !releases.contains_key(*id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let older = futures::future::try_join_all(missing.iter().map(|id| api.release(id)))
        .await
        .map_err(api_error)?;
    releases.extend(older.into_iter().map(|r| (r.id.clone(), r)));
    // (application, environment) → its latest promotion.
    let mut cells: BTreeMap<String, HashMap<String, &PromotionView>> = BTreeMap::new();
    for (env, promotions) in environments.iter().zip(&per_environment) {
        for p in promotions {
            let Some(release) = releases.get(&p.release_id) else {
                continue;
            };
            for app in applications(release, &apps) {
                cells
                    .entry(app)
                    .or_default()
                    .entry(env.name.clone())
                    .or_insert(p);
            }
        }
    }
    for app in apps.values() {
        cells.entry(app.clone()).or_default();
    }
    // What a waiting promotion waits for: its approvals counted now, and
    // the gates its last "waiting for" event named. Only waiting cells are
    // read.
    let waiting: Vec<&str> = cells
        .values()
        .flat_map(|by_env| by_env.values())
        .filter(|p| p.state == "awaiting_approval")
        .map(|p| p.id.as_str())
        .collect();
    let required: HashMap<&str, u32> = environments
        .iter()
        .map(|e| (e.name.as_str(), e.required_approvals))
        .collect();
    let waits_for: HashMap<String, String> =
        futures::future::try_join_all(waiting.iter().map(|id| api.promotion(id)))
            .await
            .map_err(api_error)?
            .into_iter()
            .map(|d| {
                let approved = d
                    .approvals
                    .iter()
                    .filter(|a| a.decision == "approve")
                    .count();
                let needed = required
                    .get(d.promotion.environment.as_str())
                    .copied()
                    .unwrap_or(0);
                let mut parts: Vec<String> = Vec::new();
                if approved < needed as usize {
                    parts.push(format!("{approved} of {needed} approvals"));
                }
                let last = d
                    .events
                    .last()
                    .and_then(|e| e.detail.as_deref())
                    .unwrap_or("");
                parts.extend(
                    last.strip_prefix("waiting for ")
                        .unwrap_or("")
                        .split("; ")
                        .filter(|part| !part.is_empty() && !part.ends_with(" approvals"))
                        .map(str::to_owned),
                );
                (d.promotion.id, format!("waiting for {}", parts.join("; ")))
            })
            .collect();
    // What the hub observes, for a person who may read it.
    let hub = viewer(&state, &headers, None).ok();
    let mut observed: HashMap<(String, String), Observed> = HashMap::new();
    if let Some(principal) = &hub {
        for (app, by_env) in &cells {
            let filter = StateQuery {
                application: Some(app.clone()),
                ..StateQuery::default()
            };
            let summaries = state.store.summaries(&principal.tenant, &filter).await?;
            let drift = state
                .store
                .drift_summary(&principal.tenant, &filter, state.stale_before())
                .await?;
            for s in &summaries {
                let digests: Vec<&str> = by_env
                    .get(&s.at.environment)
                    .and_then(|p| releases.get(&p.release_id))
                    .map(|r| r.components.iter().map(|c| c.digest.as_str()).collect())
                    .unwrap_or_default();
                let o = observed
                    .entry((app.clone(), s.at.environment.clone()))
                    .or_default();
                o.hosts += s.total_hosts;
                o.workloads.insert(s.at.workload.clone());
                o.on_release += s
                    .deployed
                    .iter()
                    .filter(|g| digests.contains(&g.revision.as_str()))
                    .map(|g| g.hosts)
                    .sum::<u64>();
            }
            for d in &drift {
                observed
                    .entry((app.clone(), d.environment.clone()))
                    .or_default()
                    .drifting += d.rows;
            }
        }
    }
    let next_of: HashMap<&str, &str> = environments
        .windows(2)
        .map(|w| (w[0].name.as_str(), w[1].name.as_str()))
        .collect();
    let body = html! {
        p.small { "Signed in to the orchestrator as " strong { (me.actor) } " (tenant " (me.tenant) "). "
            "Each column is an environment in promotion order: the release promoted there, its state, and what the hub sees run there." }
        @if environments.is_empty() {
            p { "The orchestrator has no environments yet: apply them with " code { "sextant apply -f environments.yaml" } "." }
        }
        @if hub.is_none() {
            p.small.error { "Your token cannot read the hub, so what runs where is not shown." }
        }
        div.scroll {
            table.pipeline {
                thead { tr {
                    th scope="col" { "Application" }
                    @for e in &environments {
                        th scope="col" { (e.name) @if e.required_approvals > 0 { span.small { " · " (e.required_approvals) " approval" @if e.required_approvals > 1 { "s" } } } }
                    }
                } }
                tbody {
                    @for (app, by_env) in &cells {
                        tr {
                            th scope="row" { a href={ "/?application=" (path_segment(app)) } { (app) } }
                            @for e in &environments {
                                @let p = by_env.get(&e.name);
                                @let o = observed.get(&(app.clone(), e.name.clone()));
                                td.stage data-environment=(e.name) {
                                    @match p {
                                        Some(p) => {
                                            div { a.release href={ "/releases/" (path_segment(&p.release_id)) } { (p.release) } }
                                            div { a href={ "/promotions/" (path_segment(&p.id)) } { (state_badge(&p.state)) } }
                                            @if let Some(why) = waits_for.get(&p.id) { div.small.waits { (why) } }
                                            div.small { (at(&p.updated_at)) }
                                            @if p.state == "deployed" && me.can_change {
                                                @if let Some(next) = next_of.get(e.name.as_str()).filter(|n| by_env.get(**n).is_none_or(|q| q.release_id != p.release_id)) {
                                                    a.button href={ "/actions/promote?release=" (path_segment(&p.release_id)) "&environment=" (path_segment(next)) } { "Promote to " (next) " →" }
                                                }
                                            }
                                        }
                                        None => { span.small { "nothing promoted" } }
                                    }
                                    @if let Some(o) = o.filter(|o| o.hosts > 0) {
                                        div.small.observed {
                                            @if p.is_some() { (o.on_release) " of " }
                                            (o.hosts)
                                            @if o.workloads.len() > 1 { " (host, component) pairs" } @else { " host" @if o.hosts != 1 { "s" } }
                                            @if p.is_some() { " run it" }
                                            @if o.drifting > 0 { ", " a.drifting href={ "/drift?environment=" (path_segment(&e.name)) "&application=" (path_segment(app)) } { (o.drifting) " drifting" } }
                                        }
                                    } @else if hub.is_some() {
                                        div.small.observed { "no hosts report" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&state, "Pipeline", "/pipeline", body))
}
