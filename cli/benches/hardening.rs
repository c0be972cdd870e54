//! Hostile load against the real `sextant` binary (docs/performance.md,
//! "Under hostile load"; docs/security.md):
//!
//! 1. **Memory.** Peak resident memory (`VmHWM`) of a fresh hub while it
//!    takes, all at once, 200 requests of 4 MiB in two shapes (ordinary
//!    application logs the hub ignores, and deployment events it stores)
//!    and 100 gzip bombs of about 60 MiB (a valid record with a 60 MiB
//!    body, and 2-byte empty records, the worst decoded-to-wire ratio).
//!    The reference, in the same run: the same requests one at a time on
//!    another fresh hub.
//! 2. **Idle connections.** How many idle connections each service holds
//!    (hub: three listeners; orchestrator: API and agent channel; agent:
//!    health) while `/health/ready` still answers, and how fast; the
//!    reference is the same probe with no idle connection.
//!
//! ```text
//! cargo bench -p sextant-cli --bench hardening
//! cargo bench -p sextant-cli --bench hardening -- --skip-idle
//! cargo bench -p sextant-cli --bench hardening -- --skip-idle --skip-sequential --without events
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sextant");

/// A `sextant` process and the addresses its banner printed.
struct Service {
    child: Child,
    banner: String,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("SEXTANT_CONFIG")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sextant");
        let stdout = child.stdout.take().expect("stdout");
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner");
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        Self {
            child,
            banner,
            _dir: dir,
        }
    }

    fn hub() -> Self {
        Self::start(
            &[
                "up",
                "--no-orchestrator",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
            ],
            &[],
        )
    }

    /// `sextant agent run` on `listen`, once its health answers. It prints
    /// no banner; its health listener is what is measured.
    fn agent(listen: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(BIN)
            .args(["agent", "run", "--environment", "bench"])
            .args(["--otlp-endpoint", "http://127.0.0.1:9"])
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the agent");
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe(listen, "/health/live", 1).2 > 0 {
            assert!(Instant::now() < deadline, "the agent did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            banner: String::new(),
            _dir: dir,
        }
    }

    fn addr(&self, label: &str) -> SocketAddr {
        self.banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.trim().strip_prefix("http://"))
            .and_then(|rest| rest.split(['/', ' ']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {label} address in:\n{}", self.banner))
    }

    /// (`VmHWM`, `VmRSS`) in MiB.
    fn memory(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout"), kv("host.name", "web-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// About 4 MiB of ordinary application logs: the hub counts and ignores
/// them (a collector that forwards everything).
fn app_logs(seed: usize) -> Vec<u8> {
    let records = (0..19_500)
        .map(|i| LogRecord {
            time_unix_nano: now(),
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!(
                    "GET /api/cart/{seed}-{i} 200 12ms user-agent=Mozilla/5.0 (X11; Linux x86_64) trace"
                ))),
            }),
            attributes: vec![
                kv("http.method", "GET"),
                kv("http.route", "/api/cart/{id}"),
                kv("http.status_code", "200"),
                kv("k8s.pod.name", &format!("checkout-7d9f-{i:05}")),
            ],
            ..Default::default()
        })
        .collect();
    request(records).encode_to_vec()
}

/// About 4 MiB of deployment events: 432 hosts × 25 workloads, stored.
fn deployment_events(seed: usize) -> Vec<u8> {
    let records = (0..10_800)
        .map(|i| LogRecord {
            time_unix_nano: now(),
            event_name: "sextant.deployment.observed".into(),
            attributes: vec![
                kv(
                    "host.name",
                    &format!("host-{seed}-{:03}.eu-west-1.internal", i / 25),
                ),
                kv("sextant.application", "shop"),
                kv("sextant.workload", &format!("service-{:02}", i % 25)),
                kv("deployment.environment.name", "prod"),
                kv("sextant.target", &format!("prod-eu-{}", i % 4)),
                kv(
                    "sextant.revision",
                    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
                kv(
                    "deployment.status",
                    if i % 97 == 0 { "failed" } else { "succeeded" },
                ),
                kv("sextant.reconciler.name", "agent"),
            ],
            ..Default::default()
        })
        .collect();
    request(records).encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// A valid record whose body is 60 MiB of one letter, gzip-compressed.
fn bomb_body() -> Vec<u8> {
    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(Value::StringValue("a".repeat(60 * 1024 * 1024))),
        }),
        ..Default::default()
    };
    gzip(&request(vec![record]).encode_to_vec())
}

