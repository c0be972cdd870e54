//! What the engine runs versus what the hub was last told, per placement.
//!
//! Several containers can carry one placement for a moment (the executor
//! starts the new container before it removes the old one), so the tracker
//! reports, per placement, the container created last. A placement whose
//! last container is gone is reported once as failed, then dropped.

use std::collections::{BTreeMap, HashMap};

use sextant_model::DeploymentStatus;

use super::status::{Observation, Placement};

/// Why a report is sent; the outbox drops heartbeats first when full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Something changed: a new container, a new revision or status, or a
    /// removal.
    Change,
    /// The same state again, at the heartbeat interval.
    Heartbeat,
}

/// One observation to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    pub observation: Observation,
}

#[derive(Debug, Default)]
pub struct Tracker {
    /// Labelled containers the engine has, by id, with their creation time
    /// (nanoseconds).
    containers: HashMap<String, (i128, Observation)>,
    /// What the hub was last told, per placement.
    reported: BTreeMap<Placement, Observation>,
}

impl Tracker {
    /// Records the current observation of a container.
    pub fn upsert(&mut self, created: i128, observation: Observation) {
        self.containers
            .insert(observation.container.clone(), (created, observation));
    }

    /// Forgets a container the engine no longer has (or that lost its
    /// labels).
    pub fn remove(&mut self, container: &str) {
        self.containers.remove(container);
    }

    /// Replaces everything with a full listing of the engine.
    pub fn replace_all(&mut self, containers: impl IntoIterator<Item = (i128, Observation)>) {
        self.containers = containers
            .into_iter()
            .map(|(created, o)| (o.container.clone(), (created, o)))
            .collect();
    }

    /// Number of labelled containers the engine has.
    pub fn containers(&self) -> usize {
        self.containers.len()
    }

    /// Compares the engine with what was reported; returns the changes and
    /// records them as reported.
    pub fn reconcile(&mut self) -> Vec<Report> {
        let mut chosen: BTreeMap<&Placement, &(i128, Observation)> = BTreeMap::new();
        for entry in self.containers.values() {
            let slot = chosen.entry(&entry.1.placement).or_insert(entry);
            // The newest container wins; ties go to the greater id, so the
            // choice does not depend on map order.
            if (entry.0, &entry.1.container) > (slot.0, &slot.1.container) {
                *slot = entry;
            }
        }
        let mut reports = Vec::new();
        for (placement, (_, observation)) in &chosen {
            let changed = self.reported.get(*placement).is_none_or(|last| {
                last.container != observation.container || last.differs(observation)
            });
            if changed {
                reports.push(Report {
                    kind: ReportKind::Change,
                    observation: observation.clone(),
                });
            }
        }
        let gone: Vec<Placement> = self
            .reported
            .keys()
            .filter(|p| !chosen.contains_key(p))
            .cloned()
            .collect();
        for report in &reports {
            self.reported.insert(
                report.observation.placement.clone(),
                report.observation.clone(),
            );
        }
        for placement in gone {
            if let Some(last) = self.reported.remove(&placement) {
                reports.push(Report {
                    kind: ReportKind::Change,
                    observation: Observation {
                        status: DeploymentStatus::Failed,
                        message: Some(format!("container {} was removed", last.name)),
                        ..last
                    },
                });
            }
        }
        reports
    }

    /// Every reported placement again, as heartbeats.
    pub fn heartbeat(&self) -> Vec<Report> {
        self.reported
            .values()
            .map(|o| Report {
                kind: ReportKind::Heartbeat,
                observation: o.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(container: &str, target: &str, revision: &str, status: DeploymentStatus) -> Observation {
        Observation {
            container: container.into(),
            name: format!("{container}-name"),
            placement: Placement {
                workspace: None,
                application: "shop".into(),
                workload: "web".into(),
                environment: "dev".into(),
                target: target.into(),
            },
            revision: revision.into(),
            release: None,
            status,
            message: None,
            job: None,
        }
    }

    use DeploymentStatus::{Failed, Succeeded};

    #[test]
    fn reports_changes_once_and_heartbeats_everything() {
        let mut t = Tracker::default();
        t.upsert(1, obs("a", "eu", "r1", Succeeded));
        t.upsert(1, obs("b", "us", "r1", Succeeded));
        assert_eq!(t.reconcile().len(), 2);
        assert!(t.reconcile().is_empty(), "nothing changed");
        assert_eq!(t.heartbeat().len(), 2);
        assert!(
            t.heartbeat()
                .iter()
                .all(|r| r.kind == ReportKind::Heartbeat)
        );

        t.upsert(1, obs("a", "eu", "r1", Failed));
        let changes = t.reconcile();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].observation.status, Failed);
    }

    #[test]
    fn the_newest_container_of_a_placement_is_reported() {
        let mut t = Tracker::default();
        t.upsert(1, obs("old", "eu", "r1", Succeeded));
        t.reconcile();
        // The executor starts the new container, then removes the old one.
        t.upsert(2, obs("new", "eu", "r2", DeploymentStatus::InProgress));
        let changes = t.reconcile();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].observation.revision, "r2");
        t.remove("old");
        assert!(
            t.reconcile().is_empty(),
            "the old container's removal is not news"
        );
    }

    #[test]
    fn a_removed_container_is_reported_once_then_dropped() {
        let mut t = Tracker::default();
        t.upsert(1, obs("a", "eu", "r1", Succeeded));
        t.reconcile();
        t.remove("a");
        let changes = t.reconcile();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].observation.status, Failed);
        assert_eq!(
            changes[0].observation.message.as_deref(),
            Some("container a-name was removed")
        );
        assert!(t.reconcile().is_empty());
        assert!(t.heartbeat().is_empty(), "dropped after the report");

        // A full listing without it says the same.
        t.replace_all([(1, obs("b", "us", "r1", Succeeded))]);
        t.reconcile();
        t.replace_all([]);
        assert_eq!(t.reconcile().len(), 1);
    }
}
