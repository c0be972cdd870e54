//! How a container runs, apart from what it runs and who it belongs to:
//! [`ContainerSettings`], shared by a deploy spec, a compose-lock service and
//! the orchestrator's container template of an agent target, so the three
//! name each setting once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::SpecError;
use super::{HealthCheck, HumanDuration, PortSpec, Probe, RestartPolicy, labels};

/// How a container runs: its extra labels, environment, ports, volumes,
/// command, network, restart policy, stop grace period and health check.
///
/// A [`DeploySpec`](super::DeploySpec), a
/// [`ServiceSpec`](super::ServiceSpec) and the orchestrator's container
/// template hold it in a `container` field but are written flat, its keys
/// beside their own (see [`with_container_settings!`](crate::with_container_settings)).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContainerSettings {
    /// More labels; the `sextant.` ones are the agent's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<Object>))]
    pub ports: Vec<PortSpec>,
    /// Binds and volumes in Docker's `SOURCE:TARGET[:OPTIONS]` syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Overrides the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A network to join (must exist) instead of the default bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Docker's restart policy.
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub restart: RestartPolicy,
    /// Grace period when stopping the old container, before SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<HumanDuration>,
    /// How the agent tells the new container is healthy (`check: none`,
    /// `docker`, `http`, `tcp` or `command`); on failure it restores the
    /// previous container.
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub health: HealthCheck,
}

impl ContainerSettings {
    /// Checks the settings as the agent would run them: no reserved label,
    /// plain environment names, valid ports and volumes, a runnable health
    /// probe.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(key) = self
            .labels
            .keys()
            .find(|k| labels::RESERVED.contains(&k.as_str()))
        {
            return Err(SpecError::Invalid(format!(
                "label {key} is set by the agent; use the spec's own field"
            )));
        }
        if let Some(key) = self.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(SpecError::Invalid(format!(
                "invalid environment variable name {key:?}"
            )));
        }
        if let Some(p) = self.ports.iter().find(|p| {
            p.container_port == 0 || !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp")
        }) {
            return Err(SpecError::Invalid(format!(
                "invalid port {}: container_port must be 1-65535 and protocol tcp, udp or sctp",
                p.key()
            )));
        }
        if let Some(v) = self.volumes.iter().find(|v| v.split(':').count() < 2) {
            return Err(SpecError::Invalid(format!(
                "invalid volume {v:?}: write SOURCE:TARGET[:OPTIONS]"
            )));
        }
        match &self.health.probe {
            Probe::Command(cmd) if cmd.is_empty() => Err(SpecError::Invalid(
                "health check command needs a non-empty argv or command".into(),
            )),
            Probe::Http { url, .. } if !url.starts_with("http://") => Err(SpecError::Invalid(
                format!("health check url {url:?} must start with http://"),
            )),
            _ => Ok(()),
        }
    }
}

/// Declares a struct that holds [`ContainerSettings`] in a `container`
/// field, written flat: the settings' keys beside the struct's own.
///
/// The struct gets the `container` field (serialized with
/// `#[serde(flatten)]`) and a `Deserialize` that reads every key in one
/// pass, refusing unknown ones by name. `#[serde(flatten)]` is not used to
/// read: it would buffer the settings, so YAML's `PORT: 8080` would no
/// longer read as the string `"8080"` and `deny_unknown_fields` would be
/// lost. Derive `Serialize` on the struct but not `Deserialize`; field
/// attributes other than docs and `serde` ones are not allowed.
#[macro_export]
macro_rules! with_container_settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
            /// How the container runs; written beside the fields above.
            #[serde(flatten)]
            pub container: $crate::deploy::ContainerSettings,
        }

        const _: () = {
            use ::std::collections::BTreeMap;
            use $crate::deploy::{ContainerSettings, HealthCheck, HumanDuration, PortSpec, RestartPolicy};

            /// The flat form the struct is read from.
            #[derive(::serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Flat {
                $( $(#[$fmeta])* $field: $ty, )*
                #[serde(default)]
                labels: BTreeMap<String, String>,
                #[serde(default)]
                env: BTreeMap<String, String>,
                #[serde(default)]
                ports: Vec<PortSpec>,
                #[serde(default)]
                volumes: Vec<String>,
                #[serde(default)]
                command: Option<Vec<String>>,
                #[serde(default)]
                network: Option<String>,
                #[serde(default)]
                restart: RestartPolicy,
                #[serde(default)]
                stop_timeout: Option<HumanDuration>,
                #[serde(default)]
                health: HealthCheck,
            }

            impl<'de> ::serde::Deserialize<'de> for $name {
                fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let flat = <Flat as ::serde::Deserialize>::deserialize(d)?;
                    Ok($name {
                        $( $field: flat.$field, )*
                        container: ContainerSettings {
                            labels: flat.labels,
                            env: flat.env,
                            ports: flat.ports,
                            volumes: flat.volumes,
                            command: flat.command,
                            network: flat.network,
                            restart: flat.restart,
                            stop_timeout: flat.stop_timeout,
                            health: flat.health,
                        },
                    })
                }
            }
        };
    };
}
