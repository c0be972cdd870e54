//! OTLP/HTTP protobuf transport (`POST /v1/logs`) with reqwest.

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, RETRY_AFTER, USER_AGENT,
};

use super::tls::{self, TlsConfig};
use super::transport::{ExportOutcome, FailureReason, LogsRequest, Transport, accepted};
use crate::error::{OutboxError, Result};
use sextant_kit::Secret;

const PROTOBUF: &str = "application/x-protobuf";
/// The most of a response body read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Settings of an OTLP/HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL (`http://hub:4318`) or the full `/v1/logs` URL.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<Secret>,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Time for one request, connection included.
    pub timeout: Duration,
    /// Extra CA and client certificate for `https://` endpoints.
    pub tls: TlsConfig,
}

impl HttpConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: None,
            gzip: false,
            timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
        }
    }
}

/// Sends logs requests as protobuf over HTTP.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    endpoint: String,
    token: Option<Secret>,
    gzip: bool,
}

/// The `/v1/logs` URL of an endpoint given as a base URL.
fn logs_url(endpoint: &str) -> Result<reqwest::Url> {
    let invalid = |reason: String| OutboxError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/logs") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/logs")
    };
    let url = reqwest::Url::parse(&full).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" if cfg!(feature = "tls") => Ok(url),
        "https" => Err(invalid(
            "https needs sextant-exporters built with the `tls` feature".to_owned(),
        )),
        other => Err(invalid(format!("unsupported scheme {other:?}"))),
    }
}

impl HttpTransport {
    pub fn new(config: HttpConfig) -> Result<Self> {
        let url = logs_url(&config.endpoint)?;
        let material = tls::load(&config.tls)?;
        let invalid = |e: reqwest::Error| OutboxError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: format!("cannot build the HTTP client: {}", error_chain(&e)),
        };
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout);
        #[cfg(feature = "tls")]
        {
            // The built-in (webpki) roots stay trusted beside these.
            builder = builder.use_rustls_tls();
            for der in material.ca.iter().flat_map(|(_, der)| der) {
                builder = builder
                    .add_root_certificate(reqwest::Certificate::from_der(der).map_err(invalid)?);
            }
            if let Some((cert, key)) = &material.identity {
                let mut pem = key.clone();
                pem.push(b'\n');
                pem.extend_from_slice(cert);
                builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(invalid)?);
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = material;
        let client = builder.build().map_err(invalid)?;
        Ok(Self {
            client,
            url,
            endpoint: config.endpoint,
            token: config.token,
            gzip: config.gzip,
        })
    }

    /// The `/v1/logs` URL requests go to.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Sends one encoded `ExportLogsServiceRequest` once, without retrying,
    /// and returns the answer as received. [`Transport::export`] is this,
    /// classified; a caller that reports the answer itself (`sextant
    /// report`) reads it here.
    pub async fn post(&self, body: impl Into<Bytes>) -> std::result::Result<HttpAnswer, NoAnswer> {
        let body: Bytes = body.into();
        let mut http = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .header(USER_AGENT, concat!("sextant/", env!("CARGO_PKG_VERSION")));
        if self.gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            let body = gz.write_all(&body).and_then(|_| gz.finish());
            match body {
                Ok(body) => http = http.header(CONTENT_ENCODING, "gzip").body(body),
                Err(e) => {
                    return Err(NoAnswer {
                        reason: FailureReason::Connection,
                        connect: false,
                        detail: format!("gzip failed: {e}"),
                    });
                }
            }
        } else {
            http = http.body(body);
        }
        if let Some(token) = &self.token {
            http = http.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let mut response = http.send().await.map_err(|e| NoAnswer::from(&e))?;
        let status = response.status();
        let header = |name: HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok());
        let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now()));
        let protobuf = header(CONTENT_TYPE).is_some_and(|v| v.starts_with(PROTOBUF));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| NoAnswer::from(&e))? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(HttpAnswer {
            status,
            retry_after,
            protobuf,
            body,
        })
    }

    async fn send(&self, request: LogsRequest) -> ExportOutcome {
        match self.post(request.body).await {
            Ok(answer) => answer.outcome(),
            Err(none) => none.outcome(),
        }
    }
}

