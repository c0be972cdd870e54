//! The OpenTelemetry Python SDK's OTLP exporters (from PyPI) send deployment
//! events to a real `sextant up` over gRPC and over HTTP, with tokens; the
//! read API then shows them, to the right tenant only. Both backends.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sextant_e2e::{Backend, Hub, python, workspace_root};

const CONFIG: &str = r#"
[[tokens]]
token = "ingest-acme"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "read-acme"
tenant = "acme"
scopes = ["read"]

[[tokens]]
token = "read-globex"
tenant = "globex"
scopes = ["read"]
"#;

const REVISION: &str = "sha256:89f10a86c53a0674f7c21fa7d2dab8208f118c3836ef6a163b071c98cdc99c37";

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Grpc,
    Http,
}

/// Runs `tests/python/otlp_send.py` with `items` on stdin; returns
/// (success, stderr).
fn send(protocol: Protocol, hub: &Hub, token: &str, gzip: bool, items: &Value) -> (bool, String) {
    let (name, addr) = match protocol {
        Protocol::Grpc => ("grpc", hub.grpc),
        Protocol::Http => ("http", hub.http),
    };
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/python/otlp_send.py"))
        .args(["--protocol", name])
        .arg("--endpoint")
        .arg(format!("http://{addr}"))
        .args(["--token", token])
        // The SDK must not pick up settings from the caller's environment.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env("OTEL_SDK_DISABLED", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if gzip {
        cmd.arg("--gzip");
    }
    let mut child = cmd.spawn().expect("start the Python OTLP client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(items.to_string().as_bytes())
        .expect("write items");
    let out = child.wait_with_output().expect("Python OTLP client");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now_nanos() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("nanos fit u64")
}

fn placement(target: &str) -> Value {
    json!({
        "sextant.application": "shop",
        "sextant.workload": "checkout",
        "deployment.environment.name": "stage",
        "sextant.target": target,
    })
}

fn with(mut base: Value, extra: Value) -> Value {
    let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) else {
        panic!("objects expected")
    };
    b.extend(e.clone());
    base
}

/// A desired event (event name in the record field), an observed event
/// (event name in the `event.name` attribute, host on the resource), an
/// observed gauge, a plain log line and an invalid observed event.
fn items() -> Value {
    let now = now_nanos();
    json!([
        {
            "kind": "log",
            "resource": {"service.name": "ci"},
            "event_name": "sextant.deployment.desired",
            "time_unix_nano": now - 60_000_000_000u64,
            "attributes": with(placement("eu-west"), json!({
                "service.version": "1.4.2",
                "sextant.revision": REVISION,
                "vcs.ref.head.revision": "4f1c2e9b7d0a3c5e8f6b1d2a9c7e0f3b5d8a1c4e",
            })),
        },
        {
            "kind": "log",
            "resource": {"host.name": "stage-eu-1", "sextant.reconciler.name": "flux-system", "sextant.reconciler.type": "flux"},
            "event_name": "sextant.deployment.observed",
            "event_name_attribute": true,
            "time_unix_nano": now - 30_000_000_000u64,
            "body": "Applied revision",
            "attributes": with(placement("eu-west"), json!({
                "sextant.revision": REVISION,
                "deployment.status": "succeeded",
            })),
        },
        {
            "kind": "log",
            "resource": {"host.name": "stage-eu-1"},
            "body": "an ordinary log line, ignored",
            "attributes": {},
        },
        {
            "kind": "log",
            "resource": {"host.name": "stage-eu-1"},
            "event_name": "sextant.deployment.observed",
            "time_unix_nano": now - 30_000_000_000u64,
            "attributes": with(placement("eu-west"), json!({
                "sextant.revision": REVISION,
                "deployment.status": "exploded",
            })),
        },
        {
            "kind": "gauge",
            "resource": {"host.name": "stage-eu-2", "sextant.reconciler.name": "sextant-agent"},
            "value": 1,
            "attributes": with(placement("eu-west"), json!({
                "sextant.revision": REVISION,
                "deployment.status": "in_progress",
            })),
        },
    ])
}

