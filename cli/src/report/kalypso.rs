//! Kalypso Observability Hub resources (`hub.kalypso.io/v1alpha1`) read as
//! deployment events, so Kalypso users can send what they have. A
//! `DeploymentDescriptor` becomes a desired event, a `Reconciler` an observed
//! one. `docs/kalypso.md` maps every field.
//!
//! A Reconciler names only its host and the manifests it applies
//! (`manifestsEndpoint`, `repo/branch/path`); Kalypso joins it to a
//! deployment target by that endpoint. The same join is made here against
//! the DeploymentDescriptors in the input.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use sextant_model::{EventKind, Placement, UnixNanos, keys};

use super::event::Event;

/// The Kalypso API group and version read here.
pub const API_VERSION: &str = "hub.kalypso.io/v1alpha1";

/// YAML text and the name it is known by (a path, or `stdin`).
pub struct Input {
    pub name: String,
    pub text: String,
}

/// Reads every `DeploymentDescriptor` and `Reconciler` in `inputs`, in order.
/// `time` (from `--time`) overrides each event's time; otherwise a descriptor
/// is dated by `metadata.creationTimestamp` and everything else by `now`.
pub fn events(
    inputs: &[Input],
    time: Option<UnixNanos>,
    now: UnixNanos,
) -> anyhow::Result<Vec<Event>> {
    let mut docs = Vec::new();
    for input in inputs {
        read_documents(input, &mut docs)?;
    }
    if docs.is_empty() {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        bail!(
            "no DeploymentDescriptor or Reconciler ({API_VERSION}) in {}",
            names.join(", ")
        );
    }
    let targets = targets_by_endpoint(&docs)?;
    docs.iter()
        .map(|(origin, doc)| match doc {
            Doc::Descriptor(d) => descriptor_event(origin, d, time, now),
            Doc::Reconciler(r) => reconciler_event(origin, r, &targets, time.unwrap_or(now)),
        })
        .collect()
}

/// Which YAML field carries an attribute, for error messages.
pub fn descriptor_field(key: &str) -> Option<String> {
    let field = match key {
        keys::WORKSPACE => "spec.workload.application.workspace.name",
        keys::APPLICATION => "spec.workload.application.name",
        keys::WORKLOAD => "spec.workload.name",
        keys::ENVIRONMENT => "spec.deploymentTarget.environment",
        keys::TARGET => "spec.deploymentTarget.name",
        keys::VERSION => "spec.workloadVersion.version",
        keys::REVISION => {
            "status.gitOpsCommitId (the GitOps commit Kalypso's hub wrote there; \
             `kubectl get deploymentdescriptor NAME -o yaml` includes it)"
        }
        keys::BUILD_COMMIT => "spec.workloadVersion.commit",
        keys::BUILD_ID => "spec.workloadVersion.build",
        keys::REPOSITORY_URL => "spec.workload.source.repo",
        _ => return None,
    };
    Some(field.to_owned())
}

/// Which YAML field carries an attribute of a Reconciler's event.
pub fn reconciler_field(key: &str) -> Option<String> {
    let field = match key {
        keys::HOST_NAME => "spec.hostName",
        keys::RECONCILER_NAME => "spec.reconcilerName",
        keys::REVISION => "spec.deployment.gitOpsCommitId",
        keys::STATUS => "spec.deployment.status",
        keys::STATUS_MESSAGE => "spec.deployment.statusMessage",
        keys::WORKSPACE | keys::APPLICATION | keys::WORKLOAD | keys::ENVIRONMENT | keys::TARGET => {
            "the matching DeploymentDescriptor (by spec.manifestsEndpoint)"
        }
        _ => return None,
    };
    Some(field.to_owned())
}

