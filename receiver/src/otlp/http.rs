//! OTLP/HTTP: `POST /v1/logs`, `/v1/metrics` and `/v1/traces` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip.

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use sextant_kit::rate_limit::RateLimited;
use sextant_kit::serve::Peer;

use super::body::{self, BodyBudget, BodyError, Charge};
use super::estimate::{self, Signal};
use super::ingest::Ingestor;
use crate::auth::{AuthError, Authenticator, Scope, refusal_message};
use crate::metrics::HubMetrics;

/// State of the OTLP/HTTP routes.
#[derive(Clone)]
pub struct HttpState {
    pub ingestor: Ingestor,
    pub auth: Authenticator,
    pub max_request_bytes: usize,
    /// Per-tenant ingest limit (shared with OTLP/gRPC).
    pub rate_limit: crate::rate_limit::SurfaceLimiter,
    /// Memory of the requests in flight (shared with OTLP/gRPC).
    pub budget: BodyBudget,
    pub metrics: HubMetrics,
}

/// The OTLP/HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(metrics))
        .route("/v1/traces", post(traces))
        // The body is limited (before and after decompression) in `read_request`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The two encodings of OTLP/HTTP; the response uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// An OTLP/HTTP failure, answered as a `google.rpc.Status` body.
#[derive(Debug)]
struct OtlpError {
    status: StatusCode,
    message: String,
    encoding: Encoding,
    /// Over the tenant's rate limit: the status to send, with its
    /// `RetryInfo`, and the `Retry-After` seconds.
    limited: Option<(tonic::Status, u64)>,
}

impl OtlpError {
    fn new(status: StatusCode, message: impl Into<String>, encoding: Encoding) -> Self {
        Self {
            status,
            message: message.into(),
            encoding,
            limited: None,
        }
    }

    /// 429 with `Retry-After`, and `RetryInfo` in the body.
    fn rate_limited(
        tenant: &str,
        state: &HttpState,
        limited: RateLimited,
        encoding: Encoding,
    ) -> Self {
        let status =
            crate::rate_limit::ingest_status(tenant, &state.rate_limit.describe(), limited);
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: status.message().to_owned(),
            encoding,
            limited: Some((status, limited.retry_after_secs())),
        }
    }
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    code: i32,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<JsonRetryInfo>,
}

/// A `google.rpc.RetryInfo` in an `Any`, as proto3 JSON spells it.
#[derive(Serialize)]
struct JsonRetryInfo {
    #[serde(rename = "@type")]
    type_url: &'static str,
    #[serde(rename = "retryDelay")]
    retry_delay: String,
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
                tonic::Code::ResourceExhausted
            }
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Unknown,
        } as i32;
        let body = match (self.encoding, &self.limited) {
            // tonic's details are the encoded google.rpc.Status, RetryInfo included.
            (Encoding::Protobuf, Some((status, _))) => status.details().to_vec(),
            (Encoding::Protobuf, None) => tonic_types::Status {
                code,
                message: self.message.clone(),
                details: Vec::new(),
            }
            .encode_to_vec(),
            (Encoding::Json, limited) => serde_json::to_vec(&JsonStatus {
                code,
                message: &self.message,
                details: limited
                    .iter()
                    .map(|(_, secs)| JsonRetryInfo {
                        type_url: tonic_types::RetryInfo::TYPE_URL,
                        retry_delay: format!("{secs}s"),
                    })
                    .collect(),
            })
            .unwrap_or_default(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, self.encoding.content_type())],
            body,
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Some((_, secs)) = self.limited {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, OtlpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Encoding::Protobuf)
    } else if mime.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(OtlpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {content_type:?}: use application/x-protobuf or application/json"
            ),
            Encoding::Protobuf,
        ))
    }
}

