use serde_json::{Value, json};

use super::*;
use crate::reconcilers::ReconcilersConfig;

use sextant_e2e::argocd::{application, render, shipped_template};

fn notify(app: &Value, context: Value) -> Notification {
    let body = render(
        &shipped_template(),
        &json!({"app": app, "context": context}),
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("rendered body is JSON: {e}\n{body}"))
}

fn context() -> Value {
    json!({"argocdUrl": "https://argocd.example.com", "environment": "prod"})
}

fn map(n: &Notification, r: &Reconcilers) -> Result<Extracted, Refused> {
    let mut out = Extracted::default();
    n.map(
        &HashMap::new(),
        r,
        "acme",
        TimeWindow::now(std::time::Duration::from_secs(300)),
        &mut out,
    )?;
    Ok(out)
}

fn events(
    out: &Extracted,
) -> (
    Option<&ObservedDeployment>,
    Option<&sextant_model::DesiredDeployment>,
) {
    let mut observed = None;
    let mut desired = None;
    for e in &out.events {
        match e {
            DeploymentEvent::Observed(o) => observed = Some(o),
            DeploymentEvent::Desired(d) => desired = Some(d),
        }
    }
    (observed, desired)
}

const SYNCED: &str = "ea8759964626a583667a2bfd08f334ec2070040a";

#[test]
fn the_shipped_template_renders_a_real_application_into_the_payload() {
    let n = notify(&application(), context());
    assert_eq!(n.app.as_deref(), Some("velero-test"));
    assert_eq!(n.project.as_deref(), Some("sre"));
    assert_eq!(
        n.destination.name.as_deref(),
        Some("gke-alpha-01-europe-west1")
    );
    assert_eq!(n.destination.namespace.as_deref(), Some("test-lla"));
    assert_eq!(n.revision.as_deref(), Some("rev1"));
    assert_eq!(n.sync_status.as_deref(), Some("Synced"));
    assert_eq!(n.health_status.as_deref(), Some("Healthy"));
    assert_eq!(n.phase.as_deref(), Some("Succeeded"));
    assert_eq!(n.sync_result_revision.as_deref(), Some(SYNCED));
    assert_eq!(n.finished_at.as_deref(), Some("2024-03-05T07:33:04Z"));
    assert_eq!(n.images.as_deref(), Some(&["nginx:latest".to_owned()][..]));
    assert_eq!(
        n.context
            .as_ref()
            .and_then(|c| c.get("environment"))
            .map(String::as_str),
        Some("prod")
    );
}

#[test]
fn healthy_and_synced_is_succeeded_and_in_sync() {
    let mut app = application();
    app["status"]["sync"]["revision"] = json!(SYNCED);
    let out = map(&notify(&app, context()), &Reconcilers::default()).expect("maps");
    let (Some(o), Some(d)) = events(&out) else {
        panic!("observed and desired: {:?}", out.events)
    };
    assert_eq!(o.status, DeploymentStatus::Succeeded);
    assert_eq!(o.revision, SYNCED);
    assert_eq!(d.revision, SYNCED);
    assert_eq!(o.host, "gke-alpha-01-europe-west1");
    assert_eq!(o.placement.target, "gke-alpha-01-europe-west1");
    assert_eq!(o.placement.environment, "prod", "from the context");
    assert_eq!(o.placement.application, "sre", "the project");
    assert_eq!(o.placement.workload, "velero-test");
    assert_eq!(o.reconciler.kind, "argocd");
    assert_eq!(o.reconciler.name, "argocd.example.com");
    let message = o.message.as_deref().unwrap_or_default();
    assert!(message.contains("images nginx:latest"), "{message}");
    assert!(message.contains("2024-03-05T07:33:04Z"), "{message}");
}