/// An OTLP/HTTP peer's answer to one request, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: StatusCode,
    /// `Retry-After`, as a delay.
    pub retry_after: Option<Duration>,
    /// Whether the peer said the body is protobuf (`Content-Type`).
    pub protobuf: bool,
    /// The body, at most its first MiB.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// What a sender makes of it, per the OTLP/HTTP rules.
    pub fn outcome(&self) -> ExportOutcome {
        classify(self.status, self.retry_after, &self.body)
    }

    /// The `google.rpc.Status` of a protobuf body (how OTLP/HTTP peers
    /// explain an error).
    pub fn rpc_status(&self) -> Option<RpcStatus> {
        self.protobuf
            .then(|| RpcStatus::decode(self.body.as_slice()).ok())
            .flatten()
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    /// [`FailureReason::Timeout`] when no answer came in time, else
    /// [`FailureReason::Connection`].
    pub reason: FailureReason,
    /// Whether no connection could be made at all (refused, DNS, TLS).
    pub connect: bool,
    /// The error and its sources (refused, reset, an unknown certificate
    /// issuer, …).
    pub detail: String,
}

impl NoAnswer {
    /// A retry, as for every request that got no answer.
    pub fn outcome(self) -> ExportOutcome {
        ExportOutcome::Retry {
            reason: self.reason,
            retry_after: None,
            detail: self.detail,
        }
    }
}

impl From<&reqwest::Error> for NoAnswer {
    fn from(e: &reqwest::Error) -> Self {
        let reason = if e.is_timeout() {
            FailureReason::Timeout
        } else {
            FailureReason::Connection
        };
        Self {
            reason,
            connect: e.is_connect(),
            detail: error_chain(e),
        }
    }
}

impl Transport for HttpTransport {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn export(
        &self,
        request: LogsRequest,
    ) -> impl std::future::Future<Output = ExportOutcome> + Send {
        self.send(request)
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // hyper and reqwest often repeat the inner message.
        if !detail.ends_with(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = s.source();
    }
    detail
}

/// `google.rpc.Status`, as far as a message is concerned: the body of an
/// OTLP/HTTP error answer.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code (`16` is `UNAUTHENTICATED`).
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Classifies an HTTP answer per the OTLP/HTTP rules.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ExportOutcome {
    if status.is_success() {
        return match ExportLogsServiceResponse::decode(body) {
            Ok(response) => accepted(&response),
            // A 200 whose body is not an OTLP response (a proxy's page):
            // the request was taken; nothing says any record was rejected.
            Err(_) => ExportOutcome::Accepted {
                rejected: 0,
                message: None,
            },
        };
    }
    let message = RpcStatus::decode(body)
        .ok()
        .map(|s| s.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    let detail = format!("HTTP {status}: {message}");
    let retry = |reason| ExportOutcome::Retry {
        reason,
        retry_after,
        detail: detail.clone(),
    };
    let refuse = |reason| ExportOutcome::Refused {
        reason,
        detail: detail.clone(),
    };
    match status.as_u16() {
        429 => retry(FailureReason::Throttled),
        502..=504 => retry(FailureReason::Unavailable),
        401 | 403 => retry(FailureReason::Unauthorized),
        400 => refuse(FailureReason::BadRequest),
        413 => refuse(FailureReason::TooLarge),
        _ => refuse(FailureReason::Refused),
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_are_classified_per_otlp() {
        let reason = |code: u16| match classify(
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            None,
            b"",
        ) {
            ExportOutcome::Retry { reason, .. } => format!("retry {}", reason.as_str()),
            ExportOutcome::Refused { reason, .. } => format!("refuse {}", reason.as_str()),
            ExportOutcome::Accepted { .. } => "ok".to_owned(),
        };
        assert_eq!(reason(200), "ok");
        assert_eq!(reason(429), "retry throttled");
        assert_eq!(reason(503), "retry unavailable");
        assert_eq!(reason(401), "retry unauthorized");
        assert_eq!(reason(400), "refuse bad_request");
        assert_eq!(reason(413), "refuse too_large");
        assert_eq!(reason(500), "refuse refused");
        assert_eq!(
            logs_url("http://h:4318/")
                .map(|u| u.to_string())
                .ok()
                .as_deref(),
            Some("http://h:4318/v1/logs")
        );
    }
}
