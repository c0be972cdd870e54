//! One OTLP/HTTP protobuf export of a logs request through the exporters'
//! HTTP transport, and what the hub answered, in words for the command line.

pub use sextant_kit::Secret;
use std::time::Duration;

use anyhow::anyhow;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use sextant_exporters::OutboxError;
use sextant_exporters::sender::{FailureReason, HttpAnswer, HttpConfig, HttpTransport, NoAnswer};

/// The hub's OTLP/HTTP logs endpoint.
pub struct Hub {
    transport: HttpTransport,
    timeout: Duration,
}

impl Hub {
    /// The endpoint given as a base URL (`http://host:4318`; a URL that
    /// already ends in `/v1/logs` is kept), with `token` sent as a bearer
    /// token and `timeout` for each request.
    pub fn new(endpoint: &str, token: Option<Secret>, timeout: Duration) -> anyhow::Result<Self> {
        let config = HttpConfig {
            token,
            timeout,
            ..HttpConfig::new(endpoint)
        };
        let transport = HttpTransport::new(config).map_err(|e| match e {
            OutboxError::Endpoint { reason, .. } => anyhow!(
                "invalid OTLP endpoint {endpoint:?} (expected e.g. http://127.0.0.1:4318): {reason}"
            ),
            other => anyhow!(other),
        })?;
        Ok(Self { transport, timeout })
    }

    /// The `/v1/logs` URL events are POSTed to.
    pub fn url(&self) -> &str {
        self.transport.url().as_str()
    }

    /// POSTs `request` as protobuf, once. An HTTP error, an undecodable
    /// answer or an unreachable hub is an `Err` whose message says what
    /// happened and where.
    pub async fn export(&self, request: &ExportLogsServiceRequest) -> anyhow::Result<Outcome> {
        let url = self.url();
        let answer = self
            .transport
            .post(request.encode_to_vec())
            .await
            .map_err(|e| no_answer(url, self.timeout, e))?;
        if !answer.status.is_success() {
            return Err(http_error(url, &answer));
        }
        let response = if answer.body.is_empty() {
            ExportLogsServiceResponse::default()
        } else {
            ExportLogsServiceResponse::decode(answer.body.as_slice()).map_err(|e| {
                anyhow!(
                    "{url} answered {} with a body that is not an OTLP logs response ({e}); \
                     is this an OTLP/HTTP endpoint?",
                    answer.status
                )
            })?
        };
        Ok(match response.partial_success {
            Some(p) => Outcome {
                rejected: p.rejected_log_records,
                message: Some(p.error_message).filter(|m| !m.is_empty()),
            },
            None => Outcome::default(),
        })
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

/// A failure before any HTTP status arrived.
fn no_answer(url: &str, timeout: Duration, error: NoAnswer) -> anyhow::Error {
    let NoAnswer {
        reason,
        connect,
        detail,
    } = error;
    if connect {
        anyhow!(
            "cannot connect to the hub's OTLP/HTTP endpoint {url}: {detail}. \
             Is the hub running there? Set it with --otlp-endpoint or SEXTANT_OTLP_ENDPOINT"
        )
    } else if reason == FailureReason::Timeout {
        anyhow!("no answer from {url} within {} s", timeout.as_secs_f32())
    } else {
        anyhow!("sending to {url} failed: {detail}")
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
fn http_error(url: &str, answer: &HttpAnswer) -> anyhow::Error {
    let status = answer.status;
    let detail = match answer.rpc_status() {
        Some(s) if !s.message.is_empty() => format!(" ({}): {}", code_name(s.code), s.message),
        Some(s) => format!(" ({})", code_name(s.code)),
        None => {
            let text = String::from_utf8_lossy(&answer.body);
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
    use reqwest::StatusCode;
    use sextant_exporters::sender::RpcStatus;

    use super::*;

    #[test]
    fn endpoint_becomes_the_logs_url() {
        let url = |e| Hub::new(e, None, Duration::from_secs(1)).map(|h| h.url().to_owned());
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
        assert_eq!(url("https://h").ok().as_deref(), Some("https://h/v1/logs"));
        let err = url("h:4318").expect_err("no scheme");
        assert!(
            err.to_string()
                .starts_with("invalid OTLP endpoint \"h:4318\""),
            "{err}"
        );
    }

    #[test]
    fn an_rpc_status_body_is_read() {
        let answer = |status, protobuf, body| HttpAnswer {
            status,
            retry_after: None,
            protobuf,
            body,
        };
        let body = RpcStatus {
            code: 16,
            message: "unknown bearer token".into(),
        }
        .encode_to_vec();
        let url = "http://127.0.0.1:1/v1/logs";
        let err = http_error(url, &answer(StatusCode::UNAUTHORIZED, true, body)).to_string();
        assert!(
            err.contains("HTTP 401 Unauthorized (unauthenticated): unknown bearer token"),
            "{err}"
        );
        let html = answer(StatusCode::BAD_GATEWAY, false, b"<html>".to_vec());
        let err = http_error(url, &html).to_string();
        assert!(err.contains("HTTP 502 Bad Gateway: <html>"), "{err}");
    }

    #[test]
    fn a_secret_is_not_printed() {
        let s: Secret = "s3cr3t".parse().expect("infallible");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