/// 30 million empty records (60 MiB of protobuf, about 5.5 GB decoded),
/// gzip-compressed; written as bytes, since building them would take
/// those gigabytes here too.
fn bomb_records() -> Vec<u8> {
    fn length_delimited(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let mut len = payload.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }
    // ScopeLogs field 2 (log_records), an empty LogRecord each: 0x12 0x00.
    let records = [0x12u8, 0x00].repeat(30_000_000);
    // ResourceLogs field 2 (scope_logs), request field 1 (resource_logs).
    let request = length_delimited(0x0a, &length_delimited(0x12, &records));
    gzip(&request)
}

/// One POST; the status (0 when no answer).
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, gzipped: bool) -> u16 {
    let mut r = client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .timeout(Duration::from_secs(300))
        .body(body);
    if gzipped {
        r = r.header("content-encoding", "gzip");
    }
    match r.send().await {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    }
}

struct Load {
    app: Vec<Vec<u8>>,
    events: Vec<Vec<u8>>,
    body_bombs: usize,
    record_bombs: usize,
    bomb_body: Vec<u8>,
    bomb_records: Vec<u8>,
}

/// Sends the load `rounds` times to a fresh hub at `concurrency`; after
/// each round, the peak and current RSS and the answers by status.
async fn memory_phase(load: &Load, concurrency: usize, rounds: usize) {
    let hub = Service::hub();
    let url = format!("http://{}/v1/logs", hub.addr("OTLP/HTTP"));
    let client = reqwest::Client::new();
    let (_, idle) = hub.memory();
    println!("concurrency {concurrency:>3}: idle RSS {idle:.0} MiB");
    for round in 1..=rounds {
        let mut jobs: Vec<(Vec<u8>, bool)> = Vec::new();
        jobs.extend(load.app.iter().map(|b| (b.clone(), false)));
        jobs.extend(load.events.iter().map(|b| (b.clone(), false)));
        jobs.extend((0..load.body_bombs).map(|_| (load.bomb_body.clone(), true)));
        jobs.extend((0..load.record_bombs).map(|_| (load.bomb_records.clone(), true)));
        let started = Instant::now();
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::new();
        for (body, gzipped) in jobs {
            let (client, url, semaphore) = (client.clone(), url.clone(), semaphore.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await.expect("semaphore");
                post(&client, &url, body, gzipped).await
            }));
        }
        let mut statuses = std::collections::BTreeMap::new();
        for t in tasks {
            *statuses.entry(t.await.expect("task")).or_insert(0usize) += 1;
        }
        let took = started.elapsed();
        let (peak, rss) = hub.memory();
        // What the allocator gives back once the burst is over, while the
        // hub goes on answering (a health probe a second).
        let api = hub.addr("API");
        for _ in 0..15 {
            let _ = probe(api, "/health/ready", 1);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (_, settled) = hub.memory();
        println!(
            "  round {round}: peak RSS {peak:>6.0} MiB, RSS after {rss:>6.0} MiB, 15 s later {settled:>6.0} MiB, {:>5.1} s, answers {:?}",
            took.as_secs_f64(),
            statuses
        );
    }
}

/// `path` latency over `n` new connections: (median, max, failures).
fn probe(addr: SocketAddr, path: &str, n: usize) -> (Duration, Duration, usize) {
    use std::io::Read;
    let mut times = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        let started = Instant::now();
        let ok = (|| -> std::io::Result<bool> {
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer.starts_with("HTTP/1.1 200"))
        })()
        .unwrap_or(false);
        if ok {
            times.push(started.elapsed());
        } else {
            failed += 1;
        }
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    (median, max, failed)
}

