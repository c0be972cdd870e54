//! `/actions/{action}`: `GET` shows what the action will do (which
//! release, environment, targets) with a form; `POST` checks the form's
//! CSRF token, asks the orchestrator's API as the signed-in person and
//! leads to the result, or shows the API's refusal in its words.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::read::ApiState;

use super::super::UiError;
use super::super::layout::{page, path_segment, short_revision};
use super::csrf::new_session;
use super::{Person, SESSION_COOKIE, api_error, digest, state_badge};

/// The actions, with the parameter each needs.
const ACTIONS: [(&str, &str); 9] = [
    ("promote", "release"),
    ("approve", "promotion"),
    ("reject", "promotion"),
    ("gate-open", "promotion"),
    ("gate-close", "promotion"),
    ("cancel", "promotion"),
    ("rollback", "job"),
    ("revoke", "agent"),
    ("agent-token", ""),
];

type Params = HashMap<String, String>;

fn param<'p>(params: &'p Params, name: &str) -> Result<&'p str, UiError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                format!("this action needs `{name}`: follow a button on the page instead"),
            )
        })
}

fn known(action: &str) -> Result<(), UiError> {
    if ACTIONS.iter().any(|(a, _)| *a == action) {
        Ok(())
    } else {
        Err(UiError::Status(
            StatusCode::NOT_FOUND,
            format!("no action {action:?}"),
        ))
    }
}

/// A target list in words.
fn targets_line(targets: &[String]) -> Markup {
    html! {
        @if targets.is_empty() { "no targets" } @else {
            (targets.len()) " target" @if targets.len() != 1 { "s" } ": "
            @for (i, t) in targets.iter().enumerate() { @if i > 0 { ", " } strong { (t) } }
        }
    }
}

/// What the action will do, in words, read from the API.
async fn describe(person: &Person, action: &str, params: &Params) -> Result<Markup, UiError> {
    let api = &person.api;
    Ok(match action {
        "promote" => {
            let environment = param(params, "environment")?;
            let release = api
                .release(param(params, "release")?)
                .await
                .map_err(api_error)?;
            let targets = api.targets(environment).await.map_err(api_error)?;
            let names: Vec<String> = targets.into_iter().map(|t| t.name).collect();
            html! {
                p { "Promote release " strong { (release.name) } " into " strong { (environment) } "." }
                p { "Its job will deploy to " (targets_line(&names)) ", once the environment's gates and approvals allow it." }
                ul { @for c in &release.components { li { (c.component) " at " (digest(&c.digest)) } } }
            }
        }
        "approve" | "reject" | "gate-open" | "gate-close" | "cancel" => {
            let p = api
                .promotion(param(params, "promotion")?)
                .await
                .map_err(api_error)?
                .promotion;
            let targets = api.targets(&p.environment).await.map_err(api_error)?;
            let names: Vec<String> = targets.into_iter().map(|t| t.name).collect();
            let what = match action {
                "approve" => "Approve".to_owned(),
                "reject" => "Reject".to_owned(),
                "cancel" => "Cancel".to_owned(),
                "gate-open" => format!("Open the manual gate {} of", param(params, "gate")?),
                _ => format!("Close the manual gate {} of", param(params, "gate")?),
            };
            html! {
                p { (what) " the promotion of " strong { (p.release) } " into " strong { (p.environment) } ", requested by " (p.requested_by) "." }
                p { "It is " (state_badge(&p.state)) "; its job deploys to " (targets_line(&names)) "." }
                @if action == "approve" { p.small { "Your approval is recorded with your name. The orchestrator refuses it if you requested this promotion." } }
            }
        }
        "rollback" => {
            let job = api.job(param(params, "job")?).await.map_err(api_error)?;
            let mut touched: Vec<String> = job
                .tasks
                .iter()
                .filter(|t| t.started_at.is_some())
                .map(|t| t.target.clone())
                .collect();
            touched.dedup();
            html! {
                p { "Roll back job " code { (short_revision(&job.job.id)) } " (" (job.job.release) " into " strong { (job.job.environment) } ", " (state_badge(&job.job.state)) ")." }
                p { "A rollback job restores what ran before on " (targets_line(&touched)) ":" }
                ul { @for t in job.tasks.iter().filter(|t| t.started_at.is_some()) {
                    li { (t.target) " / " (t.component) ": back to "
                        @match &t.previous_digest { Some(d) => { (digest(d)) } None => { "nothing (it had no earlier version)" } } }
                } }
            }
        }
        "revoke" => {
            let agent = param(params, "agent")?;
            let agents = api.agents().await.map_err(api_error)?;
            let a = agents
                .iter()
                .find(|a| a.id == agent || a.name == agent)
                .ok_or_else(|| {
                    UiError::Status(StatusCode::NOT_FOUND, format!("no agent {agent:?}"))
                })?;
            html! {
                p { "Revoke agent " strong { (a.name) } " (" (state_badge(&a.status)) ", version " (a.version) ")." }
                p { "Its credentials stop working at once; targets it serves get no more tasks until another agent serves them." }
            }
        }
        _ => html! {
            p { "Create a one-time registration token for a new agent of your tenant. It is shown once, on the next page." }
            label { "Valid for (hours) " input type="number" name="ttl_hours" min="1" max="168" value="1"; }
        },
    })
}