impl OtlpError {
    /// The answer to a body that could not be read: 413 over the size limit
    /// (not retried), 429 with `Retry-After` over the memory budget, 400 for
    /// a broken body.
    fn body(error: BodyError, encoding: Encoding) -> Self {
        let status = match &error {
            BodyError::TooLarge { .. } | BodyError::DecodesTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BodyError::OverBudget { .. } => {
                let status = body::retry_later(error.to_string());
                return Self {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: status.message().to_owned(),
                    encoding,
                    limited: Some((status, body::RETRY_AFTER_SECS)),
                };
            }
            BodyError::Gzip(_) | BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        Self::new(status, error.to_string(), encoding)
    }
}

/// Authenticates, checks the content type and the tenant's rate limit
/// (before the body is read: a refused request costs next to nothing),
/// reads the body within the size limit and the memory budget, decompresses
/// and decodes it. The returned [`Charge`] holds the request's share of the
/// budget until it is dropped, after the answer.
/// Bodies up to this size are decoded on the request's own task.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

async fn read_request<T: Message + Default + DeserializeOwned + Send + 'static>(
    state: &HttpState,
    signal: Signal,
    peer: Option<&Peer>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(crate::auth::Principal, T, Encoding, Charge), OtlpError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Without a token, the client certificate the listener verified.
    let principal = state
        .auth
        .check_request(authorization, peer, Scope::Ingest)
        .map_err(|e| {
            let status = match e {
                AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
                AuthError::Missing | AuthError::Unknown => StatusCode::UNAUTHORIZED,
            };
            OtlpError::new(status, refusal_message(&e, peer), Encoding::Protobuf)
        })?;
    let encoding = encoding(headers)?;
    state
        .rate_limit
        .check(&principal.tenant)
        .map_err(|limited| OtlpError::rate_limited(&principal.tenant, state, limited, encoding))?;
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let gzip = match content_encoding.as_str() {
        "identity" | "" => false,
        "gzip" => true,
        other => {
            return Err(OtlpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {other:?}: use gzip or none"),
                encoding,
            ));
        }
    };
    let limit = state.max_request_bytes;
    let mut charge = state.budget.charge();
    let refused = |e: BodyError| {
        state.metrics.body_refused(&e);
        OtlpError::body(e, encoding)
    };
    let wire = body::read(body, limit, &mut charge)
        .await
        .map_err(refused)?;
    // Decompressing and decoding a large body takes milliseconds of CPU:
    // off the async threads, so other requests go on meanwhile.
    let off_thread = gzip || wire.len() > INLINE_DECODE_BYTES;
    let metrics = state.metrics.clone();
    let decode = move || {
        let refused = |e: BodyError| {
            metrics.body_refused(&e);
            OtlpError::body(e, encoding)
        };
        let plain = if gzip {
            let plain = body::gunzip(&wire, limit, 0, &mut charge).map_err(refused)?;
            charge.release(wire.len());
            drop(wire);
            plain.freeze()
        } else {
            wire
        };
        let decoded = match encoding {
            Encoding::Protobuf => estimate::protobuf(signal, &plain),
            Encoding::Json => estimate::json(&plain),
        };
        charge.add_decoded(decoded).map_err(refused)?;
        let request = match encoding {
            Encoding::Protobuf => {
                T::decode(plain).map_err(|e| format!("invalid protobuf payload: {e}"))
            }
            Encoding::Json => serde_json::from_slice(&plain)
                .map_err(|e| format!("invalid OTLP/JSON payload: {e}")),
        }
        .map_err(|message| OtlpError::new(StatusCode::BAD_REQUEST, message, encoding))?;
        // The bytes are gone; the decoded message stays charged.
        charge.release(charge.held().saturating_sub(decoded));
        Ok::<_, OtlpError>((request, charge))
    };
    let (request, charge) = if off_thread {
        state.budget.decode(decode).await.map_err(|e| {
            OtlpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {e}"),
                encoding,
            )
        })??
    } else {
        decode()?
    };
    Ok((principal, request, encoding, charge))
}

fn respond<T: Message + Serialize>(response: &T, encoding: Encoding) -> Response {
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(response).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn unavailable(error: impl std::fmt::Display, encoding: Encoding) -> OtlpError {
    OtlpError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string(), encoding)
}

async fn logs(
    State(state): State<HttpState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (principal, request, encoding, _charge) = read_request::<ExportLogsServiceRequest>(
        &state,
        Signal::Logs,
        peer.as_ref().map(|p| &p.0),
        &headers,
        body,
    )
    .await?;
    let response = state
        .ingestor
        .logs(&principal, request)
        .await
        .map_err(|e| unavailable(e, encoding))?;
    Ok(respond(&response, encoding))
}

async fn metrics(
    State(state): State<HttpState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (principal, request, encoding, _charge) = read_request::<ExportMetricsServiceRequest>(
        &state,
        Signal::Metrics,
        peer.as_ref().map(|p| &p.0),
        &headers,
        body,
    )
    .await?;
    let response = state
        .ingestor
        .metrics(&principal, request)
        .await
        .map_err(|e| unavailable(e, encoding))?;
    Ok(respond(&response, encoding))
}

async fn traces(
    State(state): State<HttpState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (_, request, encoding, _charge) = read_request::<ExportTraceServiceRequest>(
        &state,
        Signal::Traces,
        peer.as_ref().map(|p| &p.0),
        &headers,
        body,
    )
    .await?;
    Ok(respond(&state.ingestor.traces(&request), encoding))
}
