//! Footprint benchmark of the outbox (not a timed test): append rate per
//! fsync policy, drain rate into the real hub (in-process, SQLite; and
//! PostgreSQL when SEXTANT_TEST_DATABASE_URL is set) over OTLP/gRPC and
//! OTLP/HTTP, drain rate into a no-op peer, and resident memory.
//!
//! `cargo bench -p sextant-exporters --bench outbox`

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_e2e::{Backend, TestDb};
use sextant_exporters::sender::{
    self, ExportOutcome, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport, LogsRequest,
    SenderConfig, Transport,
};
use sextant_exporters::{FsyncPolicy, Outbox, OutboxConfig, RecordKind};
use sextant_model::keys;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

const HOSTS: u64 = 2_000;
const WORKLOADS: u64 = 25;
const T0: u64 = 1_794_000_000_000_000_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// One observed event of `host` × `workload` in heartbeat round `round`
/// (30 s apart); 1 % of them carry a new revision.
fn report(host: u64, workload: u64, round: u64) -> Vec<u8> {
    let changed = (host * 31 + workload * 7 + round).is_multiple_of(100);
    let revision = format!(
        "sha256:{:064x}",
        workload * 1000 + if changed { round } else { 0 }
    );
    ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "sextant-agent"),
                kv(keys::HOST_NAME, &format!("host-{host:05}")),
                kv(keys::RECONCILER_NAME, "sextant-agent"),
                kv(keys::RECONCILER_TYPE, "agent"),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                time_unix_nano: T0 + round * 30_000_000_000,
                event_name: keys::EVENT_OBSERVED.to_owned(),
                attributes: vec![
                    kv(keys::APPLICATION, &format!("app-{}", workload % 10)),
                    kv(keys::WORKLOAD, &format!("workload-{workload:03}")),
                    kv(
                        keys::ENVIRONMENT,
                        ["dev", "qa", "stage", "prod"][(host % 4) as usize],
                    ),
                    kv(keys::TARGET, &format!("cluster-{}", host % 20)),
                    kv(keys::REVISION, &revision),
                    kv(keys::STATUS, "succeeded"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn round(r: u64) -> Vec<Vec<u8>> {
    (0..HOSTS)
        .flat_map(|h| (0..WORKLOADS).map(move |w| report(h, w, r)))
        .collect()
}

/// The sender's `max_in_flight` in the outbox rounds: its default (4).
fn in_flight() -> usize {
    SenderConfig::default().max_in_flight
}

/// Records per request (`OUTBOX_BENCH_BATCH`, default 1,000).
fn batch_records() -> usize {
    std::env::var("OUTBOX_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The hub's own capacity in this run: the same requests sent straight
/// through the transport, no outbox, `in_flight` at a time. Records/s.
async fn direct(payloads: &[Vec<u8>], transport: GrpcTransport, in_flight: usize) -> f64 {
    let requests: Vec<LogsRequest> = payloads
        .chunks(batch_records())
        .map(|chunk| {
            let mut body = Vec::new();
            for p in chunk {
                body.push(0x0a);
                prost::encoding::encode_varint(p.len() as u64, &mut body);
                body.extend_from_slice(p);
            }
            LogsRequest {
                body: body.into(),
                records: chunk.len(),
            }
        })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (queue, transport) = (queue.clone(), transport.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some(request) = next else { return };
                    let outcome = transport.export(request).await;
                    assert!(
                        matches!(outcome, ExportOutcome::Accepted { rejected: 0, .. }),
                        "{outcome:?}"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    payloads.len() as f64 / started.elapsed().as_secs_f64()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn bench_config(fsync: FsyncPolicy) -> OutboxConfig {
    OutboxConfig {
        max_bytes: 1 << 30,
        segment_bytes: 8 << 20,
        fsync,
        ..OutboxConfig::default()
    }
}

fn append_rates(payloads: &[Vec<u8>]) {
    println!("\n## append ({} B per record)", payloads[0].len());
    let cases: [(&str, FsyncPolicy, usize, usize); 5] = [
        ("Never, one record per call", FsyncPolicy::Never, 200_000, 1),
        (
            "Interval(1 s) (default), one record per call",
            FsyncPolicy::default(),
            200_000,
            1,
        ),
        ("Always, one record per call", FsyncPolicy::Always, 2_000, 1),
        ("Always, batches of 100", FsyncPolicy::Always, 100_000, 100),
        (
            "Interval(1 s), batches of 100",
            FsyncPolicy::default(),
            200_000,
            100,
        ),
    ];
    for (name, fsync, n, batch) in cases {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let outbox = Outbox::open(dir.path(), bench_config(fsync)).unwrap();
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let chunk: Vec<(RecordKind, &[u8])> = (i..(i + batch).min(n))
                .map(|j| {
                    (
                        RecordKind::Heartbeat,
                        payloads[j % payloads.len()].as_slice(),
                    )
                })
                .collect();
            outbox.append_batch(&chunk).unwrap();
            i += batch;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name}: {n} records in {secs:.2} s = {:.0} records/s",
            n as f64 / secs
        );
    }
}

struct NullPeer;

#[tonic::async_trait]
impl LogsService for NullPeer {
    async fn export(
        &self,
        _request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn null_peer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(NullPeer).max_decoding_message_size(64 << 20))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// Appends `payloads`, then times one sender draining them through
/// `transport` with `max_in_flight` batches in flight. Returns records/s.
async fn drain<T: Transport>(payloads: &[Vec<u8>], transport: T, max_in_flight: usize) -> f64 {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let outbox = Outbox::open(dir.path(), bench_config(FsyncPolicy::default())).unwrap();
    for chunk in payloads.chunks(1000) {
        let batch: Vec<(RecordKind, &[u8])> = chunk
            .iter()
            .map(|p| (RecordKind::Heartbeat, p.as_slice()))
            .collect();
        outbox.append_batch(&batch).unwrap();
    }
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(sender::run(
        outbox.clone(),
        "default",
        transport,
        SenderConfig {
            max_batch_records: batch_records(),
            max_in_flight,
            ..SenderConfig::default()
        },
        cancel.clone(),
    ));
    while outbox.stats().consumers[0].pending > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(outbox.metrics().delivered("default"), payloads.len() as u64);
    payloads.len() as f64 / secs
}

async fn drain_into_hub(backend: Backend) {
    let db = TestDb::new(backend).await;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(db.url.clone()),
        ..HubConfig::default()
    };
    let app = Application::build(&config).await.unwrap();
    let (grpc, http) = (app.otlp_grpc_addr(), app.otlp_http_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    println!(
        "\n## drain into the hub ({backend:?}, in-process), {HOSTS} hosts × {WORKLOADS} workloads per round, {} records per request",
        batch_records()
    );
    let grpc_t = || GrpcTransport::new(GrpcConfig::new(format!("http://{grpc}"))).unwrap();
    let cold = drain(&round(0), grpc_t(), in_flight()).await;
    println!("round 0 (every key new), OTLP/gRPC: {cold:.0} records/s");
    let r = drain(&round(1), grpc_t(), in_flight()).await;
    println!("round 1 (heartbeats, 1 % changed), OTLP/gRPC: {r:.0} records/s");
    let r = drain(
        &round(2),
        HttpTransport::new(HttpConfig::new(format!("http://{http}"))).unwrap(),
        in_flight(),
    )
    .await;
    println!("round 2 (heartbeats, 1 % changed), OTLP/HTTP: {r:.0} records/s");
    let r = drain(
        &round(3),
        HttpTransport::new(HttpConfig {
            gzip: true,
            ..HttpConfig::new(format!("http://{http}"))
        })
        .unwrap(),
        in_flight(),
    )
    .await;
    println!("round 3 (heartbeats, 1 % changed), OTLP/HTTP gzip: {r:.0} records/s");
    let r = direct(&round(4), grpc_t(), 1).await;
    println!(
        "round 4, no outbox, same requests straight to OTLP/gRPC, 1 in flight: {r:.0} records/s"
    );
    let r = direct(&round(5), grpc_t(), 4).await;
    println!(
        "round 5, no outbox, same requests straight to OTLP/gRPC, 4 in flight (hub capacity): {r:.0} records/s"
    );
    let r = drain(&round(6), grpc_t(), in_flight()).await;
    println!(
        "round 6 (heartbeats, 1 % changed), OTLP/gRPC through the outbox again: {r:.0} records/s"
    );
    let r = drain(&round(7), grpc_t(), 1).await;
    println!(
        "round 7 (heartbeats, 1 % changed), OTLP/gRPC through the outbox, max_in_flight 1: {r:.0} records/s"
    );
    shutdown.cancel();
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    let payloads = round(0);
    append_rates(&payloads);

    println!("\n## drain into a no-op OTLP/gRPC peer (the outbox and sender alone)");
    let peer = null_peer().await;
    let big: Vec<Vec<u8>> = (0..4).flat_map(|r| round(r + 10)).collect();
    let r = drain(
        &big,
        GrpcTransport::new(GrpcConfig::new(format!("http://{peer}"))).unwrap(),
        in_flight(),
    )
    .await;
    println!("{} records: {r:.0} records/s", big.len());

    println!("\n## memory");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let before = rss_kib();
    let outbox = Outbox::open(dir.path(), bench_config(FsyncPolicy::default())).unwrap();
    for p in &big {
        outbox.append(RecordKind::Heartbeat, p).unwrap();
    }
    let after_append = rss_kib();
    let stats = outbox.stats();
    println!(
        "RSS before open {before} KiB; after appending {} records ({} MiB on disk) {after_append} KiB (+{} KiB)",
        stats.next_seq,
        stats.bytes >> 20,
        after_append.saturating_sub(before)
    );
    drop(outbox);

    drain_into_hub(Backend::Sqlite).await;
    if std::env::var_os("SEXTANT_TEST_DATABASE_URL").is_some() {
        drain_into_hub(Backend::Postgres).await;
    } else {
        println!("\n(PostgreSQL skipped: SEXTANT_TEST_DATABASE_URL is not set)");
    }
}