// --- The resources, as far as they are read ----------------------------------
// Every field is optional here so that a missing one is reported by name
// (through the model's validation) rather than as a serde error.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Metadata {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
    #[serde(deserialize_with = "text")]
    creation_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DeploymentDescriptor {
    metadata: Metadata,
    spec: DescriptorSpec,
    status: DescriptorStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DescriptorSpec {
    workload: WorkloadSpec,
    deployment_target: TargetSpec,
    workload_version: VersionSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WorkloadSpec {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
    source: GitRepo,
    application: ApplicationSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApplicationSpec {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
    workspace: WorkspaceSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WorkspaceSpec {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TargetSpec {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
    #[serde(deserialize_with = "text")]
    environment: Option<String>,
    manifests: GitRepo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GitRepo {
    #[serde(deserialize_with = "text")]
    repo: Option<String>,
    #[serde(deserialize_with = "text")]
    branch: Option<String>,
    #[serde(deserialize_with = "text")]
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VersionSpec {
    #[serde(deserialize_with = "text")]
    version: Option<String>,
    #[serde(deserialize_with = "text")]
    build: Option<String>,
    #[serde(deserialize_with = "text")]
    commit: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DescriptorStatus {
    #[serde(deserialize_with = "text")]
    git_ops_commit_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Reconciler {
    metadata: Metadata,
    spec: ReconcilerSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ReconcilerSpec {
    #[serde(deserialize_with = "text")]
    host_name: Option<String>,
    #[serde(deserialize_with = "text")]
    reconciler_name: Option<String>,
    #[serde(deserialize_with = "text")]
    reconciler_type: Option<String>,
    #[serde(deserialize_with = "text")]
    manifests_endpoint: Option<String>,
    deployment: ReconcilerDeployment,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ReconcilerDeployment {
    #[serde(deserialize_with = "text")]
    git_ops_commit_id: Option<String>,
    #[serde(deserialize_with = "text")]
    status: Option<String>,
    #[serde(deserialize_with = "text")]
    status_message: Option<String>,
}

/// A scalar read as text: YAML turns `build: 105` into a number and
/// `name: yes` into a boolean, which Kubernetes would have kept as strings.
/// A float is refused, because `1.10` would come back as `1.1`.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(format_args!(
                "{v} is a number: quote it so that it stays as written"
            )))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Text)
}

enum Doc {
    Descriptor(DeploymentDescriptor),
    Reconciler(Reconciler),
}

/// Splits `input` into YAML documents and keeps the Kalypso resources,
/// unwrapping `kind: List` (what `kubectl get … -o yaml` prints) and
/// `…List` kinds.
fn read_documents(input: &Input, docs: &mut Vec<(String, Doc)>) -> anyhow::Result<()> {
    for (n, document) in serde_norway::Deserializer::from_str(&input.text).enumerate() {
        let origin = format!("{} document {}", input.name, n + 1);
        let value = serde_norway::Value::deserialize(document)
            .with_context(|| format!("{origin} is not valid YAML"))?;
        if value.is_null() {
            continue; // an empty document, e.g. after a leading `---`
        }
        read_object(&origin, value, docs)?;
    }
    Ok(())
}

fn read_object(
    origin: &str,
    value: serde_norway::Value,
    docs: &mut Vec<(String, Doc)>,
) -> anyhow::Result<()> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if kind == "List" || (kind.ends_with("List") && api_version == API_VERSION) {
        let items = match value.get("items") {
            Some(serde_norway::Value::Sequence(items)) => items.clone(),
            Some(serde_norway::Value::Null) | None => Vec::new(),
            Some(_) => bail!("{origin}: `items` of a {kind} must be a list"),
        };
        for (i, item) in items.into_iter().enumerate() {
            read_object(&format!("{origin} item {}", i + 1), item, docs)?;
        }
        return Ok(());
    }
    let named = |name: &Option<String>| match name {
        Some(name) => format!("{origin} ({kind} {name})"),
        None => format!("{origin} ({kind})"),
    };
    match (api_version.as_str(), kind.as_str()) {
        (API_VERSION, "DeploymentDescriptor") => {
            let d: DeploymentDescriptor = serde_norway::from_value(value)
                .with_context(|| format!("{origin}: cannot read the DeploymentDescriptor"))?;
            docs.push((named(&d.metadata.name), Doc::Descriptor(d)));
        }
        (API_VERSION, "Reconciler") => {
            let r: Reconciler = serde_norway::from_value(value)
                .with_context(|| format!("{origin}: cannot read the Reconciler"))?;
            docs.push((named(&r.metadata.name), Doc::Reconciler(r)));
        }
        _ => bail!(
            "{origin} is {} {}: only DeploymentDescriptor and Reconciler ({API_VERSION}) \
             can be sent",
            if api_version.is_empty() {
                "<no apiVersion>"
            } else {
                &api_version
            },
            if kind.is_empty() { "<no kind>" } else { &kind },
        ),
    }
    Ok(())
}

/// Kalypso's manifests endpoint, `repo/branch/path`, compared without
/// surrounding blanks or trailing slashes.
fn endpoint_key(endpoint: &str) -> String {
    endpoint.trim().trim_end_matches('/').to_owned()
}

fn descriptor_endpoint(d: &DeploymentDescriptor) -> Option<String> {
    let m = &d.spec.deployment_target.manifests;
    match (&m.repo, &m.branch, &m.path) {
        (Some(repo), Some(branch), Some(path)) => {
            Some(endpoint_key(&format!("{repo}/{branch}/{path}")))
        }
        _ => None,
    }
}

fn descriptor_placement(d: &DeploymentDescriptor) -> Option<Placement> {
    let w = &d.spec.workload;
    let t = &d.spec.deployment_target;
    Some(Placement {
        workspace: w
            .application
            .workspace
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| keys::DEFAULT_WORKSPACE.to_owned()),
        application: w.application.name.clone()?,
        workload: w.name.clone()?,
        environment: t.environment.clone()?,
        target: t.name.clone()?,
    })
}

/// The deployment target of each manifests endpoint named by a descriptor.
fn targets_by_endpoint(docs: &[(String, Doc)]) -> anyhow::Result<BTreeMap<String, Placement>> {
    let mut targets: BTreeMap<String, (Placement, &str)> = BTreeMap::new();
    for (origin, doc) in docs {
        let Doc::Descriptor(d) = doc else { continue };
        let (Some(endpoint), Some(placement)) = (descriptor_endpoint(d), descriptor_placement(d))
        else {
            continue;
        };
        if let Some((other, other_origin)) = targets.get(&endpoint)
            && *other != placement
        {
            bail!(
                "{origin} and {other_origin} deploy different targets from the same manifests \
                 ({endpoint}), so a Reconciler of those manifests cannot be placed"
            );
        }
        targets.insert(endpoint, (placement, origin));
    }
    Ok(targets.into_iter().map(|(k, (p, _))| (k, p)).collect())
}

/// A GitOps commit as Flux reports it may carry the branch (`main@sha1:…`);
/// Kalypso keeps what follows the last `@`, and so does this.
fn gitops_commit(commit: &Option<String>) -> Option<String> {
    commit
        .as_deref()
        .map(|c| c.rsplit('@').next().unwrap_or(c).trim().to_owned())
}

fn set_placement(event: &mut Event, p: &Placement) {
    event
        .set(keys::WORKSPACE, Some(p.workspace.clone()))
        .set(keys::APPLICATION, Some(p.application.clone()))
        .set(keys::WORKLOAD, Some(p.workload.clone()))
        .set(keys::ENVIRONMENT, Some(p.environment.clone()))
        .set(keys::TARGET, Some(p.target.clone()));
}

fn descriptor_event(
    origin: &str,
    d: &DeploymentDescriptor,
    time: Option<UnixNanos>,
    now: UnixNanos,
) -> anyhow::Result<Event> {
    let created = match &d.metadata.creation_timestamp {
        Some(t) => Some(UnixNanos::parse_rfc3339(t).ok_or_else(|| {
            anyhow!("{origin}: metadata.creationTimestamp {t:?} is not an RFC 3339 time")
        })?),
        None => None,
    };
    let mut event = Event::new(EventKind::Desired, origin, time.or(created).unwrap_or(now));
    let w = &d.spec.workload;
    let t = &d.spec.deployment_target;
    let v = &d.spec.workload_version;
    event
        .set(keys::WORKSPACE, w.application.workspace.name.clone())
        .set(keys::APPLICATION, w.application.name.clone())
        .set(keys::WORKLOAD, w.name.clone())
        .set(keys::ENVIRONMENT, t.environment.clone())
        .set(keys::TARGET, t.name.clone())
        .set(keys::VERSION, v.version.clone())
        .set(keys::REVISION, gitops_commit(&d.status.git_ops_commit_id))
        .set(keys::BUILD_COMMIT, v.commit.clone())
        .set(keys::BUILD_ID, v.build.clone())
        .set(keys::REPOSITORY_URL, w.source.repo.clone());
    Ok(event)
}

/// Kalypso's deployment statuses (`success`, `failure`, `in_progress`) as
/// `deployment.status`; Sextant's own names are accepted too.
fn status(origin: &str, status: &Option<String>) -> anyhow::Result<Option<&'static str>> {
    Ok(match status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("success" | "succeeded") => Some("succeeded"),
        Some("failure" | "failed") => Some("failed"),
        Some("in_progress") => Some("in_progress"),
        Some(other) => bail!(
            "{origin}: spec.deployment.status {other:?} is not a Kalypso deployment status \
             (expected success, failure or in_progress)"
        ),
    })
}

/// The `sextant.reconciler.type` of observations imported from Kalypso: the
/// hub's source `kalypso`.
pub const KALYPSO_SOURCE: &str = "kalypso";

/// The record attribute that keeps a Kalypso Reconciler's
/// `spec.reconcilerType`; the hub does not read it.
pub const KALYPSO_RECONCILER_TYPE: &str = "kalypso.reconciler.type";

fn reconciler_event(
    origin: &str,
    r: &Reconciler,
    targets: &BTreeMap<String, Placement>,
    time: UnixNanos,
) -> anyhow::Result<Event> {
    let s = &r.spec;
    let endpoint = s.manifests_endpoint.as_deref().map(endpoint_key);
    let placement = match &endpoint {
        Some(e) => targets.get(e).ok_or_else(|| {
            anyhow!(
                "{origin}: no DeploymentDescriptor in the input deploys its manifests \
                 (spec.manifestsEndpoint {e:?}, matched against a descriptor's \
                 spec.deploymentTarget.manifests repo/branch/path); send the descriptor \
                 in the same request, e.g. `-f descriptors.yaml -f reconcilers.yaml`"
            )
        })?,
        None => {
            bail!("{origin}: spec.manifestsEndpoint is required to tell which workload it deploys")
        }
    };
    let mut event = Event::new(EventKind::Observed, origin, time);
    event
        .set(keys::HOST_NAME, s.host_name.clone())
        .set(keys::RECONCILER_NAME, s.reconciler_name.clone())
        // The hub's source for what came through Kalypso; Kalypso's own
        // `spec.reconcilerType` (flux, arc, wo), the tool behind it, rides
        // along under a key of its own.
        .set(keys::RECONCILER_TYPE, Some(KALYPSO_SOURCE.to_owned()))
        .set(KALYPSO_RECONCILER_TYPE, s.reconciler_type.clone());
    set_placement(&mut event, placement);
    event
        .set(
            keys::REVISION,
            gitops_commit(&s.deployment.git_ops_commit_id),
        )
        .set(keys::STATUS, status(origin, &s.deployment.status)?)
        .set(keys::STATUS_MESSAGE, s.deployment.status_message.clone());
    Ok(event)
}

#[cfg(test)]
mod tests {
    use sextant_model::AttributeSource;

    use super::*;

    const DESCRIPTOR: &str = r#"
apiVersion: hub.kalypso.io/v1alpha1
kind: DeploymentDescriptor
metadata:
  name: hello-world-functional-test-0-0-1
  creationTimestamp: "2026-11-20T10:00:00Z"
spec:
  workload:
    name: hello-world
    source: {repo: https://example.com/hello-world, branch: main, path: .}
    application:
      name: greeting-service
      workspace: {name: kaizentm}
  deploymentTarget:
    name: functional-test
    environment: dev
    manifests: {repo: https://example.com/hello-world-gitops, branch: dev, path: functional-test}
  workloadVersion:
    version: 0.0.1
    build: 105
    commit: ca9ee9d0ff9ec52b998fdcf64e128c84ddd0e661
    buildTime: "2023-04-27T23:25:05Z"
status:
  gitOpsCommitId: dev@sha1:4f1c2e9b
"#;

    const RECONCILER: &str = r#"
apiVersion: hub.kalypso.io/v1alpha1
kind: Reconciler
metadata: {name: aks-1-hello}
spec:
  hostName: aks-1
  reconcilerName: hello-world-functional-test
  reconcilerType: flux
  manifestsStorageType: git
  manifestsEndpoint: https://example.com/hello-world-gitops/dev/functional-test
  deployment:
    gitOpsCommitId: sha1:4f1c2e9b
    status: failure
    statusMessage: ""
"#;

    fn read(text: &str) -> anyhow::Result<Vec<Event>> {
        events(
            &[Input {
                name: "k.yaml".into(),
                text: text.into(),
            }],
            None,
            UnixNanos(1),
        )
    }

    fn attr(e: &Event, key: &str) -> Option<String> {
        e.text(key).ok().flatten()
    }

    #[test]
    fn descriptor_and_reconciler_become_desired_and_observed() {
        let events = read(&format!("---\n{DESCRIPTOR}\n---\n{RECONCILER}")).expect("events");
        assert_eq!(events.len(), 2);
        let (d, o) = (&events[0], &events[1]);
        assert_eq!(d.kind, EventKind::Desired);
        assert_eq!(
            d.origin,
            "k.yaml document 1 (DeploymentDescriptor hello-world-functional-test-0-0-1)"
        );
        assert_eq!(
            d.time,
            UnixNanos::parse_rfc3339("2026-11-20T10:00:00Z").expect("time")
        );
        assert_eq!(attr(d, keys::REVISION).as_deref(), Some("sha1:4f1c2e9b"));
        assert_eq!(attr(d, keys::BUILD_ID).as_deref(), Some("105"));
        assert_eq!(attr(d, keys::WORKSPACE).as_deref(), Some("kaizentm"));
        d.validate(descriptor_field).expect("valid desired");

        assert_eq!(o.kind, EventKind::Observed);
        assert_eq!(o.time, UnixNanos(1));
        assert_eq!(attr(o, keys::STATUS).as_deref(), Some("failed"));
        assert_eq!(attr(o, keys::TARGET).as_deref(), Some("functional-test"));
        assert_eq!(attr(o, keys::WORKSPACE).as_deref(), Some("kaizentm"));
        assert_eq!(attr(o, keys::STATUS_MESSAGE), None);
        assert_eq!(attr(o, keys::RECONCILER_TYPE).as_deref(), Some("kalypso"));
        assert_eq!(attr(o, KALYPSO_RECONCILER_TYPE).as_deref(), Some("flux"));
        o.validate(reconciler_field).expect("valid observed");
    }

    #[test]
    fn a_kubectl_list_is_unwrapped() {
        let indent = |s: &str| s.replace('\n', "\n    ");
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n  - {}\n  - {}\n",
            indent(DESCRIPTOR.trim()),
            indent(RECONCILER.trim())
        );
        assert_eq!(read(&list).expect("events").len(), 2);
    }

    #[test]
    fn a_reconciler_without_its_descriptor_is_refused() {
        let err = read(RECONCILER).expect_err("refused").to_string();
        assert!(
            err.contains("no DeploymentDescriptor in the input deploys its manifests"),
            "{err}"
        );
    }

    #[test]
    fn unknown_kinds_and_statuses_are_refused() {
        let err = read("apiVersion: v1\nkind: ConfigMap\n")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("is v1 ConfigMap: only DeploymentDescriptor"),
            "{err}"
        );
        let bad = format!(
            "{DESCRIPTOR}\n---\n{}",
            RECONCILER.replace("failure", "done")
        );
        let err = read(&bad).expect_err("refused").to_string();
        assert!(err.contains("spec.deployment.status \"done\""), "{err}");
        assert!(read("").is_err());
    }

    #[test]
    fn a_missing_field_is_named_by_its_yaml_path() {
        let text = DESCRIPTOR.replace("    environment: dev\n", "");
        let events = read(&text).expect("parsed");
        let err = events[0]
            .validate(descriptor_field)
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("spec.deploymentTarget.environment is required"),
            "{err}"
        );
        let text = DESCRIPTOR.replace("    version: 0.0.1\n", "    version: 1.10\n");
        let err = read(&text).expect_err("refused");
        assert!(format!("{err:#}").contains("quote it"), "{err:#}");
    }
}
