//! Why a job failed, as a kind: stored beside the job's message
//! (`jobs.failure`), shown by the API, and read by the metrics
//! (`sextant_rollbacks_total{reason}`) instead of the message's words.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kind of a job's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// More tasks failed than the strategy tolerates.
    TasksFailed,
    /// A canary stage's analysis found a breach.
    CanaryAnalysis,
    /// The engine gave up driving the job after its attempts.
    GaveUp,
    /// The job's rollback could not run, or did not complete.
    RollbackFailed,
}

impl FailureKind {
    pub const ALL: &'static [FailureKind] = &[
        Self::TasksFailed,
        Self::CanaryAnalysis,
        Self::GaveUp,
        Self::RollbackFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TasksFailed => "tasks_failed",
            Self::CanaryAnalysis => "canary_analysis",
            Self::GaveUp => "gave_up",
            Self::RollbackFailed => "rollback_failed",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored failure kind this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure kind {0:?}")]
pub struct UnknownFailureKind(pub String);

impl std::str::FromStr for FailureKind {
    type Err = UnknownFailureKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownFailureKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_text() {
        for k in FailureKind::ALL {
            assert_eq!(k.as_str().parse::<FailureKind>(), Ok(*k));
            assert_eq!(
                serde_json::to_string(k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("health".parse::<FailureKind>().is_err());
    }
}
