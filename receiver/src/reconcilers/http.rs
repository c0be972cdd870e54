//! The reconcilers' webhooks on the OTLP/HTTP listener:
//! `POST /v1/reconcilers/flux` (a Flux `generic` Provider with a bearer
//! token in its headers Secret, or `generic-hmac` signed with a key of
//! `[[reconcilers.hmac_keys]]`) and `POST /v1/reconcilers/argocd` (Argo CD
//! Notifications' webhook service with a bearer token).
//!
//! Answers: 200 with what became of the payload; 400 naming the field for a
//! payload that cannot be mapped (resending cannot help, so no sender
//! retries it); 401/403 for credentials; 429 and 503 with `Retry-After`.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::argocd::Notification;
use super::flux::{self, Mapped};
use sextant_kit::serve::Peer;

use crate::auth::{AuthError, Principal, Scope, refusal_message};
use crate::metrics;
use crate::otlp::body::{self, BodyError};
use crate::otlp::http::HttpState;
use crate::otlp::outcome::Extracted;

/// The webhook routes, merged into the OTLP/HTTP router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/reconcilers/flux", post(flux_event))
        .route("/v1/reconcilers/argocd", post(argocd_notification))
        .with_state(state)
}

/// What became of a webhook's payload.
#[derive(Debug, Serialize)]
struct Outcome {
    /// Deployment events stored (observed, and desired when new).
    accepted: usize,
    /// Why the payload maps to no deployment event, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'static str>,
}

/// A refused webhook request: `{"error": …}` with its status.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn auth_refusal(error: AuthError, peer: Option<&Peer>) -> Refusal {
    let status = match error {
        AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        AuthError::Missing | AuthError::Unknown => StatusCode::UNAUTHORIZED,
    };
    Refusal::new(status, refusal_message(&error, peer))
}

/// A bearer token with the `ingest` scope or, without one, a client
/// certificate `[[client_certs]]` maps (mTLS).
fn bearer(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Option<&Peer>,
) -> Result<Principal, Refusal> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .auth
        .check_request(authorization, peer, Scope::Ingest)
        .map_err(|e| auth_refusal(e, peer))
}

/// The tenant of the key whose HMAC of `body` is `signature`
/// (`<hash>=<hex>`, as Flux's `generic-hmac` Provider sends it).
fn verify(signature: &str, body: &[u8], keys: &[super::HmacKey]) -> Result<String, Refusal> {
    let unauthorized = |m: String| Refusal::new(StatusCode::UNAUTHORIZED, m);
    let (algorithm, hex_mac) = signature.split_once('=').ok_or_else(|| {
        unauthorized("X-Signature must be `<hash function>=<hex HMAC>`".to_owned())
    })?;
    let mac = hex::decode(hex_mac.trim())
        .map_err(|_| unauthorized("X-Signature's HMAC is not hexadecimal".to_owned()))?;
    if keys.is_empty() {
        return Err(unauthorized(
            "X-Signature given but the hub has no [[reconcilers.hmac_keys]]".to_owned(),
        ));
    }
    for key in keys {
        let key_bytes = key.key.expose().as_bytes();
        // Whether `mac` is the HMAC of `body` under the key, compared in
        // constant time.
        macro_rules! check {
            ($hash:ty) => {
                <Hmac<$hash> as KeyInit>::new_from_slice(key_bytes).is_ok_and(|mut hmac| {
                    hmac.update(body);
                    hmac.verify_slice(&mac).is_ok()
                })
            };
        }
        let matches = match algorithm {
            "sha256" => check!(sha2::Sha256),
            "sha224" => check!(sha2::Sha224),
            "sha384" => check!(sha2::Sha384),
            "sha512" => check!(sha2::Sha512),
            other => {
                return Err(unauthorized(format!(
                    "X-Signature uses {other:?}: the hub accepts sha224, sha256, sha384 and sha512"
                )));
            }
        };
        if matches {
            return Ok(key.tenant.clone());
        }
    }
    Err(unauthorized(
        "X-Signature does not match the body under any configured HMAC key".to_owned(),
    ))
}

