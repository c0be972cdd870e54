//! Flux and Argo CD into the hub over HTTP, on both backends: the webhooks'
//! credentials (bearer token, Flux's generic-hmac signature), their answers
//! to bad input, the gauge through OTLP/HTTP, and all sources in one drift
//! list and one environment (docs/reconcilers.md).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sextant_kit::Secret;
use sextant_receiver::reconcilers::{ClusterMapping, HmacKey, ReconcilersConfig};

use crate::helpers::{Backend, TestApp, logs, observed, on_both_backends, spawn_app_with, token};

const INGEST: &str = "ingest-token-acme";
const READ: &str = "read-token-acme";
const HMAC_KEY: &str = "flux-provider-key-of-globex";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/reconcilers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// A hub with tokens for tenant `acme`, an HMAC key for tenant `globex`
/// and the Argo CD cluster placed in `prod` by the hub's mapping.
async fn hub(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.tokens = vec![
            token(INGEST, "acme", &["ingest"]),
            token(READ, "acme", &["read"]),
            token("read-token-globex", "globex", &["read"]),
            token("metrics-token", "acme", &["metrics"]),
        ];
        c.reconcilers = ReconcilersConfig {
            clusters: vec![ClusterMapping {
                cluster: "gke-alpha-01-europe-west1".into(),
                environment: Some("prod".into()),
                ..ClusterMapping::default()
            }],
            hmac_keys: vec![HmacKey {
                key: Secret::new(HMAC_KEY),
                tenant: "globex".into(),
            }],
        };
    })
    .await
}

/// POSTs a webhook body as Flux's Forwarder and Argo CD's webhook service
/// do: JSON, with the headers given.
async fn post(app: &TestApp, path: &str, body: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("http://{}{path}", app.http))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let res = req.send().await.expect("webhook request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {INGEST}"))
}

/// `X-Signature: sha256=<hex>` as notification-controller's `generic-hmac`
/// Provider computes it (internal/notifier/forwarder.go `sign`).
fn signature(key: &str, body: &str) -> (&'static str, String) {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ("x-signature", format!("sha256={hex}"))
}

