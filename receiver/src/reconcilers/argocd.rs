//! Argo CD: the payload the `sextant` webhook template of Argo CD
//! Notifications posts (deploy/argocd/argocd-notifications-cm.yaml), built
//! from the Application's own fields.
//!
//! The application is a workload, observed on its destination cluster by
//! Argo CD; `status.sync.revision` (what git says) is the desired revision
//! and `status.operationState.syncResult.revision` (what was last synced)
//! the observed one, so an application out of sync with a newer commit is
//! drift.

use std::collections::HashMap;

use serde::Deserialize;
use sextant_model::{DeploymentEvent, DeploymentStatus, ObservedDeployment, UnixNanos, keys};

use super::{ARGOCD, Attrs, Reconcilers, Refused, desire, workload_defaults};
use crate::otlp::outcome::Extracted;
use crate::otlp::window::TimeWindow;

/// One notification: the template's fields (nulls where the Application
/// has no such field yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// `app.metadata.name`.
    #[serde(default)]
    pub app: Option<String>,
    /// `app.metadata.namespace` (where Argo CD keeps the Application).
    #[serde(default)]
    pub app_namespace: Option<String>,
    /// `app.spec.project`.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub destination: Destination,
    /// `app.status.sync.revision`.
    #[serde(default)]
    pub revision: Option<String>,
    /// `app.status.sync.revisions` (multi-source applications).
    #[serde(default)]
    pub revisions: Option<Vec<String>>,
    /// `app.status.sync.status`: `Synced`, `OutOfSync`, `Unknown`.
    #[serde(default)]
    pub sync_status: Option<String>,
    /// `app.status.health.status`: `Healthy`, `Progressing`, `Degraded`,
    /// `Suspended`, `Missing`, `Unknown`.
    #[serde(default)]
    pub health_status: Option<String>,
    /// `app.status.operationState.phase`: `Running`, `Succeeded`,
    /// `Failed`, `Error`, `Terminating`.
    #[serde(default)]
    pub phase: Option<String>,
    /// `app.status.operationState.message`.
    #[serde(default)]
    pub operation_message: Option<String>,
    /// `app.status.operationState.syncResult.revision`.
    #[serde(default)]
    pub sync_result_revision: Option<String>,
    /// `app.status.operationState.finishedAt`.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// `app.status.summary.images`.
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// `app.metadata.labels`: `sextant.io/environment`, `sextant.io/target`,
    /// `sextant.io/application`, `sextant.io/workspace` place it.
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
    /// The notifications ConfigMap's `context` (`argocdUrl`, and
    /// `environment`, `cluster`, … the user adds).
    #[serde(default)]
    pub context: Option<HashMap<String, String>>,
}