async fn get(hub: &Hub, path: &str, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("http://{}{path}", hub.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("API request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

async fn sdk_exports_reach_the_api(backend: Backend, protocol: Protocol, gzip: bool) {
    let hub = Hub::start(backend, CONFIG).await;
    hub.wait_ready().await;

    // A reader token cannot ingest: the SDK's export fails and nothing lands.
    let (ok, _) = send(protocol, &hub, "read-acme", gzip, &items());
    assert!(!ok, "an export with a read-only token must fail");
    let (ok, _) = send(protocol, &hub, "no-such-token", gzip, &items());
    assert!(!ok, "an export with an unknown token must fail");
    let (status, state) = get(&hub, "/api/v1/state?environment=stage", "read-acme").await;
    assert_eq!((status, &state), (200, &json!([])));

    // The invalid event is rejected through partial_success; the SDK treats
    // that as delivered, and the rest of the batch is kept.
    let (ok, stderr) = send(protocol, &hub, "ingest-acme", gzip, &items());
    assert!(ok, "export failed: {stderr}");

    let (status, state) = get(&hub, "/api/v1/state?environment=stage", "read-acme").await;
    assert_eq!(status, 200, "{state}");
    let items = state.as_array().expect("array");
    assert_eq!(items.len(), 1, "{state}");
    let target = &items[0];
    assert_eq!(target["application"], "shop");
    assert_eq!(target["workload"], "checkout");
    assert_eq!(target["target"], "eu-west");
    assert_eq!(target["desired"]["version"], "1.4.2");
    assert_eq!(target["desired"]["revision"], REVISION);
    let hosts = target["hosts"].as_array().expect("hosts");
    let host = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("no {name} in {state}"))
    };
    let eu1 = host("stage-eu-1");
    assert_eq!(eu1["reconciler"], "flux-system");
    assert_eq!(eu1["source"], "flux");
    assert_eq!(eu1["status"], "succeeded");
    assert_eq!(eu1["message"], "Applied revision");
    assert_eq!(eu1["version"], "1.4.2");
    assert_eq!(eu1["in_sync"], true);
    let eu2 = host("stage-eu-2");
    assert_eq!(eu2["status"], "in_progress");
    assert_eq!(eu2["source"], "otlp", "a reconciler name without a type");
    assert_eq!(eu2["in_sync"], false);
    assert_eq!(hosts.len(), 2, "{state}");

    let (status, rollout) = get(
        &hub,
        "/api/v1/rollout?workload=checkout&environment=stage&target=eu-west",
        "read-acme",
    )
    .await;
    assert_eq!(status, 200, "{rollout}");
    assert_eq!(
        [
            &rollout["total_hosts"],
            &rollout["succeeded"],
            &rollout["failed"],
            &rollout["in_progress"],
            &rollout["pending"],
        ],
        [&json!(2), &json!(1), &json!(0), &json!(1), &json!(0)],
        "{rollout}"
    );

    // Another tenant sees none of it.
    let (status, state) = get(&hub, "/api/v1/state?environment=stage", "read-globex").await;
    assert_eq!((status, &state), (200, &json!([])));

    // The hub counted what it accepted, rejected and ignored.
    let metrics = reqwest::get(format!("http://{}/metrics", hub.api))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    for needle in [
        r#"sextant_receiver_records_total{outcome="accepted",reason="deployment_event",signal="logs"} 2"#,
        r#"sextant_receiver_records_total{outcome="accepted",reason="deployment_event",signal="metrics"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"outcome="rejected""#) && metrics.contains(r#"outcome="ignored""#),
        "{metrics}"
    );
}

macro_rules! cases {
    ($($name:ident: $backend:ident, $protocol:ident, $gzip:expr;)*) => {
        $(#[tokio::test]
        async fn $name() {
            sdk_exports_reach_the_api(Backend::$backend, Protocol::$protocol, $gzip).await
        })*
    };
}

cases! {
    sqlite_grpc: Sqlite, Grpc, false;
    sqlite_http_gzip: Sqlite, Http, true;
    postgres_grpc_gzip: Postgres, Grpc, true;
    postgres_http: Postgres, Http, false;
}

/// The SDK's exporters over mTLS (TLS settings from the standard
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_KEY`, `_CLIENT_CERTIFICATE`
/// variables) to a hub that requires client certificates and maps this
/// one (`CN=edge-1`) to tenant acme: no token is sent. grpcio's TLS and
/// the `requests` library are clients Sextant did not write; the
/// certificates are `otel-config/gateway/gen-certs.sh`'s (openssl).
/// Without a client certificate the export fails and nothing lands.
#[tokio::test]
async fn sdk_exports_over_mtls_with_a_mapped_client_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let out = Command::new(workspace_root().join("otel-config/gateway/gen-certs.sh"))
        .arg(&tls)
        .output()
        .expect("run gen-certs.sh (needs openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ca_file, client_cert, client_key) = (
        tls.join("ca.pem"),
        tls.join("edge.pem"),
        tls.join("edge-key.pem"),
    );
    let config = format!(
        r#"
[tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"

[[client_certs]]
subject = "CN=edge-1"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "read-acme"
tenant = "acme"
scopes = ["read"]
"#,
        cert = tls.join("hub.pem").display(),
        key = tls.join("hub-key.pem").display(),
        ca = ca_file.display(),
    );
    let hub = Hub::start(Backend::Sqlite, &config).await;
    let send_tls = |protocol: &str, port: u16, host: &str, identity: bool| {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/python/otlp_send.py"))
            .args(["--protocol", protocol])
            .arg("--endpoint")
            .arg(format!("https://localhost:{port}"))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env("OTEL_SDK_DISABLED", "false")
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca_file)
            // `requests` lets these override the exporter's CA file.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if identity {
            cmd.env("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client_cert)
                .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client_key);
        } else {
            cmd.env_remove("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
                .env_remove("OTEL_EXPORTER_OTLP_CLIENT_KEY");
        }
        let mut child = cmd.spawn().expect("start the Python OTLP client");
        let items = json!([{
            "kind": "log",
            "resource": {"host.name": host},
            "event_name": "sextant.deployment.observed",
            "time_unix_nano": now_nanos() - 1_000_000_000,
            "attributes": with(placement("eu-west"), json!({
                "sextant.revision": REVISION,
                "deployment.status": "succeeded",
            })),
        }]);
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(items.to_string().as_bytes())
            .expect("write items");
        let out = child.wait_with_output().expect("Python OTLP client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = send_tls("grpc", hub.grpc.port(), "grpc-host", true);
    assert!(ok, "gRPC over mTLS: {stderr}");
    let (ok, stderr) = send_tls("http", hub.http.port(), "http-host", true);
    assert!(ok, "HTTP over mTLS: {stderr}");
    let (ok, _) = send_tls("grpc", hub.grpc.port(), "refused-grpc", false);
    assert!(!ok, "gRPC without a client certificate must fail");
    let (ok, _) = send_tls("http", hub.http.port(), "refused-http", false);
    assert!(!ok, "HTTP without a client certificate must fail");

    // A reader presents a certificate of the CA too, and its token.
    let mut pem = std::fs::read(tls.join("gateway-client.pem")).expect("cert");
    pem.extend(std::fs::read(tls.join("gateway-client-key.pem")).expect("key"));
    let state: Value = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca_file).expect("CA")).expect("CA"),
        )
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client")
        .get(format!("https://localhost:{}/api/v1/hosts", hub.api.port()))
        .bearer_auth("read-acme")
        .send()
        .await
        .expect("API over mTLS")
        .json()
        .await
        .expect("JSON");
    let mut hosts: Vec<&str> = state["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["grpc-host", "http-host"], "{state}");
}
