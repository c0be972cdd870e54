//! Strategies as plans: which batch each target belongs to, how many tasks
//! of a batch run at once, and what is checked between batches.

use crate::domain::Strategy;

/// A strategy no job can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("rolling: batch_size must be at least 1")]
    BatchSize,
    #[error("canary: at least one stage is needed")]
    NoStages,
    #[error("canary: stages are percentages from 1 to 100")]
    StageRange,
    #[error("canary: stages must ascend")]
    NotAscending,
    #[error("canary: the last stage must be 100")]
    LastStage,
}

/// Checks a strategy before a job is created.
pub fn validate(strategy: &Strategy) -> Result<(), StrategyError> {
    match strategy {
        Strategy::AllAtOnce { .. } | Strategy::BlueGreen {} => Ok(()),
        Strategy::Rolling { batch_size, .. } if *batch_size == 0 => Err(StrategyError::BatchSize),
        Strategy::Rolling { .. } => Ok(()),
        Strategy::Canary { stages, .. } => {
            if stages.is_empty() {
                return Err(StrategyError::NoStages);
            }
            if stages.iter().any(|s| *s == 0 || *s > 100) {
                return Err(StrategyError::StageRange);
            }
            if stages.windows(2).any(|w| w[0] >= w[1]) {
                return Err(StrategyError::NotAscending);
            }
            if stages.last() != Some(&100) {
                return Err(StrategyError::LastStage);
            }
            Ok(())
        }
    }
}

/// The batch of each of `n` targets (in target order), for deploy tasks.
/// Blue-green puts every deploy in batch 0; its switches go in batch 1.
pub fn batches(strategy: &Strategy, n: usize) -> Vec<usize> {
    match strategy {
        Strategy::AllAtOnce { .. } | Strategy::BlueGreen {} => vec![0; n],
        Strategy::Rolling { batch_size, .. } => {
            let size = (*batch_size).max(1) as usize;
            (0..n).map(|i| i / size).collect()
        }
        Strategy::Canary { stages, .. } => {
            // Cumulative targets reached by each stage: rounded up, and at
            // least one more than the stage before while targets remain.
            let mut out = Vec::with_capacity(n);
            let mut reached = 0usize;
            for (stage, pct) in stages.iter().enumerate() {
                let want = (n * (*pct as usize)).div_ceil(100);
                let upto = want.max((reached + 1).min(n)).min(n);
                while reached < upto {
                    out.push(stage);
                    reached += 1;
                }
            }
            while out.len() < n {
                out.push(stages.len().saturating_sub(1));
            }
            out
        }
    }
}

/// How many tasks of one batch run at once (0: all).
pub fn parallelism(strategy: &Strategy) -> usize {
    match strategy {
        Strategy::AllAtOnce { max_parallel } => *max_parallel as usize,
        _ => 0,
    }
}

/// Failed targets tolerated before the job fails (rolling's
/// `max_unavailable`; every other strategy tolerates none).
pub fn tolerated_failures(strategy: &Strategy) -> usize {
    match strategy {
        Strategy::Rolling {
            max_unavailable, ..
        } => *max_unavailable as usize,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_stages_cover_every_target_once_in_order() {
        let s = Strategy::Canary {
            stages: vec![10, 50, 100],
            analysis: None,
        };
        assert_eq!(batches(&s, 10), vec![0, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(batches(&s, 3), vec![0, 1, 2]);
        assert_eq!(batches(&s, 1), vec![0]);
        assert_eq!(batches(&s, 2), vec![0, 1]);
    }

    #[test]
    fn rolling_batches_by_size() {
        let s = Strategy::Rolling {
            batch_size: 2,
            max_unavailable: 0,
            pause: None,
        };
        assert_eq!(batches(&s, 5), vec![0, 0, 1, 1, 2]);
    }

    #[test]
    fn bad_strategies_are_refused() {
        let canary = |stages: Vec<u32>| Strategy::Canary {
            stages,
            analysis: None,
        };
        assert!(validate(&canary(vec![50, 10, 100])).is_err());
        assert!(validate(&canary(vec![10, 50])).is_err());
        assert!(validate(&canary(vec![0, 100])).is_err());
        assert!(validate(&canary(vec![25, 100])).is_ok());
        assert!(
            validate(&Strategy::Rolling {
                batch_size: 0,
                max_unavailable: 0,
                pause: None
            })
            .is_err()
        );
    }
}
