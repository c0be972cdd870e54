//! The orchestrator's side of the flow in the hub's UI (docs/ui-flow.md):
//! the pipeline, releases, promotions, the approvals inbox, jobs (live) and
//! agents, with actions behind a confirmation page.
//!
//! The hub reads and acts through the orchestrator's API
//! ([`sextant_kit::orchestrator::OrchestratorClient`]) with the signed-in
//! person's token (the `sextant_token` cookie, or the `Authorization`
//! header), so the API stays the only judge of who may do what: scopes,
//! tenants, the requester who may not approve their own promotion. Its
//! refusals are shown in its own words. Against an orchestrator without
//! tokens (a developer's machine) the person's name from `/login` is sent
//! as `X-Sextant-Actor`.
//!
//! Every change is a `POST` carrying a CSRF token ([`csrf`]): an HMAC of
//! the session cookie's value under a key the hub makes at start.

mod actions;
mod agents;
mod csrf;
mod jobs;
mod pipeline;
mod promotions;
mod releases;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use maud::{Markup, html};
use sextant_kit::Secret;
use sextant_kit::orchestrator::{OrchestratorClient, OrchestratorError, WhoAmI};

use crate::read::ApiState;

pub use csrf::CsrfKey;

use super::{UiError, cookie};

/// The cookie naming the person when the hub and the orchestrator have no
/// tokens.
pub(super) const ACTOR_COOKIE: &str = "sextant_actor";
/// A random session id for CSRF when the person has no token cookie.
pub(super) const SESSION_COOKIE: &str = "sextant_session";

/// The flow's routes.
pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/pipeline", get(pipeline::pipeline))
        .route("/releases", get(releases::list))
        .route("/releases/{id}", get(releases::detail))
        .route("/promotions", get(promotions::list))
        .route("/promotions/{id}", get(promotions::detail))
        .route("/inbox", get(promotions::inbox))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::detail))
        .route("/agents", get(agents::list))
        .route(
            "/actions/{action}",
            get(actions::confirm).post(actions::perform),
        )
}

/// The person at the browser, as the orchestrator will see them.
pub(super) struct Person {
    pub(super) api: OrchestratorClient,
    /// What the CSRF token is bound to: the token cookie, else the session
    /// cookie (none: the page sets one).
    pub(super) session: Option<String>,
}

impl Person {
    /// The client of the orchestrator acting as the person who sent
    /// `headers`.
    pub(super) fn of(state: &ApiState, headers: &HeaderMap) -> Result<Self, UiError> {
        let Some(api) = &state.orchestrator else {
            return Err(UiError::Status(
                StatusCode::SERVICE_UNAVAILABLE,
                "this hub knows no orchestrator: set orchestrator_url in its configuration \
                 (sextant up sets it)"
                    .into(),
            ));
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let token_cookie = cookie(headers, super::COOKIE).map(str::to_owned);
        let token = bearer.or_else(|| token_cookie.clone());
        let session = token_cookie.or_else(|| cookie(headers, SESSION_COOKIE).map(str::to_owned));
        let actor = cookie(headers, ACTOR_COOKIE).map(|a| {
            url::form_urlencoded::parse(format!("a={a}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        });
        Ok(Self {
            api: api.with_token(token.map(Secret::new)).with_actor(actor),
            session,
        })
    }

    /// Who the orchestrator takes the person for.
    pub(super) async fn whoami(&self) -> Result<WhoAmI, UiError> {
        self.api.whoami().await.map_err(api_error)
    }
}

/// The orchestrator's refusal as a page, in its words.
pub(super) fn api_error(e: OrchestratorError) -> UiError {
    match &e {
        OrchestratorError::Api { code, message, .. } if code == "unauthenticated" => {
            UiError::Login(format!("the orchestrator says: {message}"))
        }
        OrchestratorError::Api {
            status, message, ..
        } => UiError::Status(
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            format!("The orchestrator refused: {message}"),
        ),
        _ => {
            tracing::warn!(error = %e, "The orchestrator's API failed for the UI");
            UiError::Status(
                StatusCode::BAD_GATEWAY,
                format!("The orchestrator did not answer as expected: {e}"),
            )
        }
    }
}

/// A state as words in a badge: the class gives the colour, the text says
/// the same thing.
pub(super) fn state_badge(state: &str) -> Markup {
    let class = match state {
        "deployed" | "completed" | "succeeded" | "approved" | "online" | "finalized" | "allow" => {
            "ok"
        }
        "failed" | "rejected" | "rolled_back" | "revoked" | "offline" | "deny" => "bad",
        "cancelled" | "skipped" | "draft" => "muted",
        "awaiting_approval" | "requested" | "degraded" | "pending" => "wait",
        _ => "busy",
    };
    html! { span class={ "state " (class) } data-state=(state) { (words(state)) } }
}

/// `awaiting_approval` → `awaiting approval`.
pub(super) fn words(state: &str) -> String {
    match state {
        "requested" => "requested, checking gates".into(),
        _ => state.replace('_', " "),
    }
}

/// `2026-11-23T16:40:01.5Z` → a `<time>` showing `2026-11-23 16:40:01Z`.
pub(super) fn at(t: &str) -> Markup {
    let short = if t.len() >= 19 && t.as_bytes().get(10) == Some(&b'T') {
        format!("{} {}Z", &t[..10], &t[11..19])
    } else {
        t.to_owned()
    };
    html! { time datetime=(t) title=(t) { (short) } }
}

/// `sha256:0123456789abcdef…` → `0123456789ab`, the whole on hover.
pub(super) fn digest(d: &str) -> Markup {
    html! { code title=(d) { (super::layout::short_revision(d)) } }
}

/// A "next page" link when a page came back full.
pub(super) fn next_link(base: &str, full: bool, last: Option<&str>, extra: &str) -> Markup {
    html! {
        @if full { @if let Some(last) = last {
            nav.pager { a.next href={ (base) "?before=" (super::layout::path_segment(last)) (extra) } { "Older →" } }
        } }
    }
}
