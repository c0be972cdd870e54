use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::*;
use crate::otlp::extract;
use crate::otlp::window::TimeWindow;
use crate::reconcilers::{ClusterMapping, ReconcilersConfig};
use sextant_model::DesiredDeployment;

/// The fixtures (receiver/tests/fixtures/reconcilers/README.md says where
/// each comes from).
fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/reconcilers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn window() -> TimeWindow {
    TimeWindow::now(Duration::from_secs(300))
}

/// The gauge fixture with its points dated now.
fn gauge_request() -> ExportMetricsServiceRequest {
    let now = window().now.0.to_string();
    serde_json::from_str(&fixture("flux-gotk-resource-info.json").replace("TIME", &now))
        .expect("OTLP JSON")
}

fn observed(out: &Extracted) -> HashMap<String, &ObservedDeployment> {
    out.events
        .iter()
        .filter_map(|e| match e {
            DeploymentEvent::Observed(o) => Some((o.placement.workload.clone(), o)),
            DeploymentEvent::Desired(_) => None,
        })
        .collect()
}

fn desired(out: &Extracted) -> HashMap<String, &DesiredDeployment> {
    out.events
        .iter()
        .filter_map(|e| match e {
            DeploymentEvent::Desired(d) => Some((d.placement.workload.clone(), d)),
            DeploymentEvent::Observed(_) => None,
        })
        .collect()
}

#[test]
fn gauge_workloads_are_observed_on_their_cluster() {
    let r = Reconcilers::default();
    let out = extract::metrics(&gauge_request(), window(), &r, "acme");
    let seen = observed(&out);
    let names: Vec<_> = {
        let mut n: Vec<_> = seen.keys().cloned().collect();
        n.sort();
        n
    };
    assert_eq!(names, ["apps", "checkout", "infra", "legacy", "podinfo"]);
    let podinfo = seen["podinfo"];
    assert_eq!(podinfo.host, "prod-eu-1");
    assert_eq!(podinfo.placement.environment, "prod");
    assert_eq!(
        podinfo.placement.target, "prod-eu-1",
        "the cluster by default"
    );
    assert_eq!(
        podinfo.placement.application, "flux-system",
        "the namespace"
    );
    assert_eq!(
        podinfo.revision,
        "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738"
    );
    assert_eq!(podinfo.status, DeploymentStatus::Succeeded);
    assert_eq!(podinfo.reconciler.kind, "flux");
    assert_eq!(podinfo.reconciler.name, "kustomize-controller");
    assert_eq!(seen["apps"].status, DeploymentStatus::Failed, "ready False");
    assert_eq!(
        seen["infra"].status,
        DeploymentStatus::InProgress,
        "Unknown"
    );
    // Suspended with its Ready condition False: shown as suspended, not failed.
    let legacy = seen["legacy"];
    assert_eq!(legacy.status, DeploymentStatus::InProgress, "not failed");
    assert_eq!(
        legacy.message.as_deref(),
        Some("suspended (spec.suspend: true); Ready False")
    );
    let checkout = seen["checkout"];
    assert_eq!(checkout.revision, "1.4.2", "the chart version");
    assert_eq!(checkout.reconciler.name, "helm-controller");
    assert_eq!(checkout.placement.application, "shop");
}

#[test]
fn sources_give_the_desired_revision_once() {
    let r = Reconcilers::default();
    let out = extract::metrics(&gauge_request(), window(), &r, "acme");
    let want = desired(&out);
    let git = "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738";
    assert_eq!(want["podinfo"].revision, git);
    // `apps` applied the previous commit; its source moved on: drift.
    assert_eq!(want["apps"].revision, git);
    assert_ne!(observed(&out)["apps"].revision, git);
    assert!(want["infra"].revision.starts_with("latest@sha256:"), "OCI");
    assert_eq!(
        want["checkout"].revision, "1.4.2",
        "HelmChart shop-checkout"
    );
    assert!(!want.contains_key("legacy"), "its source is not reported");
    assert_eq!(out.remember.len(), 4);
    // Stored, then scraped again: no second assignment of the same revision.
    r.desired.remember(out.remember);
    let again = extract::metrics(&gauge_request(), window(), &r, "acme");
    assert!(desired(&again).is_empty());
    assert_eq!(observed(&again).len(), 5, "observed every time");
    // Another tenant's memo is its own.
    let other = extract::metrics(&gauge_request(), window(), &r, "globex");
    assert_eq!(desired(&other).len(), 4);
}

