//! The one error shape of every Sextant API, `{"error": {"code",
//! "message"}}` ([`sextant_model::ErrorBody`]): a stable code for programs,
//! a message for people, and `Retry-After` on 429. Each service maps its
//! own errors onto it; a store that fails answers 503 `unavailable` with
//! no detail, since the database's words (tables, hosts, users) help no
//! client and stay in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sextant_model::{ErrorBody, ErrorDetail};

use crate::rate_limit::RateLimited;

/// An API error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (429 only).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limited`, with `Retry-After`; `limit` describes the
    /// tenant's limit (`10/s, burst 20`).
    pub fn rate_limited(tenant: &str, limit: &str, limited: RateLimited) -> Self {
        let secs = limited.retry_after_secs();
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "tenant {tenant:?} is over its API rate limit ({limit}); retry in {secs} s"
                ),
            )
        }
    }

    /// 503 `unavailable`: `what` ("the hub store") is unavailable. The
    /// error and its cause go to the log only.
    pub fn unavailable(what: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(%error, cause = ?error.source(), "{what} failed; answering 503");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unavailable"),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(error: ApiError) -> (StatusCode, Option<String>, ErrorBody) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_store_failure_says_nothing_of_the_database() {
        let cause = std::io::Error::other("relation \"secret_table\" on db.internal");
        let (status, retry, body) = body(ApiError::unavailable("the hub store", &cause)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry, None);
        assert_eq!(body.error.code, "unavailable");
        assert_eq!(body.error.message, "the hub store is unavailable");
    }

    #[tokio::test]
    async fn the_body_has_one_shape() {
        let (status, _, body) = body(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such job",
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            ErrorBody {
                error: ErrorDetail {
                    code: "not_found".into(),
                    message: "no such job".into()
                }
            }
        );
    }

    #[tokio::test]
    async fn rate_limited_says_when_to_retry() {
        let limited = RateLimited {
            wait: std::time::Duration::from_millis(1500),
        };
        let (status, retry, body) =
            body(ApiError::rate_limited("team-a", "10/s, burst 20", limited)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(body.error.code, "rate_limited");
        assert!(
            body.error.message.contains("team-a"),
            "{}",
            body.error.message
        );
    }
}
