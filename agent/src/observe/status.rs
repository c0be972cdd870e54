//! What a labelled container tells: its placement, revision and status.
//! Pure functions over Docker's inspect answers, so every mapping is tested
//! without an engine.

use std::collections::HashMap;

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, ImageInspect,
};
use sextant_model::DeploymentStatus;
use sextant_protocol::deploy::labels;

/// Where a container belongs: the hub's target, read from its labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Placement {
    pub workspace: Option<String>,
    pub application: String,
    pub workload: String,
    pub environment: String,
    pub target: String,
}

/// What the agent reports for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The container id.
    pub container: String,
    /// The container name, without Docker's leading `/`.
    pub name: String,
    pub placement: Placement,
    pub revision: String,
    /// The `sextant.release` label, sent as `service.version`.
    pub release: Option<String>,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    /// The `sextant.job` label: the orchestrator job that deployed it, sent
    /// as `sextant.job.id`.
    pub job: Option<String>,
}

impl Observation {
    /// Whether `other` says something this one does not (heartbeats aside).
    pub fn differs(&self, other: &Observation) -> bool {
        (
            &self.placement,
            &self.revision,
            &self.release,
            self.status,
            &self.message,
            &self.job,
        ) != (
            &other.placement,
            &other.revision,
            &other.release,
            other.status,
            &other.message,
            &other.job,
        )
    }
}

/// Reads the placement labels; `None` when a required one is missing, so a
/// container without Sextant labels is not reported.
pub fn placement(labels: &HashMap<String, String>, environment: &str) -> Option<Placement> {
    let get = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    Some(Placement {
        workspace: get(sextant_model::keys::WORKSPACE),
        application: get(labels::APPLICATION)?,
        workload: get(labels::WORKLOAD)?,
        environment: get(labels::ENVIRONMENT).unwrap_or_else(|| environment.to_owned()),
        target: get(labels::TARGET)?,
    })
}

/// The revision: the `sextant.revision` label if set, else the digest the
/// image was pulled by (`RepoDigests`, the one of the container's own
/// repository first), else the image id.
pub fn revision(
    labels: &HashMap<String, String>,
    config_image: Option<&str>,
    image_id: Option<&str>,
    image: Option<&ImageInspect>,
) -> Option<String> {
    if let Some(r) = labels.get(labels::REVISION).filter(|v| !v.is_empty()) {
        return Some(r.clone());
    }
    // A container created from `repo@sha256:…` names its digest itself.
    if let Some((_, digest)) = config_image.and_then(|i| i.split_once('@')) {
        return Some(digest.to_owned());
    }
    let digests = image.and_then(|i| i.repo_digests.as_deref()).unwrap_or(&[]);
    let repo = config_image.map(repository);
    let pick = digests
        .iter()
        .find(|d| repo.is_some_and(|r| d.split_once('@').is_some_and(|(dr, _)| dr == r)))
        .or_else(|| digests.first());
    if let Some((_, digest)) = pick.and_then(|d| d.split_once('@')) {
        return Some(digest.to_owned());
    }
    image_id.filter(|i| !i.is_empty()).map(str::to_owned)
}

