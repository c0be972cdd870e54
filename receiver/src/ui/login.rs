//! `/login`: the token form that sets the `sextant_token` cookie.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::Scope;
use crate::read::ApiState;

use super::COOKIE;
use super::layout::layout;

pub(super) fn login_form(why: Option<&str>) -> Markup {
    layout(
        "Sign in",
        "",
        0,
        html! {
            @if let Some(why) = why { p.error { "This hub needs a token with the read scope (" (why) ")." } }
            form.login method="post" action="/login" {
                label { "Token " input type="password" name="token" autocomplete="current-password"; }
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
    token: String,
}

/// Stores the token in a cookie (HttpOnly, SameSite=Strict) after checking it.
pub(super) async fn login(State(state): State<ApiState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let valid = token.chars().all(|c| c.is_ascii_graphic())
        && state
            .auth
            .check(Some(&format!("Bearer {token}")), Scope::Read)
            .is_ok();
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("that token cannot read")),
        )
            .into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}
