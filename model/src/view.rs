//! What the hub answers: the current state per target and rollout progress.
//! These are the JSON shapes of the read API.

use serde::{Deserialize, Serialize};

use crate::event::DeploymentStatus;
use crate::report::TargetSummary;
use crate::time::UnixNanos;

// Their home is `source.rs` and `target.rs`; this path still names them.
pub use crate::source::{Source, UnknownSource};
pub use crate::target::DesiredView;

/// What one host (through one reconciler) reports for a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostView {
    pub host: String,
    /// The reconciler that reported, or null when none was named.
    pub reconciler: Option<String>,
    /// What kind of reporter that is (the reconciler's type).
    pub source: Source,
    pub revision: String,
    /// Known when a desired event named this revision.
    pub version: Option<String>,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    pub observed_at: UnixNanos,
    /// The revision equals the desired revision and the status is `succeeded`.
    pub in_sync: bool,
}

/// State of one (application, workload, environment, target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetState {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environment: String,
    pub target: String,
    pub desired: Option<DesiredView>,
    pub hosts: Vec<HostView>,
}

impl HostView {
    /// Sets `in_sync` against the target's desired assignment.
    pub fn with_sync(mut self, desired: Option<&DesiredView>) -> Self {
        self.in_sync = desired.is_some_and(|d| {
            d.revision == self.revision && self.status == DeploymentStatus::Succeeded
        });
        self
    }
}

/// Rollout progress of a workload in an environment.
///
/// `succeeded`, `failed` and `in_progress` count hosts whose current revision
/// is the desired one, by status; `pending` counts hosts on another revision.
/// The four always add up to `total_hosts`.
///
/// `hosts` lists, by default, only the hosts that need attention — every
/// host not `succeeded` on its target's desired revision: failed first,
/// then in progress, then pending, each by host name — up to a limit, with
/// `hosts_omitted` counting the rest. `hosts_listed` says which list it is:
/// `attention`, or `all` (every host, by target and host name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub desired: Option<DesiredView>,
    pub total_hosts: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub in_progress: usize,
    pub pending: usize,
    /// `attention` or `all`.
    pub hosts_listed: HostsListed,
    /// Hosts of the list left out by the limit.
    pub hosts_omitted: usize,
    pub hosts: Vec<RolloutHost>,
}

/// One host in a rollout, with the target it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutHost {
    pub target: String,
    #[serde(flatten)]
    pub host: HostView,
    /// `succeeded`, `failed`, `in_progress` (on the desired revision) or
    /// `pending` (on another revision).
    pub progress: Progress,
}

/// Which hosts a [`Rollout`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostsListed {
    /// The hosts not yet succeeded on their target's desired revision,
    /// failed first, up to a limit.
    Attention,
    /// Every host, by target and host name.
    All,
}

impl HostsListed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attention => "attention",
            Self::All => "all",
        }
    }
}

/// Where a host of a [`Rollout`] stands against its target's desired
/// revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// On the desired revision, `succeeded`.
    Succeeded,
    /// On the desired revision, `failed`.
    Failed,
    /// On the desired revision, `in_progress`.
    InProgress,
    /// On another revision (or its target desires none).
    Pending,
}

impl Progress {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Pending => "pending",
        }
    }
}

impl From<DeploymentStatus> for Progress {
    /// A host on the desired revision progresses as its status says.
    fn from(status: DeploymentStatus) -> Self {
        match status {
            DeploymentStatus::Succeeded => Self::Succeeded,
            DeploymentStatus::Failed => Self::Failed,
            DeploymentStatus::InProgress => Self::InProgress,
        }
    }
}

/// The one shape of every error Sextant's APIs (the hub's and the
/// orchestrator's) answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, in an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable; each API lists its codes (the hub: `invalid_query`,
    /// `not_found`, `unauthenticated`, `forbidden`, `rate_limited`,
    /// `unavailable`).
    pub code: String,
    /// For people; may change.
    pub message: String,
}

