//! Report endpoints: environment state, compare, drift, the host view,
//! history, the catalog lists and DORA's metrics (`dora`), one file each. Each reads through the
//! store and leaves the rules to `sextant-model`; this module holds what
//! they share: errors, keyset cursors, pages and the report cache's keys.

pub(crate) mod catalog;
pub(crate) mod compare;
pub(crate) mod dora;
pub(crate) mod drift;
pub(crate) mod environment_state;
pub(crate) mod history;
pub(crate) mod host;

use axum::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sextant_model::Page;

use super::ApiError;

pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

pub(super) fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// Encodes a keyset cursor: JSON, hex-encoded, so it is opaque and URL-safe.
pub(super) fn encode_cursor<T: Serialize>(key: &T) -> Option<String> {
    serde_json::to_vec(key).ok().map(hex::encode)
}

pub(super) fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| invalid("invalid cursor: pass back the next_cursor of the previous page"))
}

/// Splits a page fetched with one extra row into the page and its cursor.
pub(super) fn paginate<T, C: Serialize>(mut rows: Vec<(T, C)>, limit: u32) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().and_then(|(_, c)| encode_cursor(c))
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(|(item, _)| item).collect(),
        next_cursor,
    }
}

/// The cache key of a report request: its name and parameters as JSON.
pub(super) fn cache_key<T: Serialize>(parameters: &T) -> String {
    serde_json::to_string(parameters).unwrap_or_default()
}

/// Serializes a report for the cache.
pub(super) fn to_json<T: Serialize>(report: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(report).map(Bytes::from).map_err(|e| {
        tracing::error!(error = %e, "Report serialization failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the report could not be serialized",
        )
    })
}
