//! Why a task was refused before it ran. What goes wrong once a task runs is
//! a [`TaskOutcome`](super::TaskOutcome), not an error.

use std::path::PathBuf;

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

/// Why [`Executor`](super::Executor) refused or could not record a task.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot connect to Docker ({endpoint}): {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("task {task_id} is already running in this agent")]
    AlreadyRunning { task_id: String },
    #[error("task journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("task journal {path} is unreadable: {message}")]
    JournalCorrupt { path: PathBuf, message: String },
    #[error("task {task_id} was recorded as a {recorded} task, not a {requested}")]
    KindMismatch {
        task_id: String,
        recorded: &'static str,
        requested: &'static str,
    },
}
