//! Why a job failed, typed: the engine records the message as the job's
//! error and the [`FailureKind`] beside it, so the metrics and the API read
//! the kind instead of parsing words.

use crate::domain::JobState;
use crate::domain::failure::FailureKind;

/// Why a job stopped short of completing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobFailure {
    /// More tasks failed than the strategy tolerates; `detail` lists them.
    #[error("{count} task(s) failed: {detail}")]
    TasksFailed { count: usize, detail: String },
    /// The analysis after canary stage `stage` (from 1) found a breach.
    #[error("canary stage {stage} breached: {breach}")]
    CanaryBreach { stage: i64, breach: CanaryBreach },
    /// The engine tried to drive the job `attempts` times.
    #[error("gave up after {attempts} attempts to drive the job")]
    GaveUp { attempts: i64 },
    /// The job failed, and there was no earlier deployment to go back to.
    #[error("nothing to roll back to")]
    NothingToRollBack,
    /// The job's rollback job ended in `state`.
    #[error("rollback job {child} ended {state}")]
    RollbackEnded { child: String, state: JobState },
}

impl JobFailure {
    /// The kind stored with the job.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::TasksFailed { .. } => FailureKind::TasksFailed,
            Self::CanaryBreach { .. } => FailureKind::CanaryAnalysis,
            Self::GaveUp { .. } => FailureKind::GaveUp,
            Self::NothingToRollBack | Self::RollbackEnded { .. } => FailureKind::RollbackFailed,
        }
    }
}

/// What a canary analysis found wrong. Missing input is a breach too.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanaryBreach {
    /// A task of the stage did not succeed.
    #[error("task on {target} is {state}")]
    TaskNotSucceeded { target: String, state: String },
    #[error("hub_rollout is set but no hub is configured")]
    NoHub,
    /// The orchestrator's own store could not be read.
    #[error("{0}")]
    Store(String),
    /// The hub could not be asked.
    #[error("hub rollout: {0}")]
    HubUnreachable(String),
    /// The hub knows no such workload in the environment.
    #[error("the hub knows no {component} in {environment}")]
    NotInHub {
        component: String,
        environment: String,
    },
    /// The hub's rollout of the component on a target is not done.
    #[error("hub rollout of {component} on {target}: {problem}")]
    Rollout {
        component: String,
        target: String,
        problem: RolloutProblem,
    },
    /// The Prometheus query could not be answered.
    #[error("{0}")]
    Prometheus(#[from] PrometheusError),
    /// The Prometheus query's value is above its threshold.
    #[error("{query} = {value} is above {max}")]
    AboveThreshold { query: String, value: f64, max: f64 },
}

/// Why a hub rollout does not show the stage as done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutProblem {
    /// Hosts on another revision, or not succeeded (one note each).
    #[error("{}", .0.join(", "))]
    Hosts(Vec<String>),
    #[error("no host reports the new digest yet")]
    NotYetReported,
}

/// Why a Prometheus instant query gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrometheusError {
    /// The request failed, or Prometheus answered with an error status or
    /// a body that is not JSON.
    #[error("prometheus {url}: {error}")]
    Request { url: String, error: String },
    #[error("prometheus query {query:?} returned no sample")]
    NoSample { query: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_words_and_kinds_follow_the_variant() {
        let breach = JobFailure::CanaryBreach {
            stage: 1,
            breach: CanaryBreach::AboveThreshold {
                query: "errors".into(),
                value: 5.0,
                max: 1.0,
            },
        };
        assert_eq!(
            breach.to_string(),
            "canary stage 1 breached: errors = 5 is above 1"
        );
        assert_eq!(breach.kind(), FailureKind::CanaryAnalysis);
        let ended = JobFailure::RollbackEnded {
            child: "j2".into(),
            state: JobState::Failed,
        };
        assert_eq!(ended.to_string(), "rollback job j2 ended failed");
        assert_eq!(ended.kind(), FailureKind::RollbackFailed);
        let hosts = RolloutProblem::Hosts(vec!["a runs x".into(), "b is failed".into()]);
        assert_eq!(hosts.to_string(), "a runs x, b is failed");
    }
}
