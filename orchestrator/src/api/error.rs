//! The API's one error shape, `{"error": {"code", "message"}}`, and how
//! each error of the orchestrator maps to a status and a stable code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sextant_kit::rate_limit::{RateLimited, TenantLimiter};
use utoipa::ToSchema;

use crate::api::auth::AuthError;
use crate::service::OrchestratorError;

/// An API error: `{"error": {"code", "message"}}`; the code is stable.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// Seconds for `Retry-After` (429 only).
    pub(super) retry_after: Option<u64>,
}

/// The one shape of every API error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid`, `not_found`, `conflict`, `forbidden`,
    /// `unauthenticated`, `rate_limited`, `internal`.
    code: String,
    message: String,
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

impl ApiError {
    /// 429 `rate_limited`, with `Retry-After`.
    pub(super) fn rate_limited(tenant: &str, limit: &TenantLimiter, limited: RateLimited) -> Self {
        let secs = limited.retry_after_secs();
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: format!(
                "tenant {tenant:?} is over its API rate limit ({}); retry in {secs} s",
                limit.config().describe()
            ),
            retry_after: Some(secs),
        }
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(e: OrchestratorError) -> Self {
        let (status, code) = match &e {
            OrchestratorError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OrchestratorError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            OrchestratorError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            OrchestratorError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            OrchestratorError::Store(store) => {
                // The database's words stay in the log: they can name
                // tables, hosts and users, and help no client.
                tracing::error!(error = %store, cause = ?std::error::Error::source(store),
                    "Store failed; answering 503");
                return Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "unavailable",
                    message: "the orchestrator store is unavailable".into(),
                    retry_after: None,
                };
            }
        };
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after: None,
        }
    }
}

/// 401 `unauthenticated` without a known token, 403 `forbidden` (naming
/// the missing scope) when its scopes do not cover the request.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (status, code) = match e {
            AuthError::Missing | AuthError::Unknown => {
                (StatusCode::UNAUTHORIZED, "unauthenticated")
            }
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        };
        Self {
            status,
            code,
            message: e.to_string(),
            retry_after: None,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        OrchestratorError::Store(e).into()
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid",
        message: message.into(),
        retry_after: None,
    }
}

pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: message.into(),
        retry_after: None,
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
