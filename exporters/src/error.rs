//! Errors of the outbox and its transports.

use std::path::PathBuf;

/// Why an outbox operation failed. Drops (a full queue, a corrupt record)
/// are not errors: they are counted and reported in [`crate::AppendOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error("invalid outbox configuration: {0}")]
    Config(String),
    #[error("record of {size} bytes is larger than max_record_bytes ({max})")]
    RecordTooLarge { size: usize, max: usize },
    #[error("unknown outbox consumer {0:?}: list it in OutboxConfig::consumers")]
    UnknownConsumer(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// A TLS file (CA, client certificate or key) that cannot be used.
    #[error("TLS {what} {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl OutboxError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Result type of the crate.
pub type Result<T, E = OutboxError> = std::result::Result<T, E>;