/// `app.spec.destination`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Destination {
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Notification {
    /// The cluster the application is deployed to: the destination's name,
    /// else its server's host (`https://10.0.0.1:6443` → `10.0.0.1:6443`;
    /// the in-cluster `https://kubernetes.default.svc` → `in-cluster`).
    fn cluster(&self) -> Option<String> {
        if let Some(name) = nonempty(&self.destination.name) {
            return Some(name.to_owned());
        }
        let server = nonempty(&self.destination.server)?;
        let host = server
            .split_once("://")
            .map_or(server, |(_, rest)| rest)
            .trim_end_matches('/');
        Some(if host == "kubernetes.default.svc" {
            "in-cluster".to_owned()
        } else {
            host.to_owned()
        })
    }

    /// The application as placed: its labels win over the notifications
    /// `context`, which wins over the webhook address's query, which wins
    /// over `[[reconcilers.clusters]]`.
    fn attrs(&self, query: &HashMap<String, String>) -> Attrs {
        let mut attrs = Attrs::default();
        attrs.layer_short(|k| query.get(k).cloned());
        if let Some(context) = &self.context {
            attrs.layer_short(|k| context.get(k).cloned());
        }
        if let Some(labels) = &self.labels {
            attrs.layer_short(|k| labels.get(&format!("sextant.io/{k}")).cloned());
        }
        // The destination is the cluster unless the payload says otherwise.
        if attrs.get(keys::K8S_CLUSTER_NAME).is_none()
            && let Some(cluster) = self.cluster()
        {
            attrs.set(keys::K8S_CLUSTER_NAME, cluster);
        }
        attrs
    }

    /// The desired (git) revision: `status.sync.revision`, or the first of
    /// `status.sync.revisions`.
    fn desired_revision(&self) -> Option<&str> {
        nonempty(&self.revision).or_else(|| {
            self.revisions
                .as_deref()
                .and_then(|r| r.iter().map(|s| s.trim()).find(|s| !s.is_empty()))
        })
    }

    /// Healthy and Synced succeeded; a running sync or Progressing health
    /// in progress; a failed sync or Degraded health failed; out of sync at
    /// the revision already synced (objects changed in the cluster) failed,
    /// so that it is drift.
    fn status(&self, observed: &str, desired: &str) -> (DeploymentStatus, Option<String>) {
        let phase = nonempty(&self.phase).unwrap_or_default();
        let health = nonempty(&self.health_status).unwrap_or_default();
        let sync = nonempty(&self.sync_status).unwrap_or_default();
        let operation = nonempty(&self.operation_message);
        let said = |what: &str| match operation {
            Some(m) => format!("{what}: {m}"),
            None => what.to_owned(),
        };
        if matches!(phase, "Failed" | "Error") {
            return (
                DeploymentStatus::Failed,
                Some(said(&format!("sync {phase}"))),
            );
        }
        if health == "Degraded" || health == "Missing" {
            return (DeploymentStatus::Failed, Some(format!("health {health}")));
        }
        if matches!(phase, "Running" | "Terminating") || health == "Progressing" {
            return (
                DeploymentStatus::InProgress,
                Some(format!("sync {phase}, health {health}")),
            );
        }
        if sync == "OutOfSync" && observed == desired {
            return (
                DeploymentStatus::Failed,
                Some("OutOfSync: the live objects differ from git at this revision".to_owned()),
            );
        }
        if health == "Suspended" {
            return (
                DeploymentStatus::Succeeded,
                Some("suspended (health Suspended)".to_owned()),
            );
        }
        (
            DeploymentStatus::Succeeded,
            (!health.is_empty() || !sync.is_empty()).then(|| format!("{sync}, {health}")),
        )
    }

    /// Maps the notification to an observed event and, once per new git
    /// revision, a desired one.
    pub fn map(
        &self,
        query: &HashMap<String, String>,
        reconcilers: &Reconcilers,
        tenant: &str,
        window: TimeWindow,
        out: &mut Extracted,
    ) -> Result<(), Refused> {
        let Some(app) = nonempty(&self.app).map(str::to_owned) else {
            return Err(Refused::Missing(
                "Argo CD notification has no `app` (the Application's metadata.name)".to_owned(),
            ));
        };
        let describe = format!("Argo CD notification for application {app}");
        let Some(desired) = self.desired_revision().map(str::to_owned) else {
            return Err(Refused::Missing(format!(
                "{describe} has no revision: `revision` (status.sync.revision) or `revisions` \
                 (status.sync.revisions) is missing"
            )));
        };
        let mut attrs = self.attrs(query);
        let Some(cluster) = attrs.get(keys::K8S_CLUSTER_NAME).map(str::to_owned) else {
            return Err(Refused::Missing(format!(
                "{describe} names no cluster: `destination.name` and `destination.server` \
                 are empty"
            )));
        };
        let project = nonempty(&self.project).unwrap_or("default").to_owned();
        // Argo CD's project is the application; the cluster is the target.
        workload_defaults(&mut attrs, reconcilers, &project, &app, &cluster);
        attrs.set(keys::RECONCILER_TYPE, ARGOCD);
        let instance = self
            .context
            .as_ref()
            .and_then(|c| c.get("argocdUrl"))
            .map(|u| u.split_once("://").map_or(u.as_str(), |(_, h)| h))
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "argocd".to_owned());
        attrs.set(keys::RECONCILER_NAME, instance);
        let observed_revision = nonempty(&self.sync_result_revision)
            .unwrap_or(&desired)
            .to_owned();
        attrs.set(keys::REVISION, observed_revision.clone());
        let (status, message) = self.status(&observed_revision, &desired);
        attrs.set(keys::STATUS, status.as_str());
        let mut message = message.unwrap_or_default();
        if let Some(images) = self.images.as_deref().filter(|i| !i.is_empty()) {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str("images ");
            message.push_str(&images.join(", "));
        }
        attrs.set(keys::STATUS_MESSAGE, message.clone());
        // Argo CD notifies when the state changes: the state is as of now
        // (`finishedAt` is when the last sync ended, which may be long
        // before a degradation). It is checked and kept in the message.
        if let Some(t) = nonempty(&self.finished_at) {
            UnixNanos::parse_rfc3339(t).ok_or_else(|| {
                Refused::Time(format!(
                    "{describe}: finishedAt {t:?} is not an RFC 3339 time"
                ))
            })?;
            attrs.set(
                keys::STATUS_MESSAGE,
                format!("{message} (last sync finished {t})")
                    .trim_start()
                    .to_owned(),
            );
        }
        let at = window.now;
        let observed = ObservedDeployment::from_attributes(&attrs, None, at)?;
        out.events.push(DeploymentEvent::Observed(observed));
        desire(&attrs, &desired, at, reconcilers, tenant, &describe, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
