//! GitOps reconcilers as sources: Flux (`gotk_resource_info` over OTLP
//! metrics, and notification-controller events on `POST
//! /v1/reconcilers/flux`) and Argo CD (Argo CD Notifications' webhook on
//! `POST /v1/reconcilers/argocd`), mapped to the same deployment events as
//! an OTLP report (docs/reconcilers.md).
//!
//! Each payload is turned into the attributes an OTLP sender would have
//! set, layered by precedence, and validated by the model like any other
//! report, so every rule (lengths, NUL, the clock-skew window) holds alike.

pub mod argocd;
pub mod flux;
pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sextant_model::{AttributeSource, DeploymentEvent, DesiredDeployment, UnixNanos, keys};

use crate::otlp::outcome::Extracted;

use sextant_kit::Secret;

/// Reconciler type of Flux reports.
pub const FLUX: &str = "flux";
/// Reconciler type of Argo CD reports.
pub const ARGOCD: &str = "argocd";

/// `[reconcilers]`: where a cluster's reports belong, and the keys that
/// sign Flux's `generic-hmac` events.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilersConfig {
    /// Per-cluster defaults (`[[reconcilers.clusters]]`), the lowest
    /// precedence: anything the payload, the webhook address or the
    /// collector says wins.
    pub clusters: Vec<ClusterMapping>,
    /// Keys of Flux `generic-hmac` Providers (`[[reconcilers.hmac_keys]]`):
    /// an event whose `X-Signature` one of them verifies belongs to its
    /// tenant, with no bearer token.
    pub hmac_keys: Vec<HmacKey>,
}

/// Defaults for the reports of one cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMapping {
    /// The cluster's name, as `k8s.cluster.name`, a Flux event's `cluster`
    /// metadata or an Argo CD destination name or server.
    pub cluster: String,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
}

/// A Flux `generic-hmac` Provider's key (the `token` of its Secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacKey {
    pub key: Secret,
    pub tenant: String,
}

/// Why a reconciler's payload was refused (answered 400: resending it
/// cannot help). The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Invalid(#[from] sextant_model::EventError),
    #[error("{0}")]
    Time(String),
}

impl Refused {
    /// The `reason` label it is counted under, as for OTLP records.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Missing(_) => "missing_attribute",
            Refused::Invalid(_) => "invalid_attribute",
            Refused::Time(_) => "invalid_time",
        }
    }
}

/// The placement names a user can give without patching a reconciler, as
/// the short keys of Flux event metadata, a webhook address's query and
/// `[[reconcilers.clusters]]`, with the attribute each becomes.
const PLACEMENT_KEYS: &[(&str, &str)] = &[
    ("environment", keys::ENVIRONMENT),
    ("env", keys::ENVIRONMENT),
    ("target", keys::TARGET),
    ("application", keys::APPLICATION),
    ("workload", keys::WORKLOAD),
    ("workspace", keys::WORKSPACE),
    ("cluster", keys::K8S_CLUSTER_NAME),
];