#[test]
fn gauge_reasons_for_what_is_not_a_workload_and_what_is_missing() {
    let out = extract::metrics(&gauge_request(), window(), &Reconcilers::default(), "acme");
    let ignored: HashMap<_, _> = out.ignored_for.iter().copied().collect();
    assert_eq!(ignored["flux_source"], 4);
    assert_eq!(ignored["flux_kind_not_a_workload"], 1, "the Alert");
    assert_eq!(out.rejected, vec![("missing_attribute", 1)]);
    let message = out.error_message();
    assert!(
        message.contains("Kustomization flux-system/new-app has no `revision` label"),
        "{message}"
    );
    assert!(message.contains("dataPoints[9]"), "{message}");
}

#[test]
fn hub_mapping_fills_in_under_what_the_collector_says() {
    let r = Reconcilers::new(ReconcilersConfig {
        clusters: vec![ClusterMapping {
            cluster: "prod-eu-1".into(),
            environment: Some("production".into()),
            target: Some("eu-west".into()),
            application: Some("platform".into()),
            workspace: None,
        }],
        hmac_keys: vec![],
    });
    let out = extract::metrics(&gauge_request(), window(), &r, "acme");
    let podinfo = observed(&out)["podinfo"];
    assert_eq!(
        podinfo.placement.environment, "prod",
        "the collector's deployment.environment.name wins"
    );
    assert_eq!(podinfo.placement.target, "eu-west");
    assert_eq!(podinfo.placement.application, "platform");
}

#[test]
fn a_gauge_without_a_cluster_is_rejected_by_name() {
    let now = window().now.0.to_string();
    let json = fixture("flux-gotk-resource-info.json")
        .replace("TIME", &now)
        .replace("k8s.cluster.name", "k8s.cluster.nickname");
    let request: ExportMetricsServiceRequest = serde_json::from_str(&json).expect("json");
    let out = extract::metrics(&request, window(), &Reconcilers::default(), "acme");
    assert!(observed(&out).is_empty());
    assert!(
        out.error_message().contains("`k8s.cluster.name`"),
        "{}",
        out.error_message()
    );
}

fn event(name: &str) -> Event {
    serde_json::from_str(&fixture(name)).expect("Flux event JSON")
}

/// Fixtures carry their real (past) timestamps; a window far enough
/// back that they are not "in the future".
fn event_window() -> TimeWindow {
    window()
}

#[test]
fn a_kustomization_event_of_current_flux() {
    let e = event("flux-event-kustomization-succeeded.json");
    let Mapped::Event(o) = e
        .map(&HashMap::new(), &Reconcilers::default(), event_window())
        .expect("maps")
    else {
        panic!("a workload")
    };
    assert_eq!(o.host, "prod-eu-1", "eventMetadata cluster");
    assert_eq!(o.placement.environment, "prod", "eventMetadata env");
    assert_eq!(o.placement.workload, "podinfo");
    assert_eq!(
        o.revision,
        "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738"
    );
    assert_eq!(o.status, DeploymentStatus::Succeeded);
    assert_eq!(o.reconciler.name, "kustomize-controller");
    assert_eq!(o.reconciler.kind, "flux");
    assert_eq!(
        o.observed_at,
        UnixNanos::parse_rfc3339("2026-11-30T16:40:02Z").expect("time")
    );
    assert!(
        o.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("Reconciliation finished")
    );
}

