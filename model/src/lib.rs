//! Sextant's shared domain model: the deployment events that arrive over OTLP,
//! the attribute keys that carry them, and their validation.
//!
//! This crate does no I/O. Every sender encodes its events with [`otlp`]
//! (one `ResourceLogs` per batch: the reporter on the resource, one log
//! record per event); the receiver reads OTLP attributes through the
//! [`AttributeSource`] view used here; the store persists the validated
//! events.
//!
//! The read views and reports (`view`, `report`) are the hub API's
//! contract: the hub serializes them and its clients (`sextant-kit`'s
//! `HubClient`) deserialize the same types.

pub mod dora;
pub mod event;
pub mod insights;
pub mod keys;
pub mod otlp;
pub mod report;
pub mod source;
pub mod target;
pub mod time;
pub mod view;

#[cfg(test)]
mod round_trip;

pub use event::{
    AttributeSource, DeploymentEvent, DeploymentStatus, DesiredDeployment, EventError, EventKind,
    NotAString, ObservedDeployment, Placement, Reconciler,
};
pub use insights::{Band, Bucket, DoraGroup, DoraMetrics, DoraPoint, DoraReport};
pub use report::{
    ApplicationItem, CompareCell, CompareRow, CompareTarget, Comparison, DeployedGroup,
    DriftReason, EnvironmentItem, HistoryEntry, HostDeployment, HostDetail, StatusCounts,
    TargetItem, TargetSummary, WorkloadItem, order_environments,
};
pub use source::{Source, UnknownSource};
pub use target::{DesiredOrigin, DesiredView, TargetRef};
pub use time::UnixNanos;
pub use view::{
    ErrorBody, ErrorDetail, HostSummary, HostView, HostsListed, Page, Progress, Rollout,
    RolloutHost, TargetState,
};
