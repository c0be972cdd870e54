//! The compose-lock: a compose project whose services are pinned by digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::SpecError;
use super::spec::{validate_name, validate_task_id};
use super::{ContainerSettings, DeploySpec, RegistryAuth};

/// A compose project whose services are pinned by digest, applied service by
/// service. See `docs/agent.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeLock {
    /// The idempotency key of the whole apply.
    pub task_id: String,
    /// Containers are named `PROJECT-SERVICE`; the network `PROJECT_default`.
    pub project: String,
    /// `sextant.application` of every service.
    pub application: String,
    /// `sextant.target` of every service.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Labels on every container and on the project network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Credentials for every pull; a service may name its own.
    #[serde(default, skip_serializing)]
    pub registry_auth: Option<RegistryAuth>,
    /// Applied in this order.
    pub services: Vec<ServiceSpec>,
}

crate::with_container_settings! {
    /// One service of a [`ComposeLock`]: its name, image and identity and,
    /// flat beside them, how it runs ([`ContainerSettings`]). A service
    /// joins the project's network, so its `network` must be left out.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct ServiceSpec {
        /// The service name: the network alias and `sextant.compose.service`.
        pub name: String,
        /// `sextant.workload`; defaults to the service name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub workload: Option<String>,
        /// `repository@sha256:…`.
        pub image: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision: Option<String>,
        #[serde(default, skip_serializing)]
        pub registry_auth: Option<RegistryAuth>,
    }
}

impl ComposeLock {
    /// Parses a compose-lock file from YAML.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))
    }

    /// The project network's name.
    pub fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// One deploy spec per service, in order, each validated. Their task ids
    /// are `TASK_ID.SERVICE`.
    pub fn service_specs(&self) -> Result<Vec<DeploySpec>, SpecError> {
        validate_task_id(&self.task_id)?;
        validate_name("project", &self.project)?;
        if self.services.is_empty() {
            return Err(SpecError::Invalid("a compose-lock needs services".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(self.services.len());
        for s in &self.services {
            validate_name("service name", &s.name)?;
            if !seen.insert(s.name.as_str()) {
                return Err(SpecError::Invalid(format!(
                    "service {} appears twice",
                    s.name
                )));
            }
            if let Some(network) = &s.container.network {
                return Err(SpecError::Invalid(format!(
                    "service {}: network {network:?}: a service joins the project network {}",
                    s.name,
                    self.network()
                )));
            }
            let mut labels = self.labels.clone();
            labels.extend(s.container.labels.clone());
            let spec = DeploySpec {
                task_id: format!("{}.{}", self.task_id, s.name),
                name: format!("{}-{}", self.project, s.name),
                image: s.image.clone(),
                application: self.application.clone(),
                workload: s.workload.clone().unwrap_or_else(|| s.name.clone()),
                target: self.target.clone(),
                environment: self.environment.clone(),
                release: self.release.clone(),
                revision: s.revision.clone(),
                container: ContainerSettings {
                    labels,
                    network: Some(self.network()),
                    ..s.container.clone()
                },
                registry_auth: s
                    .registry_auth
                    .clone()
                    .or_else(|| self.registry_auth.clone()),
            };
            spec.validate().map_err(|e| match e {
                SpecError::Invalid(m) => SpecError::Invalid(format!("service {}: {m}", s.name)),
                other => other,
            })?;
            out.push(spec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn compose_lock_expands_services() {
        let text = format!(
            "task_id: r7\nproject: shop\napplication: shop\ntarget: eu\nlabels: {{team: a}}\n\
             services:\n  - name: api\n    image: api@{DIGEST}\n    health: {{check: tcp, address: '127.0.0.1:{{port:80}}'}}\n\
             \x20 - name: web\n    workload: frontend\n    image: web@{DIGEST}\n"
        );
        let lock = ComposeLock::from_yaml(&text).unwrap();
        let specs = lock.service_specs().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "shop-api");
        assert_eq!(specs[0].task_id, "r7.api");
        assert_eq!(specs[1].workload, "frontend");
        assert_eq!(specs[1].container.network.as_deref(), Some("shop_default"));
        assert_eq!(specs[1].container.labels["team"], "a");
        let tagged =
            ComposeLock::from_yaml(&text.replace(&format!("web@{DIGEST}"), "web:latest")).unwrap();
        assert!(matches!(
            tagged.service_specs().unwrap_err(),
            SpecError::NotPinned { .. }
        ));
    }

    #[test]
    fn a_service_keeps_to_the_project_network() {
        let text = format!(
            "task_id: r7\nproject: shop\napplication: shop\ntarget: eu\n\
             services:\n  - name: api\n    image: api@{DIGEST}\n    network: other\n"
        );
        let err = ComposeLock::from_yaml(&text)
            .unwrap()
            .service_specs()
            .unwrap_err();
        assert!(err.to_string().contains("shop_default"), "{err}");
        let misspelt = ComposeLock::from_yaml(&text.replace("network: other", "enviroment: {}"));
        assert!(misspelt.unwrap_err().to_string().contains("enviroment"));
    }
}
