//! `/promotions`, `/promotions/{id}` and `/inbox`: promotions newest first
//! (by state and environment, a page at a time); one promotion's timeline,
//! gates with their reasons, approvals N of M, decision record and job,
//! with the actions its state allows; and the promotions waiting for the
//! signed-in person's approval.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use sextant_kit::orchestrator::{EnvironmentSpec, PageQuery, PromotionView};

use crate::read::ApiState;

use super::super::layout::{page, path_segment, query_string};
use super::super::{PAGE, UiError};
use super::{Person, api_error, at, next_link, state_badge, words};

/// The promotion states, in the order a promotion moves through them.
const STATES: [&str; 9] = [
    "requested",
    "awaiting_approval",
    "approved",
    "deploying",
    "deployed",
    "failed",
    "rolled_back",
    "rejected",
    "cancelled",
];

/// States a promotion does not leave.
fn finished(state: &str) -> bool {
    matches!(
        state,
        "deployed" | "failed" | "rolled_back" | "rejected" | "cancelled"
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    state: Option<String>,
    environment: Option<String>,
    before: Option<String>,
}

fn table(promotions: &[PromotionView]) -> Markup {
    html! {
        div.scroll { table.promotions {
            thead { tr {
                th scope="col" { "Promotion" } th scope="col" { "Release" } th scope="col" { "Environment" }
                th scope="col" { "State" } th scope="col" { "Requested by" } th scope="col" { "Updated" }
            } }
            tbody { @for p in promotions {
                tr data-promotion=(p.id) {
                    td { a href={ "/promotions/" (path_segment(&p.id)) } { (super::super::layout::short_revision(&p.id)) } }
                    td { a href={ "/releases/" (path_segment(&p.release_id)) } { (p.release) } }
                    td { (p.environment) }
                    td { (state_badge(&p.state)) }
                    td { (p.requested_by) }
                    td { (at(&p.updated_at)) }
                }
            } }
        } }
    }
}

pub(super) async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let wanted = q.state.as_deref().filter(|s| !s.is_empty());
    let environment = q.environment.as_deref().filter(|s| !s.is_empty());
    let promotions = person
        .api
        .promotions(
            wanted.as_slice(),
            environment,
            None,
            &PageQuery {
                limit: Some(PAGE),
                before: q.before.clone().filter(|b| !b.is_empty()),
            },
        )
        .await
        .map_err(api_error)?;
    let full = promotions.len() == PAGE as usize;
    let keep =
        query_string(&[("state", wanted), ("environment", environment)]).replacen('?', "&", 1);
    let body = html! {
        form.filters method="get" action="/promotions" {
            label { "State " select name="state" {
                option value="" selected[wanted.is_none()] { "any" }
                @for s in STATES { option value=(s) selected[wanted == Some(s)] { (words(s)) } }
            } }
            label { "Environment " input type="text" name="environment" value=[environment]; }
            button type="submit" { "Filter" }
            a href="/promotions" { "Clear" }
        }
        @if promotions.is_empty() { p { "No promotions match." } } @else {
            (table(&promotions))
            (next_link("/promotions", full, promotions.last().map(|p| p.id.as_str()), &keep))
        }
    };
    Ok(page(&state, "Promotions", "/promotions", body))
}

/// Promotions awaiting approval that the signed-in person may approve: not
/// their own, and in an environment whose approvers name them (or name
/// no one).
pub(super) async fn inbox(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let (me, environments, waiting) = tokio::try_join!(
        api.whoami(),
        api.environments(),
        api.promotions(
            &["awaiting_approval"],
            None,
            None,
            &PageQuery {
                limit: Some(1000),
                before: None
            }
        )
    )
    .map_err(api_error)?;
    let may_approve = |p: &PromotionView| {
        let env = environments.iter().find(|e| e.name == p.environment);
        let own = p.requested_by == me.actor;
        env.map_or(!own, |e| {
            e.required_approvals > 0
                && !(own && e.separation_of_duties)
                && (e.approvers.is_empty() || e.approvers.contains(&me.actor))
        })
    };
    let (mine, others): (Vec<PromotionView>, Vec<PromotionView>) =
        waiting.into_iter().partition(|p| may_approve(p));
    let body = html! {
        p { "Promotions waiting for an approval from " strong { (me.actor) } ", across applications." }
        @if mine.is_empty() { p.empty { "Nothing is waiting for you." } } @else {
            (table(&mine))
        }
        @if !others.is_empty() {
            h2 { "Waiting for someone else" }
            p.small { "Your own promotions, environments whose approvers do not include you, and promotions waiting only for a gate." }
            (table(&others))
        }
    };
    Ok(page(&state, "Approvals inbox", "/inbox", body))
}