impl Rollout {
    /// Aggregates the states of one workload's targets in one environment.
    /// Each host is measured against its own target's desired revision.
    /// `desired` is reported when all targets agree on it.
    pub fn from_states(states: &[TargetState]) -> Self {
        let mut rollout = Rollout {
            desired: None,
            total_hosts: 0,
            succeeded: 0,
            failed: 0,
            in_progress: 0,
            pending: 0,
            hosts_listed: HostsListed::All,
            hosts_omitted: 0,
            hosts: Vec::new(),
        };
        let mut desired = states.first().and_then(|s| s.desired.clone());
        for state in states {
            if state.desired.as_ref().map(|d| &d.revision) != desired.as_ref().map(|d| &d.revision)
            {
                desired = None;
            }
            let want = state.desired.as_ref().map(|d| d.revision.as_str());
            for host in &state.hosts {
                rollout.total_hosts += 1;
                let progress = if Some(host.revision.as_str()) != want {
                    rollout.pending += 1;
                    Progress::Pending
                } else {
                    match host.status {
                        DeploymentStatus::Succeeded => rollout.succeeded += 1,
                        DeploymentStatus::Failed => rollout.failed += 1,
                        DeploymentStatus::InProgress => rollout.in_progress += 1,
                    }
                    Progress::from(host.status)
                };
                rollout.hosts.push(RolloutHost {
                    target: state.target.clone(),
                    host: host.clone(),
                    progress,
                });
            }
        }
        rollout.desired = desired;
        rollout
    }

    /// The rollout from the targets' host counters (the environment state
    /// report's groups) and the hosts that need attention, as the store
    /// listed them (at most the limit, in the documented order). Each
    /// listed host carries its target's desired revision.
    pub fn from_summaries(
        summaries: &[TargetSummary],
        listed: Vec<(String, Option<String>, HostView)>,
    ) -> Self {
        let mut rollout = Rollout {
            desired: None,
            total_hosts: 0,
            succeeded: 0,
            failed: 0,
            in_progress: 0,
            pending: 0,
            hosts_listed: HostsListed::Attention,
            hosts_omitted: 0,
            hosts: Vec::new(),
        };
        let mut desired = summaries.first().and_then(|s| s.desired.clone());
        for s in summaries {
            if s.desired.as_ref().map(|d| &d.revision) != desired.as_ref().map(|d| &d.revision) {
                desired = None;
            }
            let want = s.desired.as_ref().map(|d| d.revision.as_str());
            for g in &s.deployed {
                let n = usize::try_from(g.hosts).unwrap_or(usize::MAX);
                rollout.total_hosts += n;
                if Some(g.revision.as_str()) != want {
                    rollout.pending += n;
                } else {
                    match g.status {
                        DeploymentStatus::Succeeded => rollout.succeeded += n,
                        DeploymentStatus::Failed => rollout.failed += n,
                        DeploymentStatus::InProgress => rollout.in_progress += n,
                    }
                }
            }
        }
        rollout.desired = desired;
        for (target, want, host) in listed {
            let desired_view = want.map(|revision| DesiredView {
                version: String::new(),
                revision,
                at: UnixNanos(0),
                origin: None,
            });
            let host = host.with_sync(desired_view.as_ref());
            let progress = match &desired_view {
                Some(d) if d.revision == host.revision => Progress::from(host.status),
                _ => Progress::Pending,
            };
            rollout.hosts.push(RolloutHost {
                target,
                host,
                progress,
            });
        }
        let attention = rollout.total_hosts - rollout.succeeded;
        rollout.hosts_omitted = attention.saturating_sub(rollout.hosts.len());
        rollout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, revision: &str, status: DeploymentStatus) -> HostView {
        HostView {
            host: name.into(),
            reconciler: None,
            source: Source::Otlp,
            revision: revision.into(),
            version: None,
            status,
            message: None,
            observed_at: UnixNanos(1),
            in_sync: false,
        }
    }

    fn state(target: &str, desired: Option<&str>, hosts: Vec<HostView>) -> TargetState {
        let desired = desired.map(|r| DesiredView {
            version: "1".into(),
            revision: r.into(),
            at: UnixNanos(0),
            origin: None,
        });
        TargetState {
            workspace: "default".into(),
            application: "a".into(),
            workload: "w".into(),
            environment: "e".into(),
            target: target.into(),
            hosts: hosts
                .into_iter()
                .map(|h| h.with_sync(desired.as_ref()))
                .collect(),
            desired,
        }
    }

