//! What to deploy: one container, pinned by digest ([`DeploySpec`]), with
//! its image, ports, restart policy and registry credentials, and its
//! validation. The format is documented in `docs/agent.md`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{RestartPolicyError, SpecError};
use super::labels;

crate::with_container_settings! {
    /// One container to deploy, pinned by digest: who it is (image, name,
    /// `sextant.` identity) and, flat beside that, how it runs
    /// ([`ContainerSettings`](super::ContainerSettings): labels, env,
    /// ports, volumes, command, network, restart, stop_timeout, health).
    /// YAML- and JSON-friendly; an unknown key is refused.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct DeploySpec {
        /// The idempotency key: a repeat of a finished task returns its recorded
        /// outcome. `[A-Za-z0-9._-]`, at most 128 characters.
        pub task_id: String,
        /// The container name.
        pub name: String,
        /// `repository@sha256:<64 hex>`; a tag alone is refused.
        pub image: String,
        /// `sextant.application`.
        pub application: String,
        /// `sextant.workload`.
        pub workload: String,
        /// `sextant.target`.
        pub target: String,
        /// `sextant.environment`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub environment: Option<String>,
        /// `sextant.release`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub release: Option<String>,
        /// `sextant.revision`; defaults to the image digest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision: Option<String>,
        /// Credentials for the pull; never serialized (so never journaled).
        #[serde(default, skip_serializing)]
        pub registry_auth: Option<RegistryAuth>,
    }
}

/// A pinned image reference, parsed from `repository@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before `@`.
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
}

impl ImageRef {
    /// Parses `repository@sha256:<64 hex>`; anything else is refused.
    pub fn parse(image: &str) -> Result<Self, SpecError> {
        let not_pinned = || SpecError::NotPinned {
            image: image.to_owned(),
        };
        let (repository, digest) = image.rsplit_once('@').ok_or_else(not_pinned)?;
        let hex = digest.strip_prefix("sha256:").ok_or_else(not_pinned)?;
        let hex_ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if repository.is_empty() || !hex_ok {
            return Err(not_pinned());
        }
        Ok(Self {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The port inside the container.
    pub container_port: u16,
    /// The host port; 0 or absent lets Docker pick one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The host address to bind; absent means every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".to_owned()
}

impl PortSpec {
    /// Docker's key for this port: `8080/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// Docker's restart policy: `no`, `always`, `unless-stopped`, `on-failure`
/// or `on-failure:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// Restart on a non-zero exit, at most this many times (0: no limit).
    OnFailure(u32),
}

impl TryFrom<String> for RestartPolicy {
    type Error = RestartPolicyError;
    fn try_from(s: String) -> Result<Self, RestartPolicyError> {
        match s.as_str() {
            "no" | "" => Ok(Self::No),
            "always" => Ok(Self::Always),
            "unless-stopped" => Ok(Self::UnlessStopped),
            "on-failure" => Ok(Self::OnFailure(0)),
            other => other
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse().ok())
                .map(Self::OnFailure)
                .ok_or_else(|| RestartPolicyError(other.to_owned())),
        }
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> Self {
        match p {
            RestartPolicy::No => "no".into(),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
            RestartPolicy::OnFailure(0) => "on-failure".into(),
            RestartPolicy::OnFailure(n) => format!("on-failure:{n}"),
        }
    }
}

/// Registry credentials for the pull. `Debug` hides the password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// The registry, e.g. `registry.example:5000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("server_address", &self.server_address)
            .finish()
    }
}

impl DeploySpec {
    /// Parses a spec from YAML (JSON is YAML too).
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        serde_norway::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))
    }

    /// Checks the spec; returns the pinned image.
    pub fn validate(&self) -> Result<ImageRef, SpecError> {
        validate_task_id(&self.task_id)?;
        validate_name("name", &self.name)?;
        let image = ImageRef::parse(&self.image)?;
        for (field, value) in [
            ("application", &self.application),
            ("workload", &self.workload),
            ("target", &self.target),
        ] {
            if value.trim().is_empty() {
                return Err(SpecError::Invalid(format!("{field} must not be empty")));
            }
        }
        self.container.validate()?;
        Ok(image)
    }

    /// The labels the container is created with: the spec's own, then the
    /// `sextant.` identity labels.
    pub fn container_labels(&self, image: &ImageRef) -> BTreeMap<String, String> {
        let mut out = self.container.labels.clone();
        let mut put = |k: &str, v: &str| {
            out.insert(k.to_owned(), v.to_owned());
        };
        put(labels::APPLICATION, &self.application);
        put(labels::WORKLOAD, &self.workload);
        put(labels::TARGET, &self.target);
        put(labels::TASK, &self.task_id);
        put(
            labels::REVISION,
            self.revision.as_deref().unwrap_or(&image.digest),
        );
        if let Some(e) = &self.environment {
            put(labels::ENVIRONMENT, e);
        }
        if let Some(r) = &self.release {
            put(labels::RELEASE, r);
        }
        out
    }
}