pub(super) async fn confirm(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, UiError> {
    known(&action)?;
    let person = Person::of(&state, &headers)?;
    let what = describe(&person, &action, &params).await?;
    // A browser without a session gets one, so its form has a token.
    let (session, set_cookie) = match &person.session {
        Some(s) => (s.clone(), None),
        None => {
            let s = new_session();
            let cookie = super::super::set_cookie(&state, SESSION_COOKIE, &s);
            (s, Some(cookie))
        }
    };
    let csrf = state.csrf.token(&session);
    let label = match action.as_str() {
        "promote" => "Promote",
        "approve" => "Approve",
        "reject" => "Reject",
        "gate-open" => "Open the gate",
        "gate-close" => "Close the gate",
        "cancel" => "Cancel the promotion",
        "rollback" => "Roll back",
        "revoke" => "Revoke",
        _ => "Create the token",
    };
    let body = html! {
        form.confirm method="post" action={ "/actions/" (action) } {
            (what)
            @for (k, v) in &params { input type="hidden" name=(k) value=(v); }
            input type="hidden" name="csrf" value=(csrf);
            @if matches!(action.as_str(), "approve" | "reject" | "gate-open" | "gate-close") {
                label { "Comment (optional) " input type="text" name="comment" maxlength="500"; }
            }
            div.actions {
                button type="submit" class=[(matches!(action.as_str(), "reject" | "cancel" | "rollback" | "revoke")).then_some("danger")] { (label) }
                a href="javascript:history.back()" { "Go back" }
            }
        }
    };
    let markup = page(&state, &format!("Confirm: {label}"), "", body);
    Ok(match set_cookie {
        Some(c) => ([(header::SET_COOKIE, c)], markup).into_response(),
        None => markup.into_response(),
    })
}

pub(super) async fn perform(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(params): Form<Params>,
) -> Result<Response, UiError> {
    known(&action)?;
    let person = Person::of(&state, &headers)?;
    let valid = match (&person.session, params.get("csrf")) {
        (Some(session), Some(token)) => state.csrf.verify(session, token),
        _ => false,
    };
    if !valid {
        return Err(UiError::Status(
            StatusCode::FORBIDDEN,
            "this form has expired or did not come from this hub (CSRF check failed): \
             open the page again and repeat the action"
                .into(),
        ));
    }
    let api = &person.api;
    let comment = params
        .get("comment")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty());
    let to_promotion =
        |id: &str| Redirect::to(&format!("/promotions/{}", path_segment(id))).into_response();
    Ok(match action.as_str() {
        "promote" => {
            let p = api
                .promote(
                    param(&params, "release")?,
                    param(&params, "environment")?,
                    None,
                )
                .await
                .map_err(api_error)?;
            to_promotion(&p.promotion.id)
        }
        "approve" | "reject" => {
            let id = param(&params, "promotion")?;
            api.decide(id, action == "approve", comment)
                .await
                .map_err(api_error)?;
            to_promotion(id)
        }
        "gate-open" | "gate-close" => {
            let id = param(&params, "promotion")?;
            api.gate(id, param(&params, "gate")?, action == "gate-open", comment)
                .await
                .map_err(api_error)?;
            to_promotion(id)
        }
        "cancel" => {
            let id = param(&params, "promotion")?;
            api.cancel(id).await.map_err(api_error)?;
            to_promotion(id)
        }
        "rollback" => {
            let job = api
                .rollback(param(&params, "job")?)
                .await
                .map_err(api_error)?;
            let to = job.rollback_job_id.as_deref().unwrap_or(&job.job.id);
            Redirect::to(&format!("/jobs/{}", path_segment(to))).into_response()
        }
        "revoke" => {
            api.revoke_agent(param(&params, "agent")?)
                .await
                .map_err(api_error)?;
            Redirect::to("/agents").into_response()
        }
        _ => {
            let hours: u64 = params
                .get("ttl_hours")
                .and_then(|h| h.trim().parse().ok())
                .filter(|h| (1..=168).contains(h))
                .ok_or_else(|| {
                    UiError::Status(
                        StatusCode::BAD_REQUEST,
                        "valid for: a whole number of hours from 1 to 168".into(),
                    )
                })?;
            let token = api
                .create_agent_token(Some(hours * 3600))
                .await
                .map_err(api_error)?;
            page(
                &state,
                "Registration token",
                "/agents",
                html! {
                    p { "Give this token to the new agent (" code { "sextant-agent --registration-token …" } "). It is shown only now and works once, until " (super::at(&token.expires_at)) "." }
                    pre.token #registration-token { (token.token) }
                    p { a href="/agents" { "Back to the agents" } }
                },
            )
            .into_response()
        }
    })
}
