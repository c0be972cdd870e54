//! The state machines of promotions, jobs and tasks: their states as
//! stored text, and which moves each allows.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}

/// A state (or kind) name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    /// The enum's name, e.g. `PromotionState`.
    pub kind: &'static str,
    pub value: String,
}

state_enum!(
    /// The life of a promotion.
    PromotionState {
        Requested => "requested",
        AwaitingApproval => "awaiting_approval",
        Approved => "approved",
        Rejected => "rejected",
        Deploying => "deploying",
        Deployed => "deployed",
        Failed => "failed",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
    }
);

impl PromotionState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::Deployed | Self::Failed | Self::RolledBack | Self::Cancelled
        )
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use PromotionState::*;
        matches!(
            (self, next),
            (
                Requested,
                AwaitingApproval | Approved | Rejected | Cancelled
            ) | (AwaitingApproval, Approved | Rejected | Cancelled)
                | (Approved, Deploying | Cancelled)
                | (Deploying, Deployed | Failed | RolledBack)
                | (Failed, RolledBack)
                | (Deployed, RolledBack)
        )
    }
}

state_enum!(
    /// The life of a deployment job.
    JobState {
        Pending => "pending",
        Preparing => "preparing",
        Running => "running",
        Completing => "completing",
        Completed => "completed",
        Failed => "failed",
        RollingBack => "rolling_back",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
    }
);

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::RolledBack | Self::Cancelled
        )
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Pending, Preparing | Failed | Cancelled)
                | (Preparing, Running | Failed | Cancelled)
                | (Running, Completing | Failed | RollingBack | Cancelled)
                | (Completing, Completed | Failed)
                | (Failed, RollingBack)
                | (Completed, RollingBack)
                | (RollingBack, RolledBack | Failed)
        )
    }
}

state_enum!(
    /// The life of one task: one component on one target.
    TaskState {
        Pending => "pending",
        Queued => "queued",
        Dispatched => "dispatched",
        Running => "running",
        Verifying => "verifying",
        Succeeded => "succeeded",
        Failed => "failed",
        Retrying => "retrying",
        Skipped => "skipped",
    }
);

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Pending, Queued | Skipped)
                | (Queued, Dispatched | Failed | Skipped)
                | (Dispatched, Running | Failed | Retrying)
                | (Running, Verifying | Succeeded | Failed | Retrying)
                | (Verifying, Succeeded | Failed | Retrying)
                | (Retrying, Queued | Failed)
        )
    }
}

state_enum!(
    /// What a job does.
    JobKind {
        Deploy => "deploy",
        Rollback => "rollback",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machines_refuse_skips() {
        assert!(JobState::Pending.can_move_to(JobState::Preparing));
        assert!(!JobState::Pending.can_move_to(JobState::Completed));
        assert!(TaskState::Verifying.can_move_to(TaskState::Succeeded));
        assert!(!TaskState::Succeeded.can_move_to(TaskState::Running));
        assert!(PromotionState::AwaitingApproval.can_move_to(PromotionState::Approved));
        assert!(!PromotionState::Rejected.can_move_to(PromotionState::Approved));
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
    }
}
