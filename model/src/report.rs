//! The hub's reports: environment state (deployed versions grouped with host
//! counts), environment comparison, drift, a host's view and history. The
//! store fetches rows; the rules that turn them into answers live here, so
//! both backends and every client agree on them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::DeploymentStatus;
use crate::source::Source;
use crate::target::{DesiredOrigin, DesiredView};
use crate::time::UnixNanos;

// Its home is `target.rs`; this path still names it.
pub use crate::target::TargetRef;

/// Hosts of a target on one (revision, status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployedGroup {
    /// Known when a desired event named this revision.
    pub version: Option<String>,
    pub revision: String,
    pub status: DeploymentStatus,
    pub hosts: u64,
    /// `revision` is the target's desired revision.
    pub desired: bool,
}

/// The hosts of a target that one reconciler reports for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceHosts {
    /// The reconciler's name, or null when the reports named none.
    pub reconciler: Option<String>,
    /// What kind of reporter it is.
    pub source: Source,
    pub hosts: u64,
}

/// One row of the environment state report: a target's scheduled version
/// and what its hosts run, grouped by version and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetSummary {
    #[serde(flatten)]
    pub at: TargetRef,
    pub desired: Option<DesiredView>,
    /// Largest groups first.
    pub deployed: Vec<DeployedGroup>,
    pub total_hosts: u64,
    /// Hosts on the desired revision with status `succeeded`.
    pub in_sync_hosts: u64,
    /// Who reports the target's hosts: one entry per reconciler, by source
    /// and then reconciler name. Their hosts add up to `total_hosts`.
    pub sources: Vec<SourceHosts>,
}

impl TargetSummary {
    /// Builds a summary from the target's groups, in any order.
    pub fn new(
        at: TargetRef,
        desired: Option<DesiredView>,
        mut deployed: Vec<DeployedGroup>,
    ) -> Self {
        let want = desired.as_ref().map(|d| d.revision.as_str());
        for g in &mut deployed {
            g.desired = Some(g.revision.as_str()) == want;
        }
        deployed.sort_by(|a, b| {
            b.hosts
                .cmp(&a.hosts)
                .then_with(|| a.revision.cmp(&b.revision))
                .then_with(|| a.status.as_str().cmp(b.status.as_str()))
        });
        let total_hosts = deployed.iter().map(|g| g.hosts).sum();
        let in_sync_hosts = deployed
            .iter()
            .filter(|g| g.desired && g.status == DeploymentStatus::Succeeded)
            .map(|g| g.hosts)
            .sum();
        Self {
            at,
            desired,
            deployed,
            total_hosts,
            in_sync_hosts,
            sources: Vec::new(),
        }
    }

    /// Sets the reporters of the target, in any order.
    pub fn with_sources(mut self, mut sources: Vec<SourceHosts>) -> Self {
        sources.sort_by(|a, b| {
            a.source
                .cmp(&b.source)
                .then_with(|| a.reconciler.cmp(&b.reconciler))
        });
        self.sources = sources;
        self
    }
}

/// One environment's side of a comparison row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompareCell {
    /// The environment's targets of this workload, with their state.
    pub targets: Vec<CompareTarget>,
    /// Distinct desired versions over the targets.
    pub desired_versions: Vec<String>,
    /// Distinct deployed versions (or revisions, where no version is known).
    pub deployed_versions: Vec<String>,
}

/// A target inside a comparison cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompareTarget {
    pub target: String,
    pub desired: Option<DesiredView>,
    pub deployed: Vec<DeployedGroup>,
    pub total_hosts: u64,
    /// Who reports the target's hosts, as in the environment state.
    pub sources: Vec<SourceHosts>,
}

/// One workload compared across environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompareRow {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    /// Keyed by environment; an environment where the workload has no target
    /// is absent.
    pub environments: BTreeMap<String, CompareCell>,
    /// The environments disagree on the desired or the deployed versions,
    /// or the workload is missing from one of them.
    pub differs: bool,
}