/// The attributes of one mapped report. Layers are applied from the lowest
/// precedence to the highest; a later non-empty value replaces an earlier.
#[derive(Debug, Default, Clone)]
pub struct Attrs(BTreeMap<&'static str, String>);

impl Attrs {
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        if !value.trim().is_empty() {
            self.0.insert(key, value);
        }
    }

    pub fn set_opt(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Short names (`environment`, `env`, `target`, …) from a map, such as
    /// Flux event metadata or a webhook address's query.
    pub fn layer_short(&mut self, short: impl Fn(&str) -> Option<String>) {
        for (name, key) in PLACEMENT_KEYS {
            if let Some(value) = short(name) {
                self.set(key, value);
            }
        }
    }

    /// The hub's defaults for the cluster these attributes name, under
    /// everything already set.
    pub fn under_cluster_defaults(&mut self, config: &ReconcilersConfig) {
        let Some(cluster) = self.get(keys::K8S_CLUSTER_NAME) else {
            return;
        };
        let Some(mapping) = config.clusters.iter().find(|c| c.cluster == cluster) else {
            return;
        };
        let defaults = [
            (keys::ENVIRONMENT, &mapping.environment),
            (keys::TARGET, &mapping.target),
            (keys::APPLICATION, &mapping.application),
            (keys::WORKSPACE, &mapping.workspace),
        ];
        for (key, value) in defaults {
            if let Some(value) = value
                && self.get(key).is_none()
            {
                self.set(key, value.clone());
            }
        }
    }

    /// The reconciler's own placement defaults, under everything else.
    pub fn fill(&mut self, key: &'static str, value: &str) {
        if self.get(key).is_none() {
            self.set(key, value);
        }
    }
}

impl AttributeSource for Attrs {
    fn text(&self, key: &str) -> Result<Option<String>, sextant_model::NotAString> {
        Ok(self.0.get(key).cloned())
    }
}

/// The desired revisions already sent per (tenant, placement): a source
/// reported every 30 s assigns its revision once, not twice a minute. A
/// hub restart (or a full memo) assigns each again once, which changes
/// nothing but adds one history row.
#[derive(Debug, Default)]
pub struct DesiredMemo {
    seen: Mutex<HashMap<String, String>>,
}

/// Entries the memo holds before it starts over.
const MEMO_CAPACITY: usize = 1_000_000;

impl DesiredMemo {
    /// Whether `revision` was already stored for `key`.
    pub fn known(&self, key: &str, revision: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|r| r == revision)
    }

    /// Remembers the desired revisions a store has taken (only then: one
    /// it did not take is sent again next time).
    pub fn remember(&self, entries: Vec<(String, String)>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (key, revision) in entries {
            if seen.len() >= MEMO_CAPACITY {
                seen.clear();
            }
            seen.insert(key, revision);
        }
    }
}

/// Reconciler mapping shared by the OTLP metrics path and the webhooks.
#[derive(Debug, Default)]
pub struct Reconcilers {
    pub config: ReconcilersConfig,
    pub desired: DesiredMemo,
}

impl Reconcilers {
    pub fn new(config: ReconcilersConfig) -> Self {
        Self {
            config,
            desired: DesiredMemo::default(),
        }
    }
}

/// The reconciler's own defaults under what the payload and the hub's
/// config say: the cluster is the target, the object's namespace the
/// application, its name the workload.
pub(crate) fn workload_defaults(
    attrs: &mut Attrs,
    reconcilers: &Reconcilers,
    namespace: &str,
    name: &str,
    cluster: &str,
) {
    attrs.under_cluster_defaults(&reconcilers.config);
    attrs.fill(keys::TARGET, cluster);
    attrs.fill(keys::APPLICATION, namespace);
    attrs.fill(keys::WORKLOAD, name);
}

/// A desired event for the placement in `attrs` at `revision`, unless the
/// store already took it.
pub(crate) fn desire(
    attrs: &Attrs,
    revision: &str,
    at: UnixNanos,
    reconcilers: &Reconcilers,
    tenant: &str,
    location: &str,
    out: &mut Extracted,
) {
    let mut desired = Attrs::default();
    for key in [
        keys::WORKSPACE,
        keys::APPLICATION,
        keys::WORKLOAD,
        keys::ENVIRONMENT,
        keys::TARGET,
    ] {
        desired.set_opt(key, attrs.get(key));
    }
    desired.set(keys::REVISION, revision);
    desired.set(keys::VERSION, revision);
    let memo_key = [
        tenant,
        attrs
            .get(keys::WORKSPACE)
            .unwrap_or(keys::DEFAULT_WORKSPACE),
        attrs.get(keys::APPLICATION).unwrap_or_default(),
        attrs.get(keys::WORKLOAD).unwrap_or_default(),
        attrs.get(keys::ENVIRONMENT).unwrap_or_default(),
        attrs.get(keys::TARGET).unwrap_or_default(),
    ]
    .join("\u{1f}");
    if reconcilers.desired.known(&memo_key, revision) {
        return;
    }
    match DesiredDeployment::from_attributes(&desired, at) {
        Ok(d) => {
            out.events.push(DeploymentEvent::Desired(d));
            out.remember.push((memo_key, revision.to_owned()));
        }
        Err(error) => out.reject_event(location.to_owned(), error),
    }
}
