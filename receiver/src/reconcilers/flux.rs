//! Flux: `gotk_resource_info` (kube-state-metrics with Flux's
//! custom-resource config, through a collector's `prometheus` receiver) and
//! notification-controller events (a `generic` or `generic-hmac` Provider).
//!
//! `Kustomization` and `HelmRelease` objects are workloads, observed on the
//! cluster (`host = k8s.cluster.name`) by `kustomize-controller` or
//! `helm-controller`. Sources (`GitRepository`, `OCIRepository`, `Bucket`,
//! `HelmChart`) give the desired revision of the objects that use them.

use std::collections::HashMap;

use serde::Deserialize;
use sextant_model::{DeploymentEvent, DeploymentStatus, ObservedDeployment, UnixNanos, keys};

use super::{Attrs, FLUX, Reconcilers, Refused, desire, workload_defaults};
use crate::otlp::outcome::Extracted;

/// The metric kube-state-metrics names with Flux's config
/// (`metricNamePrefix: gotk`, metric `resource_info`).
pub const GAUGE: &str = "gotk_resource_info";

/// What a Flux kind is to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Applies to the cluster; the controller that does.
    Workload(&'static str),
    /// Fetches what workloads apply.
    Source,
    /// Alerts, Providers, image automation, …: nothing deployed.
    Other,
}

fn role(kind: &str) -> Role {
    match kind {
        "Kustomization" => Role::Workload("kustomize-controller"),
        "HelmRelease" => Role::Workload("helm-controller"),
        "GitRepository" | "OCIRepository" | "Bucket" | "HelmChart" | "HelmRepository" => {
            Role::Source
        }
        _ => Role::Other,
    }
}

/// Flux's Ready condition as a deployment status: `True` succeeded,
/// `False` failed, `Unknown` (reconciling) or absent in progress. A
/// suspended object is never failed (in progress instead of failed), and
/// its message says it is suspended.
fn ready_status(ready: Option<&str>) -> DeploymentStatus {
    match ready {
        Some(r) if r.eq_ignore_ascii_case("true") => DeploymentStatus::Succeeded,
        Some(r) if r.eq_ignore_ascii_case("false") => DeploymentStatus::Failed,
        _ => DeploymentStatus::InProgress,
    }
}

/// One `gotk_resource_info` series, as the collector handed it on.
#[derive(Debug, Clone)]
pub struct Series {
    /// `customresource_kind`.
    pub kind: String,
    /// `exported_namespace`.
    pub namespace: String,
    pub name: String,
    pub ready: Option<String>,
    pub suspended: bool,
    pub revision: Option<String>,
    /// `source_name` (a Kustomization's `spec.sourceRef.name`).
    pub source_name: Option<String>,
    /// Placement attributes the collector or the scrape added
    /// (`k8s.cluster.name`, `deployment.environment.name`, `sextant.*`),
    /// the data point's over the resource's.
    pub attrs: Attrs,
    pub at: UnixNanos,
    /// Where the point was in the request, for errors.
    pub location: String,
}

