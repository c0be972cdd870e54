//! What one container's deploy creates: the plan (the spec, its image
//! pinned by digest, every label) and the Docker create request made from
//! it.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use sextant_protocol::deploy::{DeploySpec, ImageRef, Probe, RestartPolicy, SpecError, labels};

/// One container to switch, with what the executor adds to its spec.
#[derive(Debug)]
pub(crate) struct Plan {
    pub spec: DeploySpec,
    pub image: ImageRef,
    /// Compose only: the service (network alias).
    pub service: Option<String>,
    /// Every label the container gets.
    pub labels: BTreeMap<String, String>,
}

impl Plan {
    pub fn single(spec: &DeploySpec, image: ImageRef) -> Self {
        let labels = spec.container_labels(&image);
        Self {
            spec: spec.clone(),
            image,
            service: None,
            labels,
        }
    }

    pub fn service(spec: &DeploySpec, project: &str, service: &str) -> Result<Self, SpecError> {
        let image = spec.validate()?;
        let mut labels = spec.container_labels(&image);
        labels.insert(labels::COMPOSE_PROJECT.into(), project.into());
        labels.insert(labels::COMPOSE_SERVICE.into(), service.into());
        Ok(Self {
            spec: spec.clone(),
            image,
            service: Some(service.to_owned()),
            labels,
        })
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The Docker create request for a plan.
pub(crate) fn create_body(plan: &Plan) -> ContainerCreateBody {
    let spec = &plan.spec.container;
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        port_bindings
            .entry(p.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(
                    p.host_port
                        .filter(|p| *p != 0)
                        .map_or_else(String::new, |p| p.to_string()),
                ),
            });
    }
    let (restart_name, max_retry) = match spec.restart {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure(n) => (RestartPolicyNameEnum::ON_FAILURE, Some(i64::from(n))),
    };
    // Overrides of the image's HEALTHCHECK timing; Docker keeps the image's
    // test and any value left unset.
    let healthcheck = (spec.health.probe == Probe::Docker).then(|| HealthConfig {
        test: None,
        interval: spec.health.interval.map(|d| nanos(d.0)),
        timeout: spec.health.timeout.map(|d| nanos(d.0)),
        retries: spec.health.retries.map(i64::from),
        start_period: spec.health.start_period.map(|d| nanos(d.0)),
        start_interval: None,
    });
    let networking_config = spec.network.as_ref().map(|net| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net.clone(),
            EndpointSettings {
                aliases: plan.service.clone().map(|s| vec![s]),
                ..Default::default()
            },
        )])),
    });
    ContainerCreateBody {
        image: Some(plan.image.to_string()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(plan.labels.clone().into_iter().collect()),
        exposed_ports: Some(spec.ports.iter().map(|p| p.key()).collect()),
        healthcheck,
        stop_timeout: spec
            .stop_timeout
            .map(|d| i64::try_from(d.0.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(HostConfig {
            binds: Some(spec.volumes.clone()),
            port_bindings: Some(port_bindings),
            restart_policy: Some(DockerRestart {
                name: Some(restart_name),
                maximum_retry_count: max_retry,
            }),
            network_mode: spec.network.clone(),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}