#[test]
fn a_newer_git_revision_than_the_one_synced_is_drift() {
    // The fixture as it is: git says rev1, the last sync applied ea87599.
    let out = map(&notify(&application(), context()), &Reconcilers::default()).expect("maps");
    let (Some(o), Some(d)) = events(&out) else {
        panic!("both")
    };
    assert_eq!(o.revision, SYNCED);
    assert_eq!(d.revision, "rev1");
}

#[test]
fn statuses_from_health_sync_and_phase() {
    let cases = [
        (
            json!({"phase": "Running"}),
            json!(null),
            json!(null),
            DeploymentStatus::InProgress,
        ),
        (
            json!({"phase": "Failed"}),
            json!(null),
            json!(null),
            DeploymentStatus::Failed,
        ),
        (
            json!({"phase": "Error"}),
            json!(null),
            json!(null),
            DeploymentStatus::Failed,
        ),
        (
            json!(null),
            json!("Degraded"),
            json!(null),
            DeploymentStatus::Failed,
        ),
        (
            json!(null),
            json!("Progressing"),
            json!(null),
            DeploymentStatus::InProgress,
        ),
        (
            json!(null),
            json!(null),
            json!("OutOfSync"),
            DeploymentStatus::Failed,
        ),
    ];
    for (phase, health, sync, want) in cases {
        let mut app = application();
        app["status"]["sync"]["revision"] = json!(SYNCED);
        if let Some(p) = phase.get("phase") {
            app["status"]["operationState"]["phase"] = p.clone();
        }
        if !health.is_null() {
            app["status"]["health"]["status"] = health.clone();
        }
        if !sync.is_null() {
            app["status"]["sync"]["status"] = sync.clone();
        }
        let out = map(&notify(&app, context()), &Reconcilers::default()).expect("maps");
        let (Some(o), _) = events(&out) else {
            panic!("observed")
        };
        assert_eq!(o.status, want, "phase {phase} health {health} sync {sync}");
    }
}

#[test]
fn labels_win_over_the_context_and_the_hub_fills_in() {
    let mut app = application();
    app["metadata"]["labels"]["sextant.io/environment"] = json!("stage");
    app["metadata"]["labels"]["sextant.io/target"] = json!("eu-west1");
    let r = Reconcilers::new(ReconcilersConfig {
        clusters: vec![crate::reconcilers::ClusterMapping {
            cluster: "gke-alpha-01-europe-west1".into(),
            environment: Some("from-hub".into()),
            target: Some("from-hub".into()),
            application: Some("platform".into()),
            workspace: None,
        }],
        hmac_keys: vec![],
    });
    let out = map(&notify(&app, context()), &r).expect("maps");
    let (Some(o), _) = events(&out) else {
        panic!("observed")
    };
    assert_eq!(o.placement.environment, "stage");
    assert_eq!(o.placement.target, "eu-west1");
    assert_eq!(
        o.placement.application, "platform",
        "the hub over the project"
    );
}

#[test]
fn an_application_never_synced_renders_and_is_refused_naming_the_revision() {
    let mut app = application();
    let status = app["status"].as_object_mut().expect("status");
    status.remove("operationState");
    status.remove("sync");
    status.remove("summary");
    let n = notify(&app, context());
    assert!(n.phase.is_none() && n.images.is_none());
    let refused = map(&n, &Reconcilers::default()).expect_err("no revision");
    assert_eq!(
        refused.to_string(),
        "Argo CD notification for application velero-test has no revision: `revision` \
         (status.sync.revision) or `revisions` (status.sync.revisions) is missing"
    );
}

#[test]
fn the_in_cluster_destination_is_named_in_cluster() {
    let mut app = application();
    app["spec"]["destination"] =
        json!({"server": "https://kubernetes.default.svc", "namespace": "velero"});
    let out = map(&notify(&app, context()), &Reconcilers::default()).expect("maps");
    let (Some(o), _) = events(&out) else {
        panic!("observed")
    };
    assert_eq!(o.host, "in-cluster");
}