/// Maps the `gotk_resource_info` series of one request: workloads become
/// observed events, and, where their source is in the same request,
/// desired events (once per new revision).
pub fn series(all: Vec<Series>, reconcilers: &Reconcilers, tenant: &str, out: &mut Extracted) {
    // A source's fetched revision, by (cluster, kind, namespace, name);
    // HelmCharts also by (cluster, name), whatever their namespace.
    let mut sources: HashMap<(&str, &str, &str, &str), &str> = HashMap::new();
    let mut charts: HashMap<(&str, &str), &str> = HashMap::new();
    for s in &all {
        if role(&s.kind) == Role::Source
            && let Some(revision) = s.revision.as_deref().filter(|r| !r.is_empty())
        {
            let cluster = s.attrs.get(keys::K8S_CLUSTER_NAME).unwrap_or_default();
            sources.insert((cluster, &s.kind, &s.namespace, &s.name), revision);
            if s.kind == "HelmChart" {
                charts.insert((cluster, &s.name), revision);
            }
        }
    }
    for s in &all {
        let controller = match role(&s.kind) {
            Role::Workload(controller) => controller,
            Role::Source => {
                out.ignore("flux_source");
                continue;
            }
            Role::Other => {
                out.ignore("flux_kind_not_a_workload");
                continue;
            }
        };
        let mut attrs = s.attrs.clone();
        let Some(cluster) = attrs.get(keys::K8S_CLUSTER_NAME).map(str::to_owned) else {
            out.reject(
                "missing_attribute",
                format!(
                    "{}: {GAUGE} for {} {}/{} has no cluster: the collector must add the \
                     resource attribute `k8s.cluster.name`",
                    s.location, s.kind, s.namespace, s.name
                ),
            );
            continue;
        };
        workload_defaults(&mut attrs, reconcilers, &s.namespace, &s.name, &cluster);
        attrs.set(keys::RECONCILER_TYPE, FLUX);
        attrs.set(keys::RECONCILER_NAME, controller);
        let Some(revision) = s.revision.as_deref().filter(|r| !r.trim().is_empty()) else {
            out.reject(
                "missing_attribute",
                format!(
                    "{}: {GAUGE} for {} {}/{} has no `revision` label (nothing applied yet)",
                    s.location, s.kind, s.namespace, s.name
                ),
            );
            continue;
        };
        attrs.set(keys::REVISION, revision);
        let mut status = ready_status(s.ready.as_deref());
        if s.suspended {
            // Suspended is not failed: Flux stopped reconciling it on
            // purpose, whatever its last Ready condition said.
            let ready = s.ready.as_deref().unwrap_or("Unknown");
            if status == DeploymentStatus::Failed {
                status = DeploymentStatus::InProgress;
            }
            attrs.set(
                keys::STATUS_MESSAGE,
                format!("suspended (spec.suspend: true); Ready {ready}"),
            );
        }
        attrs.set(keys::STATUS, status.as_str());
        let observed = ObservedDeployment::from_attributes(&attrs, None, s.at);
        match observed {
            Ok(o) => out.events.push(DeploymentEvent::Observed(o)),
            Err(error) => {
                out.reject_event(s.location.clone(), error);
                continue;
            }
        }
        let source = match s.kind.as_str() {
            "Kustomization" => s.source_name.as_deref().and_then(|name| {
                ["GitRepository", "OCIRepository", "Bucket"]
                    .iter()
                    .find_map(|kind| sources.get(&(cluster.as_str(), *kind, &s.namespace, name)))
                    .copied()
            }),
            // helm-controller names a HelmRelease's chart `<namespace>-<name>`
            // in the chart's source namespace.
            _ => charts
                .get(&(cluster.as_str(), &format!("{}-{}", s.namespace, s.name)))
                .copied(),
        };
        if let Some(revision) = source {
            desire(
                &attrs,
                revision,
                s.at,
                reconcilers,
                tenant,
                &s.location,
                out,
            );
        }
    }
}

/// A notification-controller event (`fluxcd/pkg/apis/event/v1beta1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub involved_object: ObjectReference,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub reporting_controller: String,
    #[serde(default)]
    pub reporting_instance: Option<String>,
}

/// `corev1.ObjectReference`, as much as the hub reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_version: String,
}

/// What became of one Flux event.
#[derive(Debug)]
pub enum Mapped {
    Event(Box<ObservedDeployment>),
    /// Not a workload's event; the reason label.
    Ignored(&'static str),
}

impl Event {
    /// The revision Flux put in the metadata: `revision` (Flux 2.5 and
    /// later strip the group) or `<group>/revision`.
    fn revision(&self) -> Option<&str> {
        let group = self
            .involved_object
            .api_version
            .split('/')
            .next()
            .unwrap_or_default();
        self.metadata
            .get("revision")
            .or_else(|| self.metadata.get(&format!("{group}/revision")))
            .or_else(|| {
                self.metadata
                    .iter()
                    .find(|(k, _)| k.ends_with("/revision"))
                    .map(|(_, v)| v)
            })
            .map(String::as_str)
            .filter(|r| !r.trim().is_empty())
    }