/// Reads and parses a JSON body within the request limit and the memory
/// budget; authenticates (the HMAC covers the exact bytes) and applies the
/// tenant's rate limit.
async fn read<T: DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Option<&Peer>,
    body: Body,
    signed: bool,
) -> Result<(Principal, T, body::Charge), Refusal> {
    // A signed request proves itself with its body; any other is checked
    // before its body is read.
    let signature = headers
        .get("x-signature")
        .filter(|_| signed)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let token = match signature {
        Some(_) => None,
        None => Some(bearer(state, headers, peer)?),
    };
    let mut charge = state.budget.charge();
    let bytes = body::read(body, state.max_request_bytes, &mut charge)
        .await
        .map_err(|e| {
            state.metrics.body_refused(&e);
            match e {
                BodyError::OverBudget { .. } => Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: e.to_string(),
                    retry_after: Some(body::RETRY_AFTER_SECS),
                },
                BodyError::TooLarge { .. } | BodyError::DecodesTooLarge { .. } => {
                    Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
                }
                BodyError::Gzip(_) | BodyError::Read(_) => {
                    Refusal::new(StatusCode::BAD_REQUEST, e.to_string())
                }
            }
        })?;
    let principal = match (token, signature) {
        (Some(principal), _) => principal,
        (None, signature) => {
            let keys = &state.ingestor.reconcilers().config.hmac_keys;
            verify(signature.as_deref().unwrap_or_default(), &bytes, keys)
                .map(|tenant| Principal::ingest_only(&tenant))?
        }
    };
    state
        .rate_limit
        .check(&principal.tenant)
        .map_err(|limited| Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: crate::rate_limit::ingest_status(
                &principal.tenant,
                &state.rate_limit.describe(),
                limited,
            )
            .message()
            .to_owned(),
            retry_after: Some(limited.retry_after_secs()),
        })?;
    let payload = serde_json::from_slice(&bytes).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON payload: {e}"),
        )
    })?;
    Ok((principal, payload, charge))
}

/// Stores what was mapped and answers with the outcome.
async fn store(
    state: &HttpState,
    principal: &Principal,
    signal: &'static str,
    out: Extracted,
) -> Result<Response, Refusal> {
    let ignored = out.ignored_for.first().map(|(reason, _)| *reason);
    let out = state
        .ingestor
        .reconciled(principal, signal, out)
        .await
        .map_err(|e| Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
            retry_after: Some(5),
        })?;
    Ok(Json(Outcome {
        accepted: out.events.len(),
        ignored,
    })
    .into_response())
}

/// Counts a refused payload and answers 400 with the reason.
fn reject(state: &HttpState, signal: &'static str, refused: &super::Refused) -> Refusal {
    state.metrics.count(signal, "rejected", refused.reason(), 1);
    Refusal::new(StatusCode::BAD_REQUEST, refused.to_string())
}

/// `POST /v1/reconcilers/flux`: one notification-controller event.
async fn flux_event(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let signal = metrics::FLUX_EVENTS;
    let peer = peer.as_ref().map(|p| &p.0);
    let (principal, event, _charge) =
        read::<flux::Event>(&state, &headers, peer, body, true).await?;
    let reconcilers = state.ingestor.reconcilers();
    let mut out = Extracted::default();
    match event.map(&query, reconcilers, state.ingestor.window()) {
        Ok(Mapped::Event(observed)) => out
            .events
            .push(sextant_model::DeploymentEvent::Observed(*observed)),
        Ok(Mapped::Ignored(reason)) => out.ignore(reason),
        Err(refused) => return Err(reject(&state, signal, &refused)),
    }
    store(&state, &principal, signal, out).await
}

/// `POST /v1/reconcilers/argocd`: one Argo CD notification.
async fn argocd_notification(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let signal = metrics::ARGOCD;
    let peer = peer.as_ref().map(|p| &p.0);
    let (principal, notification, _charge) =
        read::<Notification>(&state, &headers, peer, body, false).await?;
    let mut out = Extracted::default();
    if let Err(refused) = notification.map(
        &query,
        state.ingestor.reconcilers(),
        &principal.tenant,
        state.ingestor.window(),
        &mut out,
    ) {
        return Err(reject(&state, signal, &refused));
    }
    store(&state, &principal, signal, out).await
}