/// Rows of the drift list by workload.
async fn drift(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let (status, page) = app.get(&format!("/api/v1/drift{query}"), Some(token)).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

fn workloads(rows: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["workload"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

async fn flux_events_with_a_token_or_a_signature(b: Backend) {
    let app = hub(b).await;
    let ok = fixture("flux-event-kustomization-succeeded.json");
    let (status, answer) = post(&app, "/v1/reconcilers/flux", &ok, &[bearer()]).await;
    assert_eq!((status, answer.clone()), (200, json!({"accepted": 1})));

    // generic-hmac: the key's tenant, no token.
    let failed = fixture("flux-event-helmrelease-upgrade-failed.json");
    let (status, answer) = post(
        &app,
        "/v1/reconcilers/flux",
        &failed,
        &[signature(HMAC_KEY, &failed)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // A wrong key, a tampered body, no credential at all: 401.
    let (status, answer) = post(
        &app,
        "/v1/reconcilers/flux",
        &failed,
        &[signature("another-key", &failed)],
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("X-Signature"),
        "{answer}"
    );
    let tampered = failed.replace("1.4.2", "9.9.9");
    let (status, _) = post(
        &app,
        "/v1/reconcilers/flux",
        &tampered,
        &[signature(HMAC_KEY, &failed)],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(&app, "/v1/reconcilers/flux", &ok, &[]).await;
    assert_eq!(status, 401);

    // Each event landed in its own tenant only.
    // Events alone carry no desired state (the gauge's sources do).
    let acme = drift(&app, "?environment=prod", READ).await;
    assert_eq!(workloads(&acme), ["podinfo"]);
    assert!(
        acme[0]["drift"]
            .as_array()
            .expect("reasons")
            .contains(&json!("no_desired_state")),
        "{acme:#?}"
    );
    let (status, host) = app.get("/api/v1/hosts/prod-eu-1", Some(READ)).await;
    assert_eq!(status, 200, "{host}");
    let rows = host["deployments"].as_array().expect("deployments");
    assert_eq!(rows.len(), 1, "{host}");
    assert_eq!(rows[0]["workload"], "podinfo");
    assert_eq!(rows[0]["reconciler"], "kustomize-controller");
    assert_eq!(
        rows[0]["revision"],
        "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738"
    );
    let globex = drift(&app, "", "read-token-globex").await;
    assert_eq!(workloads(&globex), ["checkout"], "failed is drift");
    assert_eq!(globex[0]["status"], "failed");
    app.stop().await;
}

async fn bad_flux_events_get_a_clear_answer_and_a_count(b: Backend) {
    let app = hub(b).await;
    let missing = fixture("flux-event-kustomization-no-revision.json");
    let (status, answer) = post(&app, "/v1/reconcilers/flux", &missing, &[bearer()]).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "Flux event for Kustomization flux-system/apps has no revision: metadata `revision` \
         (or `kustomize.toolkit.fluxcd.io/revision`) is missing"
    );
    let source = fixture("flux-event-gitrepository.json");
    let (status, answer) = post(&app, "/v1/reconcilers/flux", &source, &[bearer()]).await;
    assert_eq!(
        (status, answer),
        (200, json!({"accepted": 0, "ignored": "flux_source_event"}))
    );
    let image = fixture("flux-event-imageupdateautomation.json");
    let (status, answer) = post(&app, "/v1/reconcilers/flux", &image, &[bearer()]).await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"accepted": 0, "ignored": "flux_kind_not_a_workload"})
        )
    );
    let (status, answer) = post(&app, "/v1/reconcilers/flux", "{not json", &[bearer()]).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("invalid JSON payload"),
        "{answer}"
    );
    // The documented event names no cluster unless the Provider's address does.
    let docs = fixture("flux-event-docs-v1beta3.json");
    let (status, answer) = post(&app, "/v1/reconcilers/flux", &docs, &[bearer()]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("?cluster="),
        "{answer}"
    );
    let (status, answer) = post(
        &app,
        "/v1/reconcilers/flux?cluster=stage-1&environment=stage",
        &docs,
        &[bearer()],
    )
    .await;
    assert_eq!((status, answer), (200, json!({"accepted": 1})));

    let metrics = app
        .client
        .get(format!("http://{}/metrics", app.api))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for (outcome, reason, n) in [
        ("rejected", "missing_attribute", 2),
        ("ignored", "flux_source_event", 1),
        ("ignored", "flux_kind_not_a_workload", 1),
        ("accepted", "deployment_event", 1),
    ] {
        let labels = [
            format!("outcome=\"{outcome}\""),
            format!("reason=\"{reason}\""),
            "signal=\"flux_events\"".to_owned(),
        ];
        let found = metrics.lines().any(|line| {
            line.starts_with("sextant_receiver_records_total{")
                && labels.iter().all(|l| line.contains(l.as_str()))
                && line.ends_with(&format!(" {n}"))
        });
        assert!(found, "{outcome} {reason} {n} missing from\n{metrics}");
    }
    app.stop().await;
}

/// The gauge, as a collector relays it, with a workload still on the
/// commit before its source's: drift by revision; and the rest of the
/// batch kept around the one series with no revision.
async fn flux_gauge_over_otlp_gives_observed_and_desired_state(b: Backend) {
    let app = hub(b).await;
    let body = fixture("flux-gotk-resource-info.json").replace("TIME", &now_nanos().to_string());
    let body: Value = serde_json::from_str(&body).expect("json");
    let res = app.post_json("metrics", &body, Some(INGEST)).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], 1,
        "{answer}"
    );
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("flux-system/new-app has no `revision` label"),
        "{answer}"
    );
    let rows = drift(&app, "?environment=prod", READ).await;
    // apps: ready False and behind its source; legacy: suspended, its
    // source not reported. podinfo and checkout are in sync; infra is still
    // reconciling the desired revision, which is not drift.
    assert_eq!(workloads(&rows), ["apps", "legacy"], "{rows:#?}");
    let apps = rows.iter().find(|r| r["workload"] == "apps").expect("apps");
    assert_eq!(
        apps["desired"]["revision"],
        "main@sha1:5394cb7f48332b2de7c17dd8b8384bbc84b7e738"
    );
    assert_eq!(
        apps["revision"],
        "main@sha1:69b59063470310ebbd88a9156325322a124e55a3"
    );
    // Scraped again 30 s later: the same state, no second assignment.
    let before = app.db.count("desired_assignments").await;
    let res = app.post_json("metrics", &body, Some(INGEST)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.db.count("desired_assignments").await, before);
    app.stop().await;
}

