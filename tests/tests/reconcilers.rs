//! Flux and Argo CD into a real `sextant up`, configured by its file
//! (docs/reconcilers.md): the `gotk_resource_info` gauge relayed by the
//! `rotel` collector from PyPI (a collector Sextant did not write), and the
//! webhooks posted as Flux's notification-controller and Argo CD
//! Notifications post them.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use sextant_e2e::{Backend, Hub, Rotel, wait, workspace_root};

const CONFIG: &str = r#"
[[tokens]]
token = "ingest-token-acme-0123"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "read-token-acme-01234"
tenant = "acme"
scopes = ["read"]

[[reconcilers.clusters]]
cluster = "gke-alpha-01-europe-west1"
environment = "prod"

[[reconcilers.hmac_keys]]
key = "flux-provider-hmac-key"
tenant = "acme"
"#;

const READ: &str = "read-token-acme-01234";
const INGEST: &str = "ingest-token-acme-0123";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("receiver/tests/fixtures/reconcilers")
            .join(name),
    )
    .unwrap()
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

async fn drift(hub: &Hub) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/drift?environment=prod", hub.api))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    page["items"].as_array().cloned().unwrap_or_default()
}

fn workloads(rows: &[Value]) -> Vec<&str> {
    let mut w: Vec<&str> = rows.iter().filter_map(|r| r["workload"].as_str()).collect();
    w.sort();
    w
}

#[tokio::test]
async fn the_flux_gauge_through_rotel_gives_drift() {
    let hub = Hub::start(Backend::Sqlite, CONFIG).await;
    hub.wait_ready().await;
    let rotel_grpc = free_addr();
    let rotel_http = free_addr();
    // A relay to the hub's OTLP/gRPC with the hub's token, as a cluster's
    // collector would send it.
    let rotel = Rotel::start(
        [
            ("ROTEL_OTLP_GRPC_ENDPOINT", rotel_grpc.to_string()),
            ("ROTEL_OTLP_HTTP_ENDPOINT", rotel_http.to_string()),
            ("ROTEL_EXPORTER", "otlp".to_owned()),
            ("ROTEL_OTLP_EXPORTER_PROTOCOL", "grpc".to_owned()),
            (
                "ROTEL_OTLP_EXPORTER_ENDPOINT",
                format!("http://{}", hub.grpc),
            ),
            (
                "ROTEL_OTLP_EXPORTER_CUSTOM_HEADERS",
                format!("authorization=Bearer {INGEST}"),
            ),
        ],
        rotel_http,
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let request: ExportMetricsServiceRequest = serde_json::from_str(
        &fixture("flux-gotk-resource-info.json").replace("TIME", &now.to_string()),
    )
    .unwrap();
    let res = reqwest::Client::new()
        .post(format!("http://{rotel_http}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "rotel refused: {}", res.status());

    let hub_ref = &hub;
    let rows = wait::poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move {
            let rows = drift(hub_ref).await;
            if rows.len() >= 2 { Ok(rows) } else { Err(rows) }
        },
    )
    .await
    .unwrap_or_else(|rows| rows);
    let log = rotel.stop();
    assert_eq!(
        workloads(&rows),
        ["apps", "legacy"],
        "{rows:#?}\nrotel log:\n{log}"
    );
    let apps = rows.iter().find(|r| r["workload"] == "apps").unwrap();
    assert_eq!(apps["host"], "prod-eu-1");
    assert_eq!(
        apps["desired"]["revision"], "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738",
        "the GitRepository's revision"
    );
}

#[tokio::test]
async fn webhooks_as_flux_and_argocd_post_them() {
    let hub = Hub::start(Backend::Sqlite, CONFIG).await;
    hub.wait_ready().await;
    let client = reqwest::Client::new();
    // notification-controller's generic-hmac Forwarder: JSON, the
    // Gotk-Component header, X-Signature over the exact body.
    let body = fixture("flux-event-helmrelease-upgrade-failed.json");
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"flux-provider-hmac-key").unwrap();
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let res = client
        .post(format!("http://{}/v1/reconcilers/flux", hub.http))
        .header("content-type", "application/json")
        .header("gotk-component", "helm-controller")
        .header("x-signature", format!("sha256={signature}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // Argo CD Notifications' webhook service: the shipped template over a
    // real Application, the token from argocd-notifications-secret.
    let payload = sextant_e2e::argocd::render(
        &sextant_e2e::argocd::shipped_template(),
        &json!({
            "app": sextant_e2e::argocd::application(),
            "context": {"argocdUrl": "https://argocd.example.com"},
        }),
    );
    let res = client
        .post(format!("http://{}/v1/reconcilers/argocd", hub.http))
        .header("content-type", "application/json")
        .bearer_auth(INGEST)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let rows = drift(&hub).await;
    assert_eq!(workloads(&rows), ["checkout", "velero-test"], "{rows:#?}");
    let hosts: Vec<&str> = rows.iter().filter_map(|r| r["host"].as_str()).collect();
    assert!(hosts.contains(&"prod-eu-1") && hosts.contains(&"gke-alpha-01-europe-west1"));
}
