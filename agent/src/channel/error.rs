//! Why the channel stops for good, and why one stream ends.

use std::path::PathBuf;

use super::identity::IdentityError;

/// Why the agent channel stopped for good; reconnecting cannot fix these.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the agent channel needs at least one orchestrator endpoint")]
    NoEndpoint,
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "no agent identity in {} and no registration token: create one with \
         `sextant agents token` and pass it as --registration-token",
        .data_dir.display()
    )]
    NoIdentity { data_dir: PathBuf },
    /// The orchestrator refused this agent: a bad token, a revoked agent.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Cancelled while it was still registering.
    #[error("stopped before registering")]
    Stopped,
}

/// An orchestrator endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid orchestrator endpoint {endpoint:?}: {source}")]
    Invalid {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// Its TLS settings (a CA or client certificate file) cannot be used.
    #[error(transparent)]
    Tls(#[from] sextant_exporters::OutboxError),
}

/// A refusal that reconnecting cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub(super) String);

/// Why one registration attempt or one stream ended; the channel tries
/// again (a [`Refused`] aside).
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the agent credential is not a valid header value")]
    Credential,
    #[error(transparent)]
    Status(#[from] tonic::Status),
    #[error("expected Welcome, got {0}")]
    NoWelcome(String),
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// An error and its sources, `: `-separated, each said once (a message
/// that already ends with its source's text does not repeat it).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    for source in std::iter::successors(e.source(), |s| s.source()) {
        let next = source.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
    }
    text
}