/// The comparison report (`GET /api/v1/compare`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// The environments compared, in the order asked.
    pub environments: Vec<String>,
    /// One page of workloads, in (workspace, application, workload) order.
    pub workloads: Vec<CompareRow>,
    /// Pass back as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl Comparison {
    /// Compares `environments` given the summaries of all their targets.
    pub fn build(environments: Vec<String>, summaries: Vec<TargetSummary>) -> Self {
        let mut rows: BTreeMap<(String, String, String), BTreeMap<String, CompareCell>> =
            BTreeMap::new();
        for s in summaries {
            let cell = rows
                .entry((s.at.workspace, s.at.application, s.at.workload))
                .or_default()
                .entry(s.at.environment)
                .or_insert_with(|| CompareCell {
                    targets: Vec::new(),
                    desired_versions: Vec::new(),
                    deployed_versions: Vec::new(),
                });
            cell.targets.push(CompareTarget {
                target: s.at.target,
                desired: s.desired,
                deployed: s.deployed,
                total_hosts: s.total_hosts,
                sources: s.sources,
            });
        }
        let workloads = rows
            .into_iter()
            .map(|((workspace, application, workload), mut cells)| {
                for cell in cells.values_mut() {
                    let desired: BTreeSet<String> = cell
                        .targets
                        .iter()
                        .filter_map(|t| t.desired.as_ref().map(|d| d.version.clone()))
                        .collect();
                    let deployed: BTreeSet<String> = cell
                        .targets
                        .iter()
                        .flat_map(|t| &t.deployed)
                        .map(|g| g.version.clone().unwrap_or_else(|| g.revision.clone()))
                        .collect();
                    cell.desired_versions = desired.into_iter().collect();
                    cell.deployed_versions = deployed.into_iter().collect();
                }
                let mut sides = cells
                    .values()
                    .map(|c| (&c.desired_versions, &c.deployed_versions));
                let first = sides.next();
                let differs = cells.len() < environments.len() || sides.any(|s| Some(s) != first);
                CompareRow {
                    workspace,
                    application,
                    workload,
                    environments: cells,
                    differs,
                }
            })
            .collect();
        Self {
            environments,
            workloads,
            next_cursor: None,
        }
    }
}

/// An environment in `GET /api/v1/environments`, in the configured order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnvironmentItem {
    pub name: String,
    pub targets: u64,
    pub hosts: u64,
}

/// An application in `GET /api/v1/applications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplicationItem {
    pub workspace: String,
    pub application: String,
    pub workloads: u64,
}

/// A workload in `GET /api/v1/workloads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkloadItem {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environments: u64,
    pub targets: u64,
}

/// A deployment target in `GET /api/v1/targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetItem {
    #[serde(flatten)]
    pub at: TargetRef,
    pub hosts: u64,
}

/// Orders environment names: those listed in `order` first, in that order,
/// then the rest alphabetically.
pub fn order_environments<T>(items: &mut [T], name: impl Fn(&T) -> &str, order: &[String]) {
    items.sort_by(|a, b| {
        let rank = |n: &str| order.iter().position(|o| o == n).unwrap_or(usize::MAX);
        let (na, nb) = (name(a), name(b));
        rank(na).cmp(&rank(nb)).then_with(|| na.cmp(nb))
    });
}

/// Why a host's state for a target differs from what was promoted.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriftReason {
    /// The host runs another revision than the desired one.
    WrongRevision,
    /// The host reports `failed`.
    Failed,
    /// Nothing was ever promoted to what runs there.
    NoDesiredState,
    /// No report for longer than the stale threshold.
    Stale,
}

