//! Sextant's shared domain model: the deployment events that arrive over OTLP,
//! the attribute keys that carry them, and their validation.
//!
//! This crate does no I/O. The receiver turns OTLP attributes into the
//! [`AttributeSource`] view used here; the store persists the validated events.

pub mod event;
pub mod keys;
pub mod report;
pub mod source;
pub mod target;
pub mod time;
pub mod view;

pub use event::{
    AttributeSource, DeploymentEvent, DeploymentStatus, DesiredDeployment, EventError, EventKind,
    ObservedDeployment, Placement, Reconciler,
};
pub use report::{
    ApplicationItem, CompareCell, CompareRow, CompareTarget, Comparison, DeployedGroup,
    DriftReason, EnvironmentItem, HistoryEntry, HostDeployment, HostDetail, StatusCounts,
    TargetItem, TargetSummary, WorkloadItem, order_environments,
};
pub use source::{Source, UnknownSource};
pub use target::{DesiredView, TargetRef};
pub use time::UnixNanos;
pub use view::{HostSummary, HostView, Page, Rollout, RolloutHost, TargetState};