/// Task ids become file names in the journal, so they are kept plain.
pub(super) fn validate_task_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "invalid task_id {id:?}: use 1-128 of A-Z a-z 0-9 . _ - (not starting with '.')"
        )))
    }
}

/// Docker's rule for container and network names.
pub(super) fn validate_name(field: &str, name: &str) -> Result<(), SpecError> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.len() <= 200;
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "invalid {field} {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::deploy::Probe;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn yaml(image: &str) -> String {
        format!(
            "task_id: t-1\nname: web\nimage: '{image}'\napplication: shop\nworkload: web\n\
             target: eu\nrestart: on-failure:3\nstop_timeout: 1s\n\
             ports: [{{container_port: 8080, host_ip: 127.0.0.1}}]\n\
             health: {{check: http, url: 'http://127.0.0.1:{{port:8080}}/', timeout: 500ms, retries: 2}}\n\
             registry_auth: {{username: u, password: hunter2}}\n"
        )
    }

    #[test]
    fn parses_a_pinned_spec() {
        let spec = DeploySpec::from_yaml(&yaml(&format!("127.0.0.1:5000/a/web@{DIGEST}"))).unwrap();
        let image = spec.validate().unwrap();
        assert_eq!(image.repository, "127.0.0.1:5000/a/web");
        assert_eq!(image.digest, DIGEST);
        assert_eq!(spec.container.restart, RestartPolicy::OnFailure(3));
        assert_eq!(spec.container.health.timeout(), Duration::from_millis(500));
        assert_eq!(spec.container.health.retries(), 2);
        assert_eq!(spec.container.ports[0].key(), "8080/tcp");
        assert!(matches!(spec.container.health.probe, Probe::Http { .. }));
        let labels = spec.container_labels(&image);
        assert_eq!(labels[labels::REVISION], DIGEST);
        assert_eq!(labels[labels::TASK], "t-1");
        assert!(!format!("{spec:?}").contains("hunter2"));
        // Credentials never reach the journal.
        assert!(!serde_json::to_string(&spec).unwrap().contains("hunter2"));
        let back: DeploySpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back.container.health, spec.container.health);
    }

    #[test]
    fn refuses_tags_and_bad_digests() {
        for image in [
            "web:v1",
            "127.0.0.1:5000/web",
            "web@sha256:abc",
            "web@md5:0123",
            &format!("@{DIGEST}"),
        ] {
            let spec = DeploySpec::from_yaml(&yaml(image)).unwrap();
            let err = spec.validate().unwrap_err();
            assert!(matches!(err, SpecError::NotPinned { .. }), "{image}: {err}");
            assert!(err.to_string().contains("digest"), "{err}");
        }
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let text = yaml(&format!("web@{DIGEST}"));
        let unknown = DeploySpec::from_yaml(&format!("{text}colour: red\n")).unwrap_err();
        assert!(unknown.to_string().contains("colour"), "{unknown}");
        // A misspelt container setting is refused by name too.
        let misspelt = DeploySpec::from_yaml(&text.replace("stop_timeout", "stop_timout"));
        assert!(misspelt.unwrap_err().to_string().contains("stop_timout"));
        assert!(DeploySpec::from_yaml(&text.replace("on-failure:3", "sometimes")).is_err());
        assert!(DeploySpec::from_yaml(&text.replace("500ms", "soon")).is_err());
        assert!(
            DeploySpec::from_yaml(&text.replace("check: http,", "check: http, port: 1,")).is_err()
        );
        let mut spec = DeploySpec::from_yaml(&text).unwrap();
        spec.task_id = "../etc".into();
        assert!(spec.validate().is_err());
        spec.task_id = "ok".into();
        spec.container
            .labels
            .insert(labels::TASK.into(), "x".into());
        assert!(spec.validate().is_err());
    }

    /// The settings read as YAML writes them (`PORT: 8080` is the string
    /// `"8080"`), and the spec's JSON keeps its flat keys.
    #[test]
    fn container_settings_sit_flat_beside_the_identity() {
        let text = format!(
            "{}env: {{PORT: 8080, DEBUG: true}}\ncommand: [sleep, 300]\nnetwork: shop\n",
            yaml(&format!("web@{DIGEST}"))
        );
        let spec = DeploySpec::from_yaml(&text).unwrap();
        assert_eq!(spec.container.env["PORT"], "8080");
        assert_eq!(spec.container.env["DEBUG"], "true");
        assert_eq!(spec.container.command.as_deref().unwrap(), ["sleep", "300"]);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["network"], "shop");
        assert_eq!(json["restart"], "on-failure:3");
        assert_eq!(json["env"]["PORT"], "8080");
        assert!(json.get("container").is_none());
        let back: DeploySpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.container, spec.container);
    }
}