async fn argocd_notifications_rendered_from_the_shipped_template(b: Backend) {
    let app = hub(b).await;
    let context = json!({"argocdUrl": "https://argocd.example.com"});
    let mut application = sextant_e2e::argocd::application();
    let template = sextant_e2e::argocd::shipped_template();
    // As the fixture is: git at rev1, the last sync applied ea87599.
    let body =
        sextant_e2e::argocd::render(&template, &json!({"app": application, "context": context}));
    let (status, answer) = post(&app, "/v1/reconcilers/argocd", &body, &[bearer()]).await;
    assert_eq!(
        (status, answer),
        (200, json!({"accepted": 2})),
        "observed and desired"
    );
    let rows = drift(&app, "?environment=prod", READ).await;
    assert_eq!(workloads(&rows), ["velero-test"]);
    assert_eq!(rows[0]["desired"]["revision"], "rev1");
    assert_eq!(rows[0]["host"], "gke-alpha-01-europe-west1");
    // Synced to rev1: in sync, out of the drift list.
    application["status"]["operationState"]["syncResult"]["revision"] = json!("rev1");
    let body =
        sextant_e2e::argocd::render(&template, &json!({"app": application, "context": context}));
    let (status, answer) = post(&app, "/v1/reconcilers/argocd", &body, &[bearer()]).await;
    assert_eq!(
        (status, answer),
        (200, json!({"accepted": 1})),
        "desired known"
    );
    assert!(drift(&app, "?environment=prod", READ).await.is_empty());
    // No revision at all: 400 naming the field; no token: 401.
    application["status"]
        .as_object_mut()
        .expect("status")
        .remove("sync");
    let body =
        sextant_e2e::argocd::render(&template, &json!({"app": application, "context": context}));
    let (status, answer) = post(&app, "/v1/reconcilers/argocd", &body, &[bearer()]).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`revision` (status.sync.revision)"),
        "{answer}"
    );
    let (status, _) = post(&app, "/v1/reconcilers/argocd", &body, &[]).await;
    assert_eq!(status, 401);
    app.stop().await;
}

