//! `/login`: the form that signs a person in. It takes a token the hub
//! accepts for reading, or one the orchestrator accepts (an approver who
//! only deploys), and keeps it in the `sextant_token` cookie. A hub without
//! tokens asks for a name instead, which the flow pages send to an
//! orchestrator without tokens as the actor (`sextant_actor`).

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sextant_kit::Secret;

use crate::auth::Scope;
use crate::read::ApiState;

use super::flow::ACTOR_COOKIE;
use super::layout::layout;
use super::{COOKIE, set_cookie};

pub(super) fn login_form(why: Option<&str>) -> Markup {
    layout(
        "Sign in",
        "",
        0,
        html! {
            @if let Some(why) = why { p.error { "Sign in with a token that can read (" (why) ")." } }
            form.login method="post" action="/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
                label { "or, on a hub without tokens, your name " input type="text" name="name" autocomplete="username"; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(super) async fn login_page() -> Markup {
    login_form(None)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

/// Whether the orchestrator takes `token` for someone.
async fn orchestrator_accepts(state: &ApiState, token: &str) -> bool {
    match &state.orchestrator {
        Some(api) => api
            .with_token(Some(Secret::new(token)))
            .whoami()
            .await
            .is_ok(),
        None => false,
    }
}

/// Stores the token in a cookie (HttpOnly, SameSite=Strict, Secure under
/// TLS) after checking that the hub or the orchestrator takes it; on a
/// hub without tokens, the name.
pub(super) async fn login(State(state): State<ApiState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let name = form.name.trim();
    if token.is_empty() && !name.is_empty() && state.auth.is_open() {
        let value: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
        return (
            AppendHeaders([(header::SET_COOKIE, set_cookie(&state, ACTOR_COOKIE, &value))]),
            Redirect::to("/"),
        )
            .into_response();
    }
    let shaped = !token.is_empty() && token.chars().all(|c| c.is_ascii_graphic());
    let valid = shaped
        && (state
            .auth
            .check(Some(&format!("Bearer {token}")), Scope::Read)
            .is_ok()
            || (!state.auth.is_open() && orchestrator_accepts(&state, token).await));
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some(
                "neither the hub nor the orchestrator takes that token",
            )),
        )
            .into_response();
    }
    (
        AppendHeaders([(header::SET_COOKIE, set_cookie(&state, COOKIE, token))]),
        Redirect::to("/"),
    )
        .into_response()
}