impl DriftReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongRevision => "wrong_revision",
            Self::Failed => "failed",
            Self::NoDesiredState => "no_desired_state",
            Self::Stale => "stale",
        }
    }

    /// The reasons a current row drifts, most telling first; empty when it
    /// does not. A host still rolling out the desired revision
    /// (`in_progress`) is not drift.
    pub fn classify(
        desired_revision: Option<&str>,
        revision: &str,
        status: DeploymentStatus,
        observed_at: UnixNanos,
        stale_before: UnixNanos,
    ) -> Vec<DriftReason> {
        let mut reasons = Vec::new();
        match desired_revision {
            None => reasons.push(Self::NoDesiredState),
            Some(want) if want != revision => reasons.push(Self::WrongRevision),
            Some(_) => {}
        }
        if status == DeploymentStatus::Failed {
            reasons.insert(0, Self::Failed);
        }
        if observed_at < stale_before {
            reasons.push(Self::Stale);
        }
        reasons
    }
}

/// What one host reports for one target, measured against desired state.
/// Rows of the host view and of the drift list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostDeployment {
    pub host: String,
    /// The reconciler that reported, or null when none was named.
    pub reconciler: Option<String>,
    /// What kind of reporter that is (the reconciler's type).
    pub source: Source,
    #[serde(flatten)]
    pub at: TargetRef,
    pub desired: Option<DesiredView>,
    pub version: Option<String>,
    pub revision: String,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    /// The orchestrator job that made the last change, when one did
    /// (`sextant.job.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub observed_at: UnixNanos,
    pub in_sync: bool,
    /// Empty when the host is where it should be.
    pub drift: Vec<DriftReason>,
}

impl HostDeployment {
    /// Fills `in_sync` and `drift` from the other fields.
    /// Whether a host with these rows is stale: its newest report from a
    /// source that reports on a schedule is older than `stale_before`
    /// (Argo CD's rows, sent only on change, never make a host stale).
    pub fn host_is_stale(rows: &[HostDeployment], stale_before: UnixNanos) -> bool {
        rows.iter()
            .filter(|d| d.source.reports_periodically())
            .map(|d| d.observed_at)
            .max()
            .is_some_and(|last| last < stale_before)
    }

    pub fn measured(mut self, stale_before: UnixNanos) -> Self {
        let want = self.desired.as_ref().map(|d| d.revision.as_str());
        self.in_sync =
            want == Some(self.revision.as_str()) && self.status == DeploymentStatus::Succeeded;
        // A source that reports only on change is never stale.
        let stale_before = if self.source.reports_periodically() {
            stale_before
        } else {
            UnixNanos(i64::MIN)
        };
        self.drift = DriftReason::classify(
            want,
            &self.revision,
            self.status,
            self.observed_at,
            stale_before,
        );
        self
    }
}

/// Everything a host runs (`GET /api/v1/hosts/{host}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostDetail {
    pub host: String,
    pub last_seen_at: UnixNanos,
    pub stale: bool,
    pub deployments: Vec<HostDeployment>,
}

/// Host counts of a desired version's revision, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub in_progress: u64,
}