#[test]
fn the_documented_event_with_a_group_prefixed_revision_and_the_address_query() {
    let e = event("flux-event-docs-v1beta3.json");
    let query = HashMap::from([
        ("cluster".to_owned(), "stage-1".to_owned()),
        ("environment".to_owned(), "stage".to_owned()),
    ]);
    let Mapped::Event(o) = e
        .map(&query, &Reconcilers::default(), event_window())
        .expect("maps")
    else {
        panic!("a workload")
    };
    assert_eq!(o.revision, "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1");
    assert_eq!(o.status, DeploymentStatus::Failed, "severity error");
    assert_eq!(o.host, "stage-1");
    assert_eq!(o.placement.application, "apps");
    assert!(
        o.message
            .as_deref()
            .unwrap_or_default()
            .contains("Unsupported value")
    );
}

#[test]
fn metadata_wins_over_the_address_query_which_wins_over_the_hub() {
    let e = event("flux-event-kustomization-succeeded.json");
    let query = HashMap::from([
        ("cluster".to_owned(), "somewhere-else".to_owned()),
        ("environment".to_owned(), "stage".to_owned()),
        ("target".to_owned(), "from-query".to_owned()),
    ]);
    let r = Reconcilers::new(ReconcilersConfig {
        clusters: vec![ClusterMapping {
            cluster: "prod-eu-1".into(),
            environment: Some("from-hub".into()),
            target: Some("from-hub".into()),
            application: Some("from-hub".into()),
            workspace: Some("platform".into()),
        }],
        hmac_keys: vec![],
    });
    let Mapped::Event(o) = e.map(&query, &r, event_window()).expect("maps") else {
        panic!("a workload")
    };
    assert_eq!(o.host, "prod-eu-1", "metadata over query");
    assert_eq!(o.placement.environment, "prod", "metadata over query");
    assert_eq!(o.placement.target, "from-query", "query over hub");
    assert_eq!(o.placement.application, "from-hub", "hub over the default");
    assert_eq!(o.placement.workspace, "platform");
}

#[test]
fn helm_release_failure_event() {
    let e = event("flux-event-helmrelease-upgrade-failed.json");
    let Mapped::Event(o) = e
        .map(&HashMap::new(), &Reconcilers::default(), event_window())
        .expect("maps")
    else {
        panic!("a workload")
    };
    assert_eq!(o.revision, "1.4.2");
    assert_eq!(o.status, DeploymentStatus::Failed);
    assert_eq!(o.reconciler.name, "helm-controller");
    assert_eq!(o.placement.application, "shop");
}

#[test]
fn events_that_are_not_a_workload_are_ignored_with_the_reason() {
    let none = HashMap::new();
    let r = Reconcilers::default();
    let source = event("flux-event-gitrepository.json");
    assert!(matches!(
        source.map(&none, &r, event_window()),
        Ok(Mapped::Ignored("flux_source_event"))
    ));
    let image = event("flux-event-imageupdateautomation.json");
    assert!(matches!(
        image.map(&none, &r, event_window()),
        Ok(Mapped::Ignored("flux_kind_not_a_workload"))
    ));
}

#[test]
fn refusals_name_the_field() {
    let none = HashMap::new();
    let r = Reconcilers::default();
    let missing = event("flux-event-kustomization-no-revision.json")
        .map(&none, &r, event_window())
        .expect_err("no revision");
    assert_eq!(
        missing.to_string(),
        "Flux event for Kustomization flux-system/apps has no revision: metadata `revision` \
         (or `kustomize.toolkit.fluxcd.io/revision`) is missing"
    );
    let no_cluster = event("flux-event-docs-v1beta3.json")
        .map(&none, &r, event_window())
        .expect_err("no cluster");
    assert!(
        no_cluster.to_string().contains("names no cluster"),
        "{no_cluster}"
    );
    let mut future = event("flux-event-kustomization-succeeded.json");
    future.timestamp = Some("2200-01-01T00:00:00Z".into());
    let skew = future.map(&none, &r, event_window()).expect_err("future");
    assert!(skew.to_string().contains("clock-skew window"), "{skew}");
    let mut nul = event("flux-event-kustomization-succeeded.json");
    nul.metadata.insert("revision".into(), "main\0".into());
    let nul = nul.map(&none, &r, event_window()).expect_err("NUL");
    assert!(nul.to_string().contains("NUL"), "{nul}");
}
