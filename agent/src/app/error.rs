//! Why the agent could not start, or stopped on its own.

use sextant_exporters::OutboxError;

use crate::executor::ExecuteError;

/// An agent that cannot be built, or a component that failed while it ran.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// An OTLP endpoint, or one of its TLS files, that cannot be used.
    #[error(transparent)]
    Endpoint(OutboxError),
    #[error("cannot register the agent's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot open the outbox: {0}")]
    Outbox(#[source] OutboxError),
    #[error("cannot open the task journal: {0}")]
    Journal(#[source] ExecuteError),
    #[error(transparent)]
    Listen(#[from] sextant_kit::serve::BindError),
    #[error("the health and metrics listener failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the Docker executor cannot start: {0}")]
    Executor(#[source] ExecuteError),
    #[error(transparent)]
    Channel(#[from] crate::channel::ChannelError),
    #[error("the outbox sender of {endpoint} failed: {source}")]
    Sender {
        endpoint: String,
        #[source]
        source: OutboxError,
    },
    /// A component that panicked.
    #[error(transparent)]
    Stopped(#[from] sextant_kit::shutdown::Stopped),
}