/// `registry:5000/repo:tag` → `registry:5000/repo`.
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(r, _)| r);
    match image.rsplit_once(':') {
        // A colon after the last slash separates a tag, not a port.
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// Maps a container's state to a deployment status and message:
///
/// | state | status |
/// |---|---|
/// | running, healthy or without a health check | `succeeded` |
/// | created, or running with its health check starting | `in_progress` |
/// | running unhealthy; restarting; exited (any code); dead; paused; removing; an engine error such as a missing image | `failed`, with why |
///
/// `image_missing` says the container's image is gone from the engine.
pub fn status(
    inspect: &ContainerInspectResponse,
    image_missing: bool,
) -> (DeploymentStatus, Option<String>) {
    use ContainerStateStatusEnum as S;
    use DeploymentStatus::{Failed, InProgress, Succeeded};
    let state = inspect.state.clone().unwrap_or_default();
    let exit = state.exit_code.unwrap_or(0);
    if let Some(error) = state.error.filter(|e| !e.is_empty()) {
        return (Failed, Some(error));
    }
    if image_missing {
        let image = inspect
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .or_else(|| inspect.image.clone())
            .unwrap_or_default();
        return (Failed, Some(format!("image {image} is missing")));
    }
    match state.status.unwrap_or(S::EMPTY) {
        S::RUNNING => {
            let health = state.health.unwrap_or_default();
            match health.status {
                Some(HealthStatusEnum::STARTING) => {
                    (InProgress, Some("health check starting".into()))
                }
                Some(HealthStatusEnum::UNHEALTHY) => {
                    let last = health
                        .log
                        .unwrap_or_default()
                        .last()
                        .and_then(|r| r.output.clone())
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty());
                    let why = match last {
                        Some(output) => format!("unhealthy: {output}"),
                        None => "unhealthy".to_owned(),
                    };
                    (Failed, Some(why))
                }
                _ => (Succeeded, None),
            }
        }
        S::CREATED => (InProgress, Some("created, not started".into())),
        S::RESTARTING => (Failed, Some(format!("restarting (last exit code {exit})"))),
        S::EXITED if state.oom_killed == Some(true) => (
            Failed,
            Some(format!(
                "exited with code {exit}: killed for lack of memory"
            )),
        ),
        S::EXITED if exit == 0 => (Failed, Some("stopped (exit code 0)".into())),
        S::EXITED => (Failed, Some(format!("exited with code {exit}"))),
        S::DEAD => (Failed, Some("dead".into())),
        S::PAUSED => (Failed, Some("paused".into())),
        S::REMOVING => (Failed, Some("being removed".into())),
        S::STOPPING => (Failed, Some("stopping".into())),
        S::EMPTY => (Failed, Some("state unknown".into())),
    }
}

