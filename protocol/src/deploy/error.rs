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

/// A command probe that names neither or both of `argv` and `command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a command probe takes exactly one of argv: [..] or command: \"shell string\"")]
pub struct ProbeCommandError;

/// A duration that is not written `250ms`, `30s`, `5m`, `1h30m`, `1d` or
/// in seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: write 250ms, 30s, 5m, 1h30m, 1d or a number of seconds")]
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