/// A gate's result from the decision record.
fn gate_rows(record: &Value) -> Vec<(String, String, String)> {
    record["gates"]
        .as_array()
        .map(|gates| {
            gates
                .iter()
                .map(|g| {
                    let s = |k: &str| g[k].as_str().unwrap_or("").to_owned();
                    (s("gate"), s("decision"), s("reason"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The manual gates of an environment.
fn manual_gates(env: Option<&EnvironmentSpec>) -> Vec<String> {
    env.map(|e| {
        e.gates
            .iter()
            .filter(|g| g["type"] == "manual")
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect()
    })
    .unwrap_or_default()
}

pub(super) async fn detail(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let (me, environments, detail) =
        tokio::try_join!(api.whoami(), api.environments(), api.promotion(&id))
            .map_err(api_error)?;
    let p = &detail.promotion;
    let env = environments.iter().find(|e| e.name == p.environment);
    let required = env.map_or(0, |e| e.required_approvals);
    let approved: Vec<_> = detail
        .approvals
        .iter()
        .filter(|a| a.decision == "approve")
        .collect();
    let refused: Vec<_> = detail
        .approvals
        .iter()
        .filter(|a| a.decision != "approve")
        .collect();
    let open = !finished(&p.state);
    let own = p.requested_by == me.actor && env.is_none_or(|e| e.separation_of_duties);
    let can_decide = me.can_change
        && p.state == "awaiting_approval"
        && !own
        && !detail.approvals.iter().any(|a| a.approver == me.actor);
    let gates = manual_gates(env);
    let action = |verb: &str| format!("/actions/{verb}?promotion={}", path_segment(&p.id));
    let body = html! {
        dl.facts {
            dt { "Release" } dd { a href={ "/releases/" (path_segment(&p.release_id)) } { (p.release) } }
            dt { "Environment" } dd { (p.environment) }
            dt { "State" } dd #promotion-state { (state_badge(&p.state)) }
            dt { "Requested by" } dd { (p.requested_by) " " (at(&p.created_at)) }
            @if let Some(reason) = &p.reason { dt { "Reason" } dd { (reason) } }
            dt { "Approvals" } dd #approvals {
                (approved.len()) " of " (required) " needed"
                @if !approved.is_empty() { ": " @for (i, a) in approved.iter().enumerate() { @if i > 0 { ", " } (a.approver) } }
                @for r in &refused { " · rejected by " (r.approver) @if let Some(c) = &r.comment { " (" (c) ")" } }
            }
            @if let Some(job) = &p.job_id { dt { "Job" } dd { a.job href={ "/jobs/" (path_segment(job)) } { (super::super::layout::short_revision(job)) } } }
            @if let Some(url) = &p.trace_url { dt { "Trace" } dd { a href=(url) { "trace" } } }
        }
        @if me.can_change && open {
            div.actions {
                @if can_decide {
                    a.button href=(action("approve")) { "Approve…" }
                    a.button.danger href=(action("reject")) { "Reject…" }
                } @else if p.state == "awaiting_approval" && own {
                    p.small { "You requested this promotion, so someone else approves it." }
                }
                @for g in &gates {
                    a.button href={ (action("gate-open")) "&gate=" (path_segment(g)) } { "Open gate " (g) "…" }
                    a.button href={ (action("gate-close")) "&gate=" (path_segment(g)) } { "Close gate " (g) "…" }
                }
                a.button.danger href=(action("cancel")) { "Cancel…" }
            }
        }
        h2 { "Timeline" }
        ol.timeline.events {
            @for e in &detail.events {
                li class=(if e.to == "failed" || e.to == "rejected" { "bad" } else if e.to == "deployed" { "ok" } else { "busy" }) {
                    (at(&e.at)) " · " strong { (words(&e.to)) }
                    @if let Some(from) = &e.from { " from " (words(from)) }
                    " · by " span.actor { (e.actor) }
                    @if let Some(d) = &e.detail { div.small { (d) } }
                }
            }
        }
        @if let Some(d) = &detail.decision {
            h2 { "Decision" }
            p { "Outcome " (state_badge(&d.outcome)) " " (at(&d.decided_at)) }
            @let rows = gate_rows(&d.record);
            @if !rows.is_empty() {
                div.scroll { table.gates {
                    thead { tr { th scope="col" { "Gate" } th scope="col" { "Result" } th scope="col" { "Reason" } } }
                    tbody { @for (gate, decision, reason) in &rows {
                        tr { td { (gate) } td { (state_badge(decision)) } td { (reason) } }
                    } }
                } }
            }
        }
    };
    Ok(page(
        &state,
        &format!("Promotion of {} into {}", p.release, p.environment),
        "/promotions",
        body,
    ))
}