/// A Flux cluster, an Argo CD cluster and a Docker host with the agent in
/// one environment: one drift list and one environment state.
async fn flux_argocd_and_the_agent_side_by_side(b: Backend) {
    let app = hub(b).await;
    let now = now_nanos();
    let gauge = fixture("flux-gotk-resource-info.json").replace("TIME", &now.to_string());
    let res = app
        .post_json(
            "metrics",
            &serde_json::from_str(&gauge).expect("json"),
            Some(INGEST),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = sextant_e2e::argocd::render(
        &sextant_e2e::argocd::shipped_template(),
        &json!({"app": sextant_e2e::argocd::application(), "context": {}}),
    );
    let (status, _) = post(&app, "/v1/reconcilers/argocd", &body, &[bearer()]).await;
    assert_eq!(status, 200);
    let mut agent = observed(
        "docker-host-1",
        ("shop", "checkout", "prod", "dc1"),
        "sha256:aa",
        "failed",
        now,
    );
    agent["attributes"]
        .as_array_mut()
        .expect("attributes")
        .extend([
            crate::helpers::kv("sextant.reconciler.type", "agent"),
            crate::helpers::kv("sextant.reconciler.name", "agent-docker-host-1"),
        ]);
    let res = app
        .post_json("logs", &logs(vec![agent]), Some(INGEST))
        .await;
    assert_eq!(res.status(), 200);

    let rows = drift(&app, "?environment=prod", READ).await;
    let mut hosts: Vec<&str> = rows.iter().filter_map(|r| r["host"].as_str()).collect();
    hosts.dedup();
    assert_eq!(
        hosts,
        ["docker-host-1", "gke-alpha-01-europe-west1", "prod-eu-1"],
        "{rows:#?}"
    );
    // Each row says which source reported it, and the filter picks one.
    for (host, source) in [
        ("docker-host-1", "agent"),
        ("gke-alpha-01-europe-west1", "argocd"),
        ("prod-eu-1", "flux"),
    ] {
        let row = rows.iter().find(|r| r["host"] == host).expect("row");
        assert_eq!(row["source"], source, "{row}");
        let only = drift(&app, &format!("?environment=prod&source={source}"), READ).await;
        assert!(
            !only.is_empty() && only.iter().all(|r| r["host"] == host),
            "{source}: {only:#?}"
        );
    }
    let (status, state) = app.get("/api/v1/environments/prod/state", Some(READ)).await;
    assert_eq!(status, 200, "{state}");
    let text = state.to_string();
    for target in ["dc1", "gke-alpha-01-europe-west1", "prod-eu-1"] {
        assert!(text.contains(target), "{target} missing from {state}");
    }
    app.stop().await;
}

/// DORA's metrics count a deployment the same way whoever reports it: a
/// Flux HelmRelease that moves from chart 1.4.2 to 1.4.3 between two
/// scrapes of `gotk_resource_info`, an Argo CD Application that syncs
/// from ea87599 to rev1 between two notifications, and an agent's
/// container that moves from r1 to r2. Each source's first report is its
/// baseline; each move is one deployment, which succeeded.
async fn dora_counts_flux_argocd_and_the_agent_alike(b: Backend) {
    let app = hub(b).await;
    let t0 = now_nanos() - 60_000_000_000;
    let t1 = t0 + 30_000_000_000;
    let gauge = fixture("flux-gotk-resource-info.json");
    for (at, body) in [
        (t0, gauge.clone()),
        (t1, gauge.replace("\"1.4.2\"", "\"1.4.3\"")),
    ] {
        let body: Value =
            serde_json::from_str(&body.replace("TIME", &at.to_string())).expect("json");
        let res = app.post_json("metrics", &body, Some(INGEST)).await;
        assert_eq!(res.status(), 200);
    }
    let template = sextant_e2e::argocd::shipped_template();
    let mut application = sextant_e2e::argocd::application();
    for synced in [None, Some("rev1")] {
        if let Some(revision) = synced {
            application["status"]["operationState"]["syncResult"]["revision"] = json!(revision);
        }
        let body =
            sextant_e2e::argocd::render(&template, &json!({"app": application, "context": {}}));
        let (status, answer) = post(&app, "/v1/reconcilers/argocd", &body, &[bearer()]).await;
        assert_eq!(status, 200, "{answer}");
    }
    let agent = |revision: &str, at: u64| {
        let mut record = observed(
            "docker-host-1",
            ("shop", "checkout", "prod", "dc1"),
            revision,
            "succeeded",
            at,
        );
        record["attributes"]
            .as_array_mut()
            .expect("attributes")
            .extend([
                crate::helpers::kv("sextant.reconciler.type", "agent"),
                crate::helpers::kv("sextant.reconciler.name", "agent-docker-host-1"),
            ]);
        record
    };
    let res = app
        .post_json(
            "logs",
            &logs(vec![agent("sha256:aa", t0), agent("sha256:bb", t1)]),
            Some(INGEST),
        )
        .await;
    assert_eq!(res.status(), 200);

    let report = |query: String| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(
                    &format!("/api/v1/insights/dora?since=1h{query}"),
                    Some(READ),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let all = report(String::new()).await;
    assert_eq!(all["totals"]["deployments"], 3, "{all:#}");
    for source in ["flux", "argocd", "agent"] {
        let one = report(format!("&source={source}")).await;
        let totals = &one["totals"];
        assert_eq!(totals["deployments"], 1, "{source}: {one:#}");
        assert_eq!(totals["failed_deployments"], 0, "{source}: {one:#}");
        assert_eq!(totals["lead_time_deployments"], 1, "{source}: {one:#}");
    }
    app.stop().await;
}

/// Over mTLS: a Flux cluster's client certificate, mapped to a tenant by
/// `[[client_certs]]`, posts events with no token; a certificate no entry
/// maps needs one.
async fn webhooks_over_mtls_with_a_mapped_client_certificate(b: Backend) {
    let pki = sextant_e2e::pki::Pki::new();
    let app = spawn_app_with(b, |c| {
        c.tls = sextant_kit::serve::ServerTlsConfig {
            cert_file: Some(pki.server.cert.clone()),
            key_file: Some(pki.server.key.clone()),
            client_ca_file: Some(pki.ca_file.clone()),
        };
        c.tokens = vec![token(READ, "acme", &["read"])];
        c.client_certs = vec![sextant_receiver::auth::ClientCertConfig {
            subject: "CN=flux-prod-eu-1".parse().expect("name"),
            tenant: "acme".into(),
            scopes: serde_json::from_value(json!(["ingest"])).expect("scopes"),
        }];
    })
    .await;
    let client = |cn: &str| {
        let files = pki.client(cn);
        let mut pem = std::fs::read(&files.cert).expect("cert");
        pem.extend(std::fs::read(&files.key).expect("key"));
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_file).expect("CA"))
                    .expect("CA"),
            )
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .build()
            .expect("client")
    };
    let url = format!("https://localhost:{}/v1/reconcilers/flux", app.http.port());
    let body = fixture("flux-event-kustomization-succeeded.json");
    let res = client("flux-prod-eu-1")
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("served");
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let res = client("someone-else")
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("served");
    assert_eq!(res.status(), 401);
    let text = res.text().await.expect("body");
    assert!(text.contains("CN=someone-else"), "{text}");
    let (status, host) = {
        let res = client("flux-prod-eu-1")
            .get(format!(
                "https://localhost:{}/api/v1/hosts/prod-eu-1",
                app.api.port()
            ))
            .bearer_auth(READ)
            .send()
            .await
            .expect("served");
        (res.status(), res.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 200, "{host}");
    assert_eq!(host["deployments"][0]["workload"], "podinfo");
    app.stop().await;
}

