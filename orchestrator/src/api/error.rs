//! How each error of the orchestrator maps onto the one API error answer
//! (`sextant_kit::api_error`): a status and a stable code. A store that
//! fails answers 503 `unavailable` with no detail.

use axum::Json;
use axum::http::StatusCode;
pub use sextant_kit::api_error::ApiError;
pub use sextant_model::{ErrorBody, ErrorDetail};

use crate::api::auth::AuthError;
use crate::service::OrchestratorError;

/// The orchestrator's codes: `invalid`, `not_found`, `conflict`,
/// `ambiguous`, `forbidden`, `unauthenticated`, `rate_limited`,
/// `no_agent_channel` and `unavailable`.
impl From<OrchestratorError> for ApiError {
    fn from(e: OrchestratorError) -> Self {
        let (status, code) = match &e {
            OrchestratorError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            OrchestratorError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            OrchestratorError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            OrchestratorError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            OrchestratorError::Store(store) => {
                return ApiError::unavailable("the orchestrator store", store);
            }
        };
        ApiError::new(status, code, e.to_string())
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
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        OrchestratorError::Store(e).into()
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
}

pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// A page of a list (`store::Page`): `limit` clamped to 1..=1000,
/// `default` when absent.
pub(crate) fn page(
    before: Option<&str>,
    limit: Option<i64>,
    default: i64,
) -> crate::store::Page<'_> {
    crate::store::Page {
        before,
        limit: limit.unwrap_or(default).clamp(1, 1000),
    }
}

/// 400 `invalid` for a `before` that is not a row of the caller's list.
pub(crate) fn unknown_cursor(what: &str, page: crate::store::Page<'_>) -> ApiError {
    invalid(format!(
        "before: no {what} {:?} here; it takes the id of the last {what} of the previous page",
        page.before.unwrap_or_default()
    ))
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