/// Everything the agent reports about one inspected container, or `None`
/// when it carries no Sextant placement labels.
pub fn observe(
    inspect: &ContainerInspectResponse,
    image: Option<&ImageInspect>,
    environment: &str,
) -> Option<Observation> {
    let config = inspect.config.as_ref();
    let labels = config.and_then(|c| c.labels.clone()).unwrap_or_default();
    let placement = placement(&labels, environment)?;
    let config_image = config.and_then(|c| c.image.as_deref());
    let revision = revision(&labels, config_image, inspect.image.as_deref(), image)
        .unwrap_or_else(|| "unknown".to_owned());
    let (status, message) = status(inspect, image.is_none());
    Some(Observation {
        container: inspect.id.clone().unwrap_or_default(),
        name: inspect
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        placement,
        revision,
        release: labels
            .get(labels::RELEASE)
            .filter(|v| !v.is_empty())
            .cloned(),
        status,
        message,
        job: labels.get(labels::JOB).filter(|v| !v.is_empty()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, ContainerState, Health, HealthcheckResult};

    use super::*;

    fn labelled(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = [
            (labels::APPLICATION, "shop"),
            (labels::WORKLOAD, "web"),
            (labels::TARGET, "eu"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            l.insert((*k).to_owned(), (*v).to_owned());
        }
        l
    }

    fn container(
        state: ContainerState,
        labels: HashMap<String, String>,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("c1".into()),
            name: Some("/web".into()),
            image: Some("sha256:imageid".into()),
            config: Some(ContainerConfig {
                image: Some("127.0.0.1:5000/web:v1".into()),
                labels: Some(labels),
                ..Default::default()
            }),
            state: Some(state),
            ..Default::default()
        }
    }

    fn running(health: Option<HealthStatusEnum>) -> ContainerState {
        ContainerState {
            status: Some(ContainerStateStatusEnum::RUNNING),
            running: Some(true),
            health: health.map(|h| Health {
                status: Some(h),
                log: Some(vec![HealthcheckResult {
                    output: Some("wget: server returned error: HTTP/1.1 500\n".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn image(digests: &[&str]) -> ImageInspect {
        ImageInspect {
            id: Some("sha256:imageid".into()),
            repo_digests: Some(digests.iter().map(|d| (*d).to_owned()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn running_containers_map_by_health() {
        let img = image(&[]);
        for (health, want) in [
            (None, DeploymentStatus::Succeeded),
            (Some(HealthStatusEnum::HEALTHY), DeploymentStatus::Succeeded),
            (Some(HealthStatusEnum::NONE), DeploymentStatus::Succeeded),
            (
                Some(HealthStatusEnum::STARTING),
                DeploymentStatus::InProgress,
            ),
            (Some(HealthStatusEnum::UNHEALTHY), DeploymentStatus::Failed),
        ] {
            let o = observe(
                &container(running(health), labelled(&[])),
                Some(&img),
                "dev",
            )
            .expect("labelled");
            assert_eq!(o.status, want, "{health:?}");
        }
        let o = observe(
            &container(running(Some(HealthStatusEnum::UNHEALTHY)), labelled(&[])),
            Some(&img),
            "dev",
        )
        .expect("labelled");
        assert_eq!(
            o.message.as_deref(),
            Some("unhealthy: wget: server returned error: HTTP/1.1 500")
        );
    }

    #[test]
    fn stopped_restarting_and_broken_containers_fail_with_a_reason() {
        let img = image(&[]);
        let state = |status, exit| ContainerState {
            status: Some(status),
            exit_code: Some(exit),
            ..Default::default()
        };
        let cases = [
            (
                state(ContainerStateStatusEnum::EXITED, 3),
                "exited with code 3",
            ),
            (
                state(ContainerStateStatusEnum::EXITED, 0),
                "stopped (exit code 0)",
            ),
            (
                state(ContainerStateStatusEnum::RESTARTING, 1),
                "restarting (last exit code 1)",
            ),
            (state(ContainerStateStatusEnum::DEAD, 0), "dead"),
            (state(ContainerStateStatusEnum::PAUSED, 0), "paused"),
        ];
        for (s, why) in cases {
            let o = observe(&container(s, labelled(&[])), Some(&img), "dev").expect("labelled");
            assert_eq!(
                (o.status, o.message.as_deref()),
                (DeploymentStatus::Failed, Some(why))
            );
        }
        let created = state(ContainerStateStatusEnum::CREATED, 0);
        let o = observe(&container(created, labelled(&[])), Some(&img), "dev").expect("labelled");
        assert_eq!(o.status, DeploymentStatus::InProgress);

        let missing =
            observe(&container(running(None), labelled(&[])), None, "dev").expect("labelled");
        assert_eq!(
            (missing.status, missing.message.as_deref()),
            (
                DeploymentStatus::Failed,
                Some("image 127.0.0.1:5000/web:v1 is missing")
            )
        );
        let engine_error = ContainerState {
            status: Some(ContainerStateStatusEnum::CREATED),
            error: Some("OCI runtime create failed".into()),
            ..Default::default()
        };
        let o =
            observe(&container(engine_error, labelled(&[])), Some(&img), "dev").expect("labelled");
        assert_eq!(o.message.as_deref(), Some("OCI runtime create failed"));
    }

    #[test]
    fn revision_prefers_the_label_then_the_pulled_digest_then_the_image_id() {
        let with_label = labelled(&[(labels::REVISION, "git:4f1c2e9")]);
        let img = image(&[
            "mirror.example/other@sha256:bbb",
            "127.0.0.1:5000/web@sha256:aaa",
        ]);
        let o =
            observe(&container(running(None), with_label), Some(&img), "dev").expect("labelled");
        assert_eq!(o.revision, "git:4f1c2e9");
        let o =
            observe(&container(running(None), labelled(&[])), Some(&img), "dev").expect("labelled");
        assert_eq!(
            o.revision, "sha256:aaa",
            "the container's own repository first"
        );
        let o = observe(
            &container(running(None), labelled(&[])),
            Some(&image(&[])),
            "dev",
        )
        .expect("labelled");
        assert_eq!(o.revision, "sha256:imageid");
        let mut by_digest = container(running(None), labelled(&[]));
        if let Some(c) = by_digest.config.as_mut() {
            c.image = Some("127.0.0.1:5000/web@sha256:ccc".into());
        }
        let o = observe(&by_digest, Some(&img), "dev").expect("labelled");
        assert_eq!(o.revision, "sha256:ccc");
    }

    #[test]
    fn placement_needs_the_required_labels_and_defaults_the_environment() {
        let o = observe(&container(running(None), labelled(&[])), None, "stage").expect("labelled");
        assert_eq!(o.placement.environment, "stage");
        assert_eq!(o.name, "web");
        let o = observe(
            &container(running(None), labelled(&[(labels::ENVIRONMENT, "prod")])),
            None,
            "stage",
        )
        .expect("labelled");
        assert_eq!(o.placement.environment, "prod");
        let mut partial = labelled(&[]);
        partial.remove(labels::TARGET);
        assert!(observe(&container(running(None), partial), None, "stage").is_none());
        assert_eq!(repository("127.0.0.1:5000/web:v1"), "127.0.0.1:5000/web");
        assert_eq!(repository("127.0.0.1:5000/web"), "127.0.0.1:5000/web");
    }
}
