//! The vocabulary of a task as the store keeps it and every executor
//! speaks it: what it does, the files it carries and its log streams. Why
//! it failed is the deploy contract's `ErrorKind`
//! (`sextant_protocol::deploy`), as an agent reports it.

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
