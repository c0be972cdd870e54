//! The vocabulary of a task as the store keeps it and every executor
//! speaks it: what it does, the files it carries, its log streams and why
//! it failed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a task does on its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Deploy `image` (for blue-green: into the inactive `slot`).
    Deploy,
    /// Deploy the previous digest again.
    Rollback,
    /// Blue-green: send traffic to `slot`.
    Switch,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Deploy => "deploy",
            TaskKind::Rollback => "rollback",
            TaskKind::Switch => "switch",
        }
    }
}

/// A file generated for a job and uploaded to the target's artifact
/// directory. Immutable once generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// A file name, no directories (`compose-lock.yml`, `release.json` …).
    pub name: String,
    pub content: Vec<u8>,
    /// Hex sha256 of `content`.
    pub sha256: String,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// The executor's own notes (connecting, uploading, resuming …).
    System,
}

/// Why a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The target could not be reached or authenticated.
    Connection,
    /// The host key did not match, or was unknown.
    HostKey,
    /// The deploy command exited non-zero.
    Command,
    /// The task ran past its timeout.
    Timeout,
    /// The deployment ran but its health check failed.
    Health,
    /// The request itself is wrong (bad template, missing credential …).
    Invalid,
}

/// What an agent reported, in the orchestrator's terms; a kind from a
/// newer agent is a failed command, as an unknown exit is.
impl From<sextant_protocol::deploy::ErrorKind> for ErrorType {
    fn from(kind: sextant_protocol::deploy::ErrorKind) -> Self {
        use sextant_protocol::deploy::ErrorKind;
        match kind {
            ErrorKind::Connection => Self::Connection,
            ErrorKind::HostKey => Self::HostKey,
            ErrorKind::Command | ErrorKind::Unknown => Self::Command,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::Health => Self::Health,
            ErrorKind::Invalid => Self::Invalid,
        }
    }
}
