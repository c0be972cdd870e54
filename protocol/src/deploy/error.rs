//! Why a deploy spec, a compose-lock or one of their values cannot be used.

/// A spec or compose-lock file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot parse the spec: {0}")]
    Parse(String),
    #[error(
        "image {image:?} is not pinned by digest: write repository@sha256:<64 hex> \
         (tags are refused so that exactly the promoted image runs)"
    )]
    NotPinned { image: String },
    #[error("{0}")]
    Invalid(String),
}

/// A restart policy that is not one of Docker's.
#[derive(Debug, thiserror::Error)]
#[error("unknown restart policy {0:?}: use no, always, unless-stopped, on-failure or on-failure:N")]
pub struct RestartPolicyError(pub String);

/// A duration that is not written `500ms`, `2s`, `1m`, `1h` or in seconds.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {0:?}: write 500ms, 2s, 1m or 1h")]
pub struct DurationError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// The words users and the orchestrator see are those of the messages
    /// these errors replaced.
    #[test]
    fn messages_read_as_before() {
        assert_eq!(
            RestartPolicyError("sometimes".into()).to_string(),
            "unknown restart policy \"sometimes\": use no, always, unless-stopped, \
             on-failure or on-failure:N"
        );
    }
}