/// Argo CD notifies only when an Application changes: its rows are never
/// stale, while an agent's silent host is.
async fn argocd_rows_are_never_stale(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.stale_after_seconds = 1;
        c.reconcilers.clusters = vec![ClusterMapping {
            cluster: "gke-alpha-01-europe-west1".into(),
            environment: Some("prod".into()),
            ..ClusterMapping::default()
        }];
    })
    .await;
    let mut application = sextant_e2e::argocd::application();
    application["status"]["sync"]["revision"] = json!("ea8759964626a583667a2bfd08f334ec2070040a");
    let body = sextant_e2e::argocd::render(
        &sextant_e2e::argocd::shipped_template(),
        &json!({"app": application, "context": {}}),
    );
    let (status, _) = post(&app, "/v1/reconcilers/argocd", &body, &[]).await;
    assert_eq!(status, 200);
    let at = ("shop", "checkout", "prod", "dc1");
    app.send_logs(&logs(vec![
        crate::helpers::desired(at, "1.0", "sha256:aa", now_nanos()),
        observed("docker-host-1", at, "sha256:aa", "succeeded", now_nanos()),
    ]))
    .await;
    // Real time: staleness is judged against the wall clock (stale after 1 s).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let (_, page) = app.get("/api/v1/drift?environment=prod", None).await;
    let rows = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        workloads(&rows),
        ["checkout"],
        "only the agent's row: {rows:#?}"
    );
    assert_eq!(rows[0]["drift"], json!(["stale"]));
    let (_, hosts) = app.get("/api/v1/hosts", None).await;
    let stale: Vec<(String, bool)> = hosts["items"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap_or_default().to_owned(),
                h["stale"] == true,
            )
        })
        .collect();
    assert_eq!(
        stale,
        [
            ("docker-host-1".to_owned(), true),
            ("gke-alpha-01-europe-west1".to_owned(), false)
        ]
    );
    let (_, argo) = app
        .get("/api/v1/hosts/gke-alpha-01-europe-west1", None)
        .await;
    assert_eq!(argo["stale"], false, "{argo}");
    assert_eq!(argo["deployments"][0]["drift"], json!([]), "{argo}");
    let (_, agent) = app.get("/api/v1/hosts/docker-host-1", None).await;
    assert_eq!(agent["stale"], true, "{agent}");
    let page = app
        .client
        .get(format!("http://{}/hosts", app.api))
        .send()
        .await
        .expect("UI")
        .text()
        .await
        .expect("html");
    assert_eq!(
        page.matches("flag stale").count(),
        1,
        "one stale host in the UI"
    );
    app.stop().await;
}

on_both_backends!(
    argocd_rows_are_never_stale,
    webhooks_over_mtls_with_a_mapped_client_certificate,
    flux_events_with_a_token_or_a_signature,
    bad_flux_events_get_a_clear_answer_and_a_count,
    flux_gauge_over_otlp_gives_observed_and_desired_state,
    argocd_notifications_rendered_from_the_shipped_template,
    flux_argocd_and_the_agent_side_by_side,
    dora_counts_flux_argocd_and_the_agent_alike,
);