    /// The metadata value of a short key (`cluster`, `env`, …), with or
    /// without the `event.toolkit.fluxcd.io/` prefix older Flux versions
    /// left on object annotations.
    fn short(&self, key: &str) -> Option<String> {
        self.metadata
            .get(key)
            .or_else(|| self.metadata.get(&format!("event.toolkit.fluxcd.io/{key}")))
            .cloned()
    }

    fn describe(&self) -> String {
        let o = &self.involved_object;
        format!("Flux event for {} {}/{}", o.kind, o.namespace, o.name)
    }

    /// Maps the event. `query` is the Provider address's query (`cluster`,
    /// `environment`, …): the event's metadata (Alert `eventMetadata` and
    /// object annotations) wins over it, and both over the hub's
    /// `[[reconcilers.clusters]]`.
    pub fn map(
        &self,
        query: &HashMap<String, String>,
        reconcilers: &Reconcilers,
        window: crate::otlp::window::TimeWindow,
    ) -> Result<Mapped, Refused> {
        let controller = match role(&self.involved_object.kind) {
            Role::Workload(controller) => controller,
            Role::Source => return Ok(Mapped::Ignored("flux_source_event")),
            Role::Other => return Ok(Mapped::Ignored("flux_kind_not_a_workload")),
        };
        let mut attrs = Attrs::default();
        attrs.layer_short(|k| query.get(k).cloned());
        attrs.layer_short(|k| self.short(k));
        let Some(cluster) = attrs.get(keys::K8S_CLUSTER_NAME).map(str::to_owned) else {
            return Err(Refused::Missing(format!(
                "{} names no cluster: add `cluster` to the Alert's eventMetadata or \
                 `?cluster=` to the Provider's address",
                self.describe()
            )));
        };
        let o = &self.involved_object;
        workload_defaults(&mut attrs, reconcilers, &o.namespace, &o.name, &cluster);
        attrs.set(keys::RECONCILER_TYPE, FLUX);
        attrs.set(
            keys::RECONCILER_NAME,
            if self.reporting_controller.is_empty() {
                controller
            } else {
                self.reporting_controller.as_str()
            },
        );
        let Some(revision) = self.revision() else {
            let group = o.api_version.split('/').next().unwrap_or_default();
            return Err(Refused::Missing(format!(
                "{} has no revision: metadata `revision` (or `{group}/revision`) is missing",
                self.describe()
            )));
        };
        attrs.set(keys::REVISION, revision);
        attrs.set(keys::STATUS, self.status().as_str());
        attrs.set(keys::STATUS_MESSAGE, self.message.clone());
        let at = match self.timestamp.as_deref().filter(|t| !t.is_empty()) {
            None => window.now,
            Some(t) => {
                let at = UnixNanos::parse_rfc3339(t).ok_or_else(|| {
                    Refused::Time(format!(
                        "{}: timestamp {t:?} is not an RFC 3339 time",
                        self.describe()
                    ))
                })?;
                window
                    .check(at, "timestamp")
                    .map_err(|p| Refused::Time(format!("{}: {p}", self.describe())))?
            }
        };
        let observed = ObservedDeployment::from_attributes(&attrs, None, at)?;
        Ok(Mapped::Event(Box::new(observed)))
    }

    /// `error` severity failed; a progressing reason in progress; any other
    /// event of a workload succeeded (Flux reports success on `info`).
    fn status(&self) -> DeploymentStatus {
        if self.severity.eq_ignore_ascii_case("error") {
            DeploymentStatus::Failed
        } else if matches!(
            self.reason.as_str(),
            "Progressing" | "ProgressingWithRetry" | "DependencyNotReady"
        ) {
            DeploymentStatus::InProgress
        } else {
            DeploymentStatus::Succeeded
        }
    }
}

#[cfg(test)]
mod tests;