/// One entry of history, newest first (`GET /api/v1/history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// A desired assignment. `hosts` counts the target's hosts that now
    /// report its revision, by status.
    Desired {
        at: UnixNanos,
        #[serde(flatten)]
        target: TargetRef,
        version: String,
        revision: String,
        hosts: StatusCounts,
        /// What set it, when the sender said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<DesiredOrigin>,
    },
    /// An observed status change of one host.
    Observed {
        at: UnixNanos,
        #[serde(flatten)]
        target: TargetRef,
        host: String,
        reconciler: Option<String>,
        /// What kind of reporter sent the change.
        source: Source,
        version: Option<String>,
        revision: String,
        status: DeploymentStatus,
        message: Option<String>,
        /// The orchestrator job that made the change, when one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStatus::*;

    fn at(env: &str, target: &str) -> TargetRef {
        TargetRef {
            workspace: "default".into(),
            application: "shop".into(),
            workload: "checkout".into(),
            environment: env.into(),
            target: target.into(),
        }
    }

    fn desired(version: &str, revision: &str) -> Option<DesiredView> {
        Some(DesiredView {
            version: version.into(),
            revision: revision.into(),
            at: UnixNanos(0),
            origin: None,
        })
    }

    fn group(version: &str, revision: &str, status: DeploymentStatus, hosts: u64) -> DeployedGroup {
        DeployedGroup {
            version: Some(version.into()),
            revision: revision.into(),
            status,
            hosts,
            desired: false,
        }
    }

    #[test]
    fn summary_counts_hosts_and_marks_the_desired_groups() {
        let s = TargetSummary::new(
            at("prod", "eu"),
            desired("1.1.5", "r5"),
            vec![
                group("1.1.5", "r5", Succeeded, 8),
                group("1.1.4", "r4", InProgress, 15),
                group("1.1.4", "r4", Failed, 25),
            ],
        );
        assert_eq!((s.total_hosts, s.in_sync_hosts), (48, 8));
        assert_eq!(s.deployed[0].hosts, 25, "largest group first");
        assert!(s.deployed.iter().any(|g| g.desired && g.hosts == 8));
        assert!(!s.deployed[0].desired);
    }

    #[test]
    fn sources_are_ordered_by_source_then_reconciler() {
        let reporter = |reconciler: Option<&str>, source, hosts| SourceHosts {
            reconciler: reconciler.map(str::to_owned),
            source,
            hosts,
        };
        let s = TargetSummary::new(at("prod", "eu"), None, vec![]).with_sources(vec![
            reporter(None, Source::Otlp, 1),
            reporter(Some("sextant-agent"), Source::Agent, 2),
            reporter(Some("prod-b"), Source::Flux, 3),
            reporter(Some("prod-a"), Source::Flux, 4),
        ]);
        let order: Vec<_> = s
            .sources
            .iter()
            .map(|r| (r.source.as_str(), r.reconciler.as_deref()))
            .collect();
        assert_eq!(
            order,
            [
                ("flux", Some("prod-a")),
                ("flux", Some("prod-b")),
                ("agent", Some("sextant-agent")),
                ("otlp", None),
            ]
        );
    }

    #[test]
    fn comparison_flags_differences_and_missing_environments() {
        let same = |env: &str| {
            TargetSummary::new(
                at(env, env),
                desired("2", "r2"),
                vec![group("2", "r2", Succeeded, 3)],
            )
        };
        let c = Comparison::build(
            vec!["stage".into(), "prod".into()],
            vec![same("stage"), same("prod")],
        );
        assert!(!c.workloads[0].differs, "{c:?}");

        let behind = TargetSummary::new(
            at("prod", "p"),
            desired("1", "r1"),
            vec![group("1", "r1", Succeeded, 3)],
        );
        let c = Comparison::build(
            vec!["stage".into(), "prod".into()],
            vec![same("stage"), behind],
        );
        assert!(c.workloads[0].differs);
        assert_eq!(c.workloads[0].environments["prod"].desired_versions, ["1"]);

        let c = Comparison::build(vec!["stage".into(), "prod".into()], vec![same("stage")]);
        assert!(c.workloads[0].differs, "missing from prod");
    }

    #[test]
    fn environments_follow_the_configured_order_then_the_alphabet() {
        let mut names = vec!["zeta", "prod", "alpha", "dev", "stage"];
        let order: Vec<String> = ["dev", "stage", "prod"].map(String::from).to_vec();
        order_environments(&mut names, |n| n, &order);
        assert_eq!(names, ["dev", "stage", "prod", "alpha", "zeta"]);
    }

    #[test]
    fn drift_reasons() {
        let now = UnixNanos(100);
        let fresh = UnixNanos(200);
        assert!(DriftReason::classify(Some("r"), "r", Succeeded, fresh, now).is_empty());
        assert!(DriftReason::classify(Some("r"), "r", InProgress, fresh, now).is_empty());
        assert_eq!(
            DriftReason::classify(Some("r"), "old", Succeeded, fresh, now),
            [DriftReason::WrongRevision]
        );
        assert_eq!(
            DriftReason::classify(Some("r"), "r", Failed, UnixNanos(1), now),
            [DriftReason::Failed, DriftReason::Stale]
        );
        assert_eq!(
            DriftReason::classify(None, "r", Succeeded, fresh, now),
            [DriftReason::NoDesiredState]
        );
    }
}