    #[test]
    fn counts_add_up_and_pending_means_other_revision() {
        use DeploymentStatus::*;
        let s = state(
            "t",
            Some("r2"),
            vec![
                host("h1", "r2", Succeeded),
                host("h2", "r2", Failed),
                host("h3", "r2", InProgress),
                host("h4", "r1", Succeeded),
                host("h5", "r1", Failed),
            ],
        );
        let r = Rollout::from_states(&[s]);
        assert_eq!(
            (
                r.total_hosts,
                r.succeeded,
                r.failed,
                r.in_progress,
                r.pending
            ),
            (5, 1, 1, 1, 2)
        );
        assert_eq!(r.desired.as_ref().map(|d| d.revision.as_str()), Some("r2"));
        assert!(r.hosts[0].host.in_sync);
        assert!(!r.hosts[3].host.in_sync);
        assert_eq!(r.hosts[4].progress, Progress::Pending);
    }

    #[test]
    fn from_summaries_counts_every_host_and_lists_those_needing_attention() {
        use crate::report::DeployedGroup;
        use crate::target::TargetRef;
        use DeploymentStatus::*;
        let group = |revision: &str, status, hosts| DeployedGroup {
            version: None,
            revision: revision.into(),
            status,
            hosts,
            desired: false,
        };
        let at = TargetRef {
            workspace: "default".into(),
            application: "a".into(),
            workload: "w".into(),
            environment: "e".into(),
            target: "t".into(),
        };
        let desired = Some(DesiredView {
            version: "2".into(),
            revision: "r2".into(),
            at: UnixNanos(0),
            origin: None,
        });
        let summary = TargetSummary::new(
            at,
            desired,
            vec![
                group("r2", Succeeded, 90),
                group("r2", Failed, 4),
                group("r2", InProgress, 3),
                group("r1", Succeeded, 3),
            ],
        );
        // The store listed 2 of the 10 hosts needing attention.
        let listed = vec![
            (
                "t".to_owned(),
                Some("r2".to_owned()),
                host("h1", "r2", Failed),
            ),
            (
                "t".to_owned(),
                Some("r2".to_owned()),
                host("h9", "r1", Succeeded),
            ),
        ];
        let r = Rollout::from_summaries(&[summary], listed);
        assert_eq!(
            (
                r.total_hosts,
                r.succeeded,
                r.failed,
                r.in_progress,
                r.pending
            ),
            (100, 90, 4, 3, 3)
        );
        assert_eq!(r.desired.as_ref().map(|d| d.version.as_str()), Some("2"));
        assert_eq!(
            (r.hosts_listed, r.hosts_omitted),
            (HostsListed::Attention, 8)
        );
        assert_eq!(r.hosts[0].progress, Progress::Failed);
        assert_eq!(r.hosts[1].progress, Progress::Pending);
        assert!(!r.hosts[1].host.in_sync);
    }

    #[test]
    fn without_desired_state_every_host_is_pending() {
        let r = Rollout::from_states(&[state(
            "t",
            None,
            vec![host("h", "r", DeploymentStatus::Succeeded)],
        )]);
        assert_eq!((r.total_hosts, r.pending), (1, 1));
        assert_eq!(r.desired, None);
    }

    #[test]
    fn targets_that_disagree_report_no_single_desired() {
        use DeploymentStatus::*;
        let r = Rollout::from_states(&[
            state("a", Some("r1"), vec![host("h1", "r1", Succeeded)]),
            state("b", Some("r2"), vec![host("h2", "r2", Succeeded)]),
        ]);
        assert_eq!((r.total_hosts, r.succeeded, r.pending), (2, 2, 0));
        assert_eq!(r.desired, None);
    }
}

/// One host in `GET /api/v1/hosts`: when it last reported, whether that is
/// too long ago, and what it runs, counted by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostSummary {
    pub host: String,
    /// The newest observation from this host, over all its targets.
    pub last_seen_at: UnixNanos,
    /// No report for longer than the hub's stale threshold.
    pub stale: bool,
    /// Distinct workloads the host reports.
    pub workloads: u64,
    /// The sources its rows come from (in the order of [`Source::ALL`]).
    pub sources: Vec<Source>,
    /// Current (host, reconciler, target) rows by status.
    pub succeeded: u64,
    pub failed: u64,
    pub in_progress: u64,
}

/// One page of a list. `next_cursor` is opaque: pass it back as `cursor`
/// for the next page; null on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