/// Opens `n` idle connections to `addr`.
fn idle(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect()
}

fn idle_phase(
    name: &str,
    service: &Service,
    health: (SocketAddr, &str),
    listeners: &[(SocketAddr, usize)],
) {
    let (m0, x0, f0) = probe(health.0, health.1, 20);
    let held: Vec<_> = listeners.iter().flat_map(|(a, n)| idle(*a, *n)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (m1, x1, f1) = probe(health.0, health.1, 20);
    let (_, rss) = service.memory();
    println!(
        "{name:<13} {:>6} idle | {} p50 {:>7.2} ms max {:>7.2} ms ({f0} failed) | with idle p50 {:>7.2} ms max {:>7.2} ms ({f1} failed) | ratio p50 {:>5.2} | RSS {rss:.0} MiB",
        held.len(),
        health.1,
        m0.as_secs_f64() * 1e3,
        x0.as_secs_f64() * 1e3,
        m1.as_secs_f64() * 1e3,
        x1.as_secs_f64() * 1e3,
        m1.as_secs_f64() / m0.as_secs_f64().max(1e-9),
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let skip = |what: &str| args.iter().any(|a| a == what);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    println!(
        "machine: {} cores, open files limit {:?}",
        std::thread::available_parallelism().map_or(0, usize::from),
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(s, _)| s)
            .ok()
    );

    if !skip("--skip-memory") {
        // `--without app|events|bombs` leaves a shape out, to see what
        // each one costs.
        let without = |shape: &str| {
            args.windows(2)
                .any(|w| w[0] == "--without" && w[1].split(',').any(|s| s == shape))
        };
        let load = Load {
            app: if without("app") {
                Vec::new()
            } else {
                (0..150).map(app_logs).collect()
            },
            events: if without("events") {
                Vec::new()
            } else {
                (0..50).map(deployment_events).collect()
            },
            body_bombs: if without("bombs") { 0 } else { 60 },
            record_bombs: if without("bombs") { 0 } else { 40 },
            bomb_body: bomb_body(),
            bomb_records: bomb_records(),
        };
        println!(
            "load: {} × {:.1} MiB app logs, {} × {:.1} MiB deployment events, {} × {} KiB gzip \
             (60 MiB body), {} × {} KiB gzip (30M empty records); default limits \
             (64 MiB per request, 512 MiB in flight)",
            load.app.len(),
            load.app.first().map_or(0, Vec::len) as f64 / 1048576.0,
            load.events.len(),
            load.events.first().map_or(0, Vec::len) as f64 / 1048576.0,
            load.body_bombs,
            load.bomb_body.len() / 1024,
            load.record_bombs,
            load.bomb_records.len() / 1024,
        );
        if !skip("--skip-sequential") {
            memory_phase(&load, 1, 1).await;
        }
        let rounds = args
            .windows(2)
            .find(|w| w[0] == "--rounds")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(3);
        memory_phase(&load, 300, rounds).await;
    }

    if !skip("--skip-idle") {
        let per = 4096;
        let hub = Service::hub();
        let api = hub.addr("API");
        idle_phase(
            "hub",
            &hub,
            (api, "/health/ready"),
            &[
                (hub.addr("OTLP/gRPC"), per),
                (hub.addr("OTLP/HTTP"), per),
                (api, per - 8),
            ],
        );
        drop(hub);
        let orchestrator = Service::start(
            &[
                "orchestrator",
                "--listen",
                "127.0.0.1:0",
                "--agent-listen",
                "127.0.0.1:0",
                "--no-hub",
            ],
            &[],
        );
        let api = orchestrator.addr("API");
        let agents = orchestrator.addr("agents");
        idle_phase(
            "orchestrator",
            &orchestrator,
            (api, "/health/ready"),
            &[(agents, per), (api, per - 8)],
        );
        drop(orchestrator);
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let agent = Service::agent(listen);
        idle_phase(
            "agent",
            &agent,
            (listen, "/health/live"),
            &[(listen, per - 8)],
        );
    }
}
