//! OTLP/HTTP: `POST /v1/logs`, `/v1/metrics` and `/v1/traces` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip.

use std::io::Read;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use sextant_exporters::rate_limit::RateLimited;

use super::ingest::Ingestor;
use crate::auth::{AuthError, Authenticator, Scope};

/// State of the OTLP/HTTP routes.
#[derive(Clone)]
pub struct HttpState {
    pub ingestor: Ingestor,
    pub auth: Authenticator,
    pub max_request_bytes: usize,
    /// Per-tenant ingest limit (shared with OTLP/gRPC).
    pub rate_limit: crate::rate_limit::SurfaceLimiter,
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

fn too_large(limit: usize, encoding: Encoding) -> OtlpError {
    OtlpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the limit of {limit} bytes"),
        encoding,
    )
}

/// Decompresses gzip, stopping at `limit` bytes of output so that a small
/// body cannot expand without bound.
#[allow(clippy::disallowed_methods)] // This is the capped decoder.
pub fn gunzip_capped(body: &[u8], limit: usize) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

/// Authenticates, checks the content type and the tenant's rate limit
/// (before the body is read: a refused request costs next to nothing),
/// reads the body within the size limit, decompresses and decodes it.
async fn read_request<T: Message + Default + DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(crate::auth::Principal, T, Encoding), OtlpError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state
        .auth
        .check(authorization, Scope::Ingest)
        .map_err(|e| {
            let status = match e {
                AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
                AuthError::Missing | AuthError::Unknown => StatusCode::UNAUTHORIZED,
            };
            OtlpError::new(status, e.to_string(), Encoding::Protobuf)
        })?;
    let encoding = encoding(headers)?;
    state
        .rate_limit
        .check(&principal.tenant)
        .map_err(|limited| OtlpError::rate_limited(&principal.tenant, state, limited, encoding))?;
    let limit = state.max_request_bytes;
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(limit, encoding));
        }
        Err(e) => {
            return Err(OtlpError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
                encoding,
            ));
        }
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let bytes = match content_encoding.as_str() {
        "identity" | "" => bytes,
        "gzip" => match gunzip_capped(&bytes, limit) {
            Ok(Some(plain)) => Bytes::from(plain),
            Ok(None) => return Err(too_large(limit, encoding)),
            Err(e) => {
                return Err(OtlpError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid gzip body: {e}"),
                    encoding,
                ));
            }
        },
        other => {
            return Err(OtlpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {other:?}: use gzip or none"),
                encoding,
            ));
        }
    };
    let request = match encoding {
        Encoding::Protobuf => {
            T::decode(bytes).map_err(|e| format!("invalid protobuf payload: {e}"))
        }
        Encoding::Json => {
            serde_json::from_slice(&bytes).map_err(|e| format!("invalid OTLP/JSON payload: {e}"))
        }
    }
    .map_err(|message| OtlpError::new(StatusCode::BAD_REQUEST, message, encoding))?;
    Ok((principal, request, encoding))
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
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (principal, request, encoding) =
        read_request::<ExportLogsServiceRequest>(&state, &headers, body).await?;
    let response = state
        .ingestor
        .logs(&principal, request)
        .await
        .map_err(|e| unavailable(e, encoding))?;
    Ok(respond(&response, encoding))
}

async fn metrics(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (principal, request, encoding) =
        read_request::<ExportMetricsServiceRequest>(&state, &headers, body).await?;
    let response = state
        .ingestor
        .metrics(&principal, request)
        .await
        .map_err(|e| unavailable(e, encoding))?;
    Ok(respond(&response, encoding))
}

async fn traces(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtlpError> {
    let (_, request, encoding) =
        read_request::<ExportTraceServiceRequest>(&state, &headers, body).await?;
    Ok(respond(&state.ingestor.traces(&request), encoding))
}
