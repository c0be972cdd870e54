//! The web UI, served by the hub on the API address: server-rendered HTML
//! (maud) with a little plain JavaScript that refreshes each page in place.
//! No CDN, no Node build, works offline. Filters live in the URL.
//!
//! Pages: `/` (environment × workload matrix), `/compare`, `/drift`,
//! `/hosts`, `/hosts/{host}`, `/workloads/{workload}/history`, `/insights`;
//! and the orchestrator's flow (`flow/`): `/pipeline`, `/releases`,
//! `/promotions`, `/inbox`, `/jobs`, `/agents` and `/actions/…`, read and
//! acted on through the orchestrator's API as the signed-in person.
//! Each view is a module of its own (`matrix.rs`, `compare.rs`, `drift.rs`,
//! `hosts.rs`, `history.rs`, `insights.rs`, `login.rs`); `layout.rs` is the frame and the
//! pieces they share; this file routes them and turns errors into pages.
//!
//! With tokens configured, the UI reads as the token in the
//! `Authorization` header or in the `sextant_token` cookie set by `/login`.

mod compare;
mod drift;
mod flow;
mod history;
mod hosts;
mod insights;
mod layout;
mod login;
mod matrix;

use axum::Extension;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use sextant_kit::serve::Peer;

use crate::auth::{AuthError, Principal, Scope};
use crate::read::ApiState;

use compare::compare;
use drift::drift;
use history::history;
use hosts::{host, hosts};
use insights::insights;
use layout::layout;
use login::{login, login_form, login_page};
use matrix::matrix;

pub use flow::CsrfKey;

const CSS: &str = include_str!("sextant.css");
const JS: &str = include_str!("sextant.js");
const COOKIE: &str = "sextant_token";
/// Rows a UI list shows per page.
const PAGE: u32 = 100;

/// The UI routes.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/", get(matrix))
        .route("/compare", get(compare))
        .route("/drift", get(drift))
        .route("/hosts", get(hosts))
        .route("/hosts/{host}", get(host))
        .route("/workloads/{workload}/history", get(history))
        .route("/insights", get(insights))
        .route("/login", get(login_page).post(login))
        .merge(flow::router())
}

/// A page that could not be shown.
enum UiError {
    Login(String),
    Status(StatusCode, String),
}

impl From<AuthError> for UiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden(_) => UiError::Status(StatusCode::FORBIDDEN, e.to_string()),
            AuthError::Missing | AuthError::Unknown => UiError::Login(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "Store read failed for the UI");
        UiError::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub store is unavailable".into(),
        )
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::Login(why) => {
                (StatusCode::UNAUTHORIZED, login_form(Some(&why))).into_response()
            }
            UiError::Status(status, message) => (
                status,
                layout("Error", "", 0, html! { p.error { (message) } }),
            )
                .into_response(),
        }
    }
}

/// A cookie's value from the request (an empty one counts as none).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
        .find(|v| !v.is_empty())
}

/// A `Set-Cookie` value for the UI: `HttpOnly`, `SameSite=Strict`, and
/// `Secure` when the hub serves TLS.
fn set_cookie(state: &ApiState, name: &str, value: &str) -> String {
    let secure = if state.tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// The caller, from the Authorization header or the UI's cookie.
fn viewer(
    state: &ApiState,
    headers: &HeaderMap,
    peer: Option<&Extension<Peer>>,
) -> Result<Principal, UiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookie = cookie(headers, COOKIE).map(|t| format!("Bearer {t}"));
    // Without a token, a client certificate `[[client_certs]]` maps.
    Ok(state.auth.check_request(
        header.or(cookie).as_deref(),
        peer.map(|p| &p.0),
        Scope::Read,
    )?)
}
