//! Why a request to the hub failed.

use reqwest::StatusCode;
use sextant_model::ErrorDetail;

/// Why a request to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub's address is not an `http://` or `https://` URL.
    #[error("invalid hub URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer: the hub is unreachable, the connection broke, or the
    /// request timed out.
    #[error("cannot reach the hub at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered an error status. `error` is its error body
    /// (`{"error": {"code", "message"}}`) when it sent one; `body` is what
    /// it sent, as text.
    #[error("the hub answered {status} to {url}: {}", describe(.error.as_ref(), .body))]
    Status {
        url: String,
        status: StatusCode,
        error: Option<ErrorDetail>,
        body: String,
    },
    /// The answer is larger than the client reads.
    #[error("the hub's answer to {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// A success status, but the body is not the JSON the API documents.
    #[error("the hub answered {status} to {url} with a body that cannot be read")]
    Decode {
        url: String,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
}

impl HubError {
    /// The hub answered 404 with the code `not_found`: no such workload,
    /// environment or host (not a wrong address, which has no such body).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            HubError::Status { status, error: Some(e), .. }
                if *status == StatusCode::NOT_FOUND && e.code == "not_found"
        )
    }

    /// The HTTP status, when the hub answered one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HubError::Status { status, .. } | HubError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `code: message` of the hub's error body, or the start of what it sent.
fn describe(error: Option<&ErrorDetail>, body: &str) -> String {
    if let Some(e) = error {
        return format!("{}: {}", e.code, e.message);
    }
    let text = body.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_owned(),
    }
}

/// Turns the hub's 404 `not_found` into `Ok(None)`, for callers to whom
/// "not there (yet)" is an answer rather than an error.
pub trait Found<T> {
    fn found(self) -> Result<Option<T>, HubError>;
}

impl<T> Found<T> for Result<T, HubError> {
    fn found(self) -> Result<Option<T>, HubError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: StatusCode, code: Option<&str>, body: &str) -> HubError {
        HubError::Status {
            url: "http://hub/api/v1/rollout".into(),
            status,
            error: code.map(|c| ErrorDetail {
                code: c.into(),
                message: "no workload \"w\"".into(),
            }),
            body: body.into(),
        }
    }

    #[test]
    fn only_the_hubs_not_found_is_found_none() {
        let gone: Result<(), _> = Err(status(StatusCode::NOT_FOUND, Some("not_found"), ""));
        assert!(matches!(gone.found(), Ok(None)));
        // A 404 without the hub's body is a wrong address: an error.
        let wrong: Result<(), _> = Err(status(StatusCode::NOT_FOUND, None, "nginx"));
        assert!(wrong.found().is_err());
        let ok: Result<u8, HubError> = Ok(1);
        assert!(matches!(ok.found(), Ok(Some(1))));
    }

    #[test]
    fn messages_name_the_status_and_the_hubs_words() {
        let e = status(StatusCode::FORBIDDEN, Some("forbidden"), "");
        assert_eq!(
            e.to_string(),
            "the hub answered 403 Forbidden to http://hub/api/v1/rollout: forbidden: no workload \"w\""
        );
        let e = status(StatusCode::BAD_GATEWAY, None, &"x".repeat(300));
        assert!(e.to_string().ends_with(&format!("{}…", "x".repeat(200))));
        let e = status(StatusCode::BAD_GATEWAY, None, " ");
        assert!(e.to_string().ends_with("(empty body)"));
    }
}
