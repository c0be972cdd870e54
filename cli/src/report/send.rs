//! OTLP/HTTP protobuf export of one logs request, and what the hub answered.

pub use sextant_kit::Secret;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};

const PROTOBUF: &str = "application/x-protobuf";
/// The most of a response body read; a hub answers in a few bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The `/v1/logs` URL of an OTLP/HTTP endpoint given as a base URL
/// (`http://host:4318`); a URL that already ends in `/v1/logs` is kept.
pub fn logs_url(endpoint: &str) -> anyhow::Result<reqwest::Url> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/logs") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/logs")
    };
    let url = reqwest::Url::parse(&full).with_context(|| {
        format!("invalid OTLP endpoint {endpoint:?} (expected e.g. http://127.0.0.1:4318)")
    })?;
    match url.scheme() {
        "http" => Ok(url),
        "https" => bail!(
            "OTLP endpoint {endpoint}: this build of sextant speaks plain HTTP only; \
             use http:// (for example through a local collector)"
        ),
        other => bail!("OTLP endpoint {endpoint}: unsupported scheme {other:?}, use http://"),
    }
}

/// What the hub did with an accepted request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records the hub rejected (`partial_success.rejected_log_records`).
    pub rejected: i64,
    /// The hub's `partial_success.error_message`, naming the first problem.
    pub message: Option<String>,
}

/// POSTs `request` as protobuf. An HTTP error, an undecodable answer or an
/// unreachable hub is an `Err` whose message says what happened and where.
pub async fn export(
    url: &reqwest::Url,
    token: Option<&Secret>,
    request: &ExportLogsServiceRequest,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let client = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")?;
    let mut http = client
        .post(url.clone())
        .header(CONTENT_TYPE, PROTOBUF)
        .header(USER_AGENT, concat!("sextant/", env!("CARGO_PKG_VERSION")))
        .body(request.encode_to_vec());
    if let Some(token) = token {
        http = http.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let mut response = http
        .send()
        .await
        .map_err(|e| transport_error(url, timeout, &e))?;
    let status = response.status();
    let is_protobuf = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROTOBUF));
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(url, timeout, &e))?
    {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    if !status.is_success() {
        return Err(http_error(url, status, is_protobuf, &body));
    }
    let answer = if body.is_empty() {
        ExportLogsServiceResponse::default()
    } else {
        ExportLogsServiceResponse::decode(body.as_slice()).map_err(|e| {
            anyhow!(
                "{url} answered {status} with a body that is not an OTLP logs response ({e}); \
                 is this an OTLP/HTTP endpoint?"
            )
        })?
    };
    Ok(match answer.partial_success {
        Some(p) => Outcome {
            rejected: p.rejected_log_records,
            message: Some(p.error_message).filter(|m| !m.is_empty()),
        },
        None => Outcome::default(),
    })
}

/// A failure before any HTTP status arrived.
fn transport_error(url: &reqwest::Url, timeout: Duration, error: &reqwest::Error) -> anyhow::Error {
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    if error.is_connect() {
        anyhow!(
            "cannot connect to the hub's OTLP/HTTP endpoint {url}: {cause}. \
             Is the hub running there? Set it with --otlp-endpoint or SEXTANT_OTLP_ENDPOINT"
        )
    } else if error.is_timeout() {
        anyhow!("no answer from {url} within {} s", timeout.as_secs_f32())
    } else {
        anyhow!("sending to {url} failed: {cause}")
    }
}

/// `google.rpc.Status` codes the hub uses, by the name gRPC gives them.
fn code_name(code: i32) -> &'static str {
    match code {
        2 => "unknown",
        3 => "invalid_argument",
        7 => "permission_denied",
        8 => "resource_exhausted",
        14 => "unavailable",
        16 => "unauthenticated",
        _ => "error",
    }
}

/// An HTTP error answer: the status, the hub's `google.rpc.Status` message
/// (or the body's text when it is not one) and a hint.
fn http_error(
    url: &reqwest::Url,
    status: reqwest::StatusCode,
    is_protobuf: bool,
    body: &[u8],
) -> anyhow::Error {
    let rpc = is_protobuf
        .then(|| tonic_types::Status::decode(body).ok())
        .flatten();
    let detail = match rpc {
        Some(s) if !s.message.is_empty() => format!(" ({}): {}", code_name(s.code), s.message),
        Some(s) => format!(" ({})", code_name(s.code)),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                String::new()
            } else {
                let cut: String = text.chars().take(300).collect();
                format!(": {cut}")
            }
        }
    };
    let hint = match status.as_u16() {
        401 => " — pass the hub's ingest token with --token or SEXTANT_TOKEN",
        403 => " — the token needs the `ingest` scope",
        404 | 405 => {
            " — is this the hub's OTLP/HTTP address (port 4318 by default), not its API (8080)?"
        }
        413 => " — the request is over the hub's size limit",
        429 | 502..=504 => " — the hub is unavailable for now; retry later",
        _ => "",
    };
    anyhow!("the hub at {url} refused the events: HTTP {status}{detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_becomes_the_logs_url() {
        let url = |e| logs_url(e).map(|u| u.to_string());
        assert_eq!(
            url("http://h:4318").ok().as_deref(),
            Some("http://h:4318/v1/logs")
        );
        assert_eq!(
            url("http://h:4318/").ok().as_deref(),
            Some("http://h:4318/v1/logs")
        );
        assert_eq!(
            url("http://h/otlp/v1/logs").ok().as_deref(),
            Some("http://h/otlp/v1/logs")
        );
        assert!(url("https://h").is_err());
        assert!(url("h:4318").is_err());
    }

    #[test]
    fn an_rpc_status_body_is_read() {
        let body = tonic_types::Status {
            code: 16,
            message: "unknown bearer token".into(),
            details: vec![],
        }
        .encode_to_vec();
        let url = logs_url("http://127.0.0.1:1").expect("url");
        let err = http_error(&url, reqwest::StatusCode::UNAUTHORIZED, true, &body).to_string();
        assert!(
            err.contains("HTTP 401 Unauthorized (unauthenticated): unknown bearer token"),
            "{err}"
        );
        let err = http_error(&url, reqwest::StatusCode::BAD_GATEWAY, false, b"<html>").to_string();
        assert!(err.contains("HTTP 502 Bad Gateway: <html>"), "{err}");
    }

    #[test]
    fn a_secret_is_not_printed() {
        let s: Secret = "s3cr3t".parse().expect("infallible");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
