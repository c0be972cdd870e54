//! `/agents`: every agent of the person's tenant with its status, version,
//! labels, last heartbeat and current tasks; revoke one, or create a
//! registration token for a new one.

use axum::extract::State;
use axum::http::HeaderMap;
use maud::{Markup, html};

use crate::read::ApiState;

use super::super::UiError;
use super::super::layout::{page, path_segment, short_revision};
use super::{Person, api_error, at, state_badge};

/// "42 s", "3 min", "2 h".
fn age(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s ago"),
        s if s < 7200.0 => format!("{:.0} min ago", s / 60.0),
        s => format!("{:.0} h ago", s / 3600.0),
    }
}

pub(super) async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let person = Person::of(&state, &headers)?;
    let api = &person.api;
    let (me, agents) = tokio::try_join!(api.whoami(), api.agents()).map_err(api_error)?;
    let body = html! {
        @if me.can_change {
            div.actions { a.button href="/actions/agent-token" { "Create a registration token…" } }
        }
        @if agents.is_empty() { p { "No agents have registered." } } @else {
            div.scroll { table.agents {
                thead { tr {
                    th scope="col" { "Agent" } th scope="col" { "Status" } th scope="col" { "Version" } th scope="col" { "Labels" }
                    th scope="col" { "Last heartbeat" } th scope="col" { "Current tasks" } th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody { @for a in &agents {
                    tr data-agent=(a.name) {
                        td { (a.name) div.small { code { (short_revision(&a.id)) } } }
                        td { (state_badge(&a.status)) @if let Some(r) = &a.revoked_at { div.small { "revoked " (at(r)) } } }
                        td { (a.version) }
                        td { @for (k, v) in &a.labels { span.label { (k) "=" (v) } " " } }
                        td { @match (&a.last_heartbeat, a.heartbeat_age_seconds) {
                            (Some(t), Some(s)) => { (at(t)) div.small { (age(s)) } }
                            (Some(t), None) => { (at(t)) }
                            _ => { "never" }
                        } }
                        td { @if a.current_tasks.is_empty() { "idle" } @else {
                            ul.plain { @for t in &a.current_tasks {
                                li { (t.kind) " " (t.state) @if !t.task_id.is_empty() { " · task " code { (short_revision(&t.task_id)) } } }
                            } }
                        } }
                        td { @if me.can_change && a.status != "revoked" {
                            a.button.danger href={ "/actions/revoke?agent=" (path_segment(&a.id)) } aria-label={ "Revoke " (a.name) } { "Revoke…" }
                        } }
                    }
                } }
            } }
        }
    };
    Ok(page(&state, "Agents", "/agents", body))
}
