//! Load generator: sends batches of observed-state records over OTLP/gRPC to
//! an in-process hub at a chosen concurrency, and prints records/s and the
//! p50/p99 batch latency. On PostgreSQL it then measures a raw `COPY` of the
//! same number of rows into the same table, the physical limit, and prints
//! the ratio (same run, same machine).
//!
//! The workload models `hosts` hosts each reporting `workloads` workloads
//! every heartbeat, with `changed` of the reports carrying a new revision and
//! the rest unchanged.
//!
//! ```text
//! cargo bench -p sextant-receiver --bench ingest_load -- --backend postgres
//! cargo bench -p sextant-receiver --bench ingest_load -- --backend sqlite
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
struct Args {
    /// Store backend.
    #[arg(long, value_enum, default_value = "postgres")]
    backend: Backend,
    /// PostgreSQL admin URL; a fresh database is created and dropped.
    #[arg(long, env = "SEXTANT_TEST_DATABASE_URL")]
    admin_url: Option<String>,
    /// Concurrent OTLP/gRPC exporters.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Records per OTLP request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Simulated hosts.
    #[arg(long, default_value_t = 2000)]
    hosts: usize,
    /// Workloads per host.
    #[arg(long, default_value_t = 100)]
    workloads: usize,
    /// Heartbeat rounds measured after the first (cold) round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Fraction of reports per round that carry a new revision.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Accepted (and ignored) for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// The requests of one heartbeat round: every host reports every workload.
fn round(args: &Args, round: usize, base_nanos: u64) -> Vec<ExportLogsServiceRequest> {
    let time = base_nanos + round as u64 * 30_000_000_000;
    let per_request_hosts = (args.batch / args.workloads).max(1);
    let changed_every = if args.changed > 0.0 {
        (1.0 / args.changed) as usize
    } else {
        usize::MAX
    };
    let mut requests = Vec::new();
    for first in (0..args.hosts).step_by(per_request_hosts) {
        let mut resource_logs = Vec::new();
        for host in first..(first + per_request_hosts).min(args.hosts) {
            let records = (0..args.workloads)
                .map(|w| {
                    let n = host * args.workloads + w;
                    // A report changes in this round for `changed` of the keys.
                    let generation = if round > 0 && (n + round).is_multiple_of(changed_every) {
                        round
                    } else {
                        0
                    };
                    LogRecord {
                        time_unix_nano: time + w as u64,
                        event_name: "sextant.deployment.observed".into(),
                        attributes: vec![
                            kv("sextant.application", format!("app-{}", w % 10)),
                            kv("sextant.workload", format!("workload-{w}")),
                            kv("deployment.environment.name", "prod".into()),
                            kv("sextant.target", format!("cluster-{}", host % 20)),
                            kv("sextant.revision", format!("sha256:{generation:064x}")),
                            kv("deployment.status", "succeeded".into()),
                        ],
                        ..Default::default()
                    }
                })
                .collect();
            resource_logs.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("host.name", format!("host-{host:05}")),
                        kv("sextant.reconciler.name", "sextant-agent".into()),
                        kv("sextant.reconciler.type", "agent".into()),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        requests.push(ExportLogsServiceRequest { resource_logs });
    }
    requests
}

fn count_records(r: &ExportLogsServiceRequest) -> usize {
    r.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Sends `requests` with `concurrency` clients; returns (elapsed, latencies).
async fn send_all(
    endpoint: &str,
    requests: Vec<ExportLogsServiceRequest>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (requests, next) = (requests.clone(), next.clone());
        let mut client = LogsServiceClient::connect(endpoint.to_owned())
            .await?
            .max_encoding_message_size(256 * 1024 * 1024);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let answer = client.export(request.clone()).await?.into_inner();
                anyhow::ensure!(answer.partial_success.is_none(), "rejected: {answer:?}");
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((started.elapsed(), latencies))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Streams `rows` tab-separated lines made by `line` into `COPY … FROM STDIN`.
async fn copy_rows(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    rows: usize,
    mut line: impl FnMut(usize, &mut String),
) -> anyhow::Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(1 << 20);
    for i in 0..rows {
        line(i, &mut buf);
        if buf.len() > (1 << 20) {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Rows/s of raw `COPY` into each table.
struct CopyRates {
    current: f64,
    bare: f64,
    history: f64,
}

/// The physical limit: the steady rounds' rows, with the keys the hub
/// created, written by raw `COPY` into the same tables. Each round's rows go
/// into an emptied `observed_deployments` (one row per key, as current state
/// is), and every row goes into `observed_history` (as if each report were a
/// change), and each round's rows into a copy of the current table with no
/// keys, indexes or foreign keys (bare row writes).
async fn copy_baseline(url: &str, rounds: usize, base_nanos: u64) -> anyhow::Result<CopyRates> {
    use std::fmt::Write;
    let pool = sqlx::PgPool::connect(url).await?;
    let keys: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT tenant_id, host_id, reconciler_id, target_id, workload_id FROM observed_deployments \
         ORDER BY host_id, target_id",
    )
    .fetch_all(&pool)
    .await?;
    let mut conn = pool.acquire().await?;
    // A revision the hub never saw, so history rows cannot collide with its own.
    let revision = format!("sha256:{:064x}", u128::MAX);

    // The same table with no keys, indexes or foreign keys: bare row writes.
    sqlx::query("CREATE TABLE bare_observed (LIKE observed_deployments INCLUDING DEFAULTS)")
        .execute(&mut *conn)
        .await?;
    let mut per_table = [Duration::ZERO; 2];
    for (table, elapsed) in ["observed_deployments", "bare_observed"]
        .iter()
        .zip(&mut per_table)
    {
        for round in 1..=rounds {
            // The current table's trigger-kept companions go with it.
            let truncate = if *table == "observed_deployments" {
                "TRUNCATE observed_deployments, drift_rows, drift_counts, deployed_counts, \
                 reporter_counts"
                    .to_owned()
            } else {
                format!("TRUNCATE {table}")
            };
            sqlx::query(sqlx::AssertSqlSafe(truncate))
                .execute(&mut *conn)
                .await?;
            let time = base_nanos + round as u64 * 30_000_000_000;
            let started = Instant::now();
            copy_rows(
                &mut conn,
                &format!(
                    "COPY {table} (tenant_id, host_id, reconciler_id, target_id, revision, \
                     status, message, observed_at, changed_at, workload_id) FROM STDIN"
                ),
                keys.len(),
                |i, buf| {
                    let (tenant, host, reconciler, target, workload) = keys[i];
                    let _ = writeln!(
                        buf,
                        "{tenant}\t{host}\t{reconciler}\t{target}\t{revision}\tsucceeded\t\\N\t{time}\t{time}\t{workload}"
                    );
                },
            )
            .await?;
            *elapsed += started.elapsed();
        }
    }

    let rows = keys.len() * rounds;
    let started = Instant::now();
    copy_rows(
        &mut conn,
        "COPY observed_history (tenant_id, host_id, reconciler_id, target_id, revision, status, \
         message, observed_at, received_at) FROM STDIN",
        rows,
        |i, buf| {
            let (tenant, host, reconciler, target, _) = keys[i % keys.len()];
            let time = base_nanos + (1 + i / keys.len()) as u64 * 30_000_000_000;
            let _ = writeln!(
                buf,
                "{tenant}\t{host}\t{reconciler}\t{target}\t{revision}\tsucceeded\t\\N\t{time}\t{time}"
            );
        },
    )
    .await?;
    let history = started.elapsed();
    drop(conn);
    pool.close().await;
    Ok(CopyRates {
        current: rows as f64 / per_table[0].as_secs_f64(),
        bare: rows as f64 / per_table[1].as_secs_f64(),
        history: rows as f64 / history.as_secs_f64(),
    })
}

/// Waits until the hub's deriver has no listed target left, and says how
/// long that took.
async fn derived(store: &dyn sextant_receiver::store::HubStore) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while store.derive_pending().await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (url, admin) = match args.backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("hub.db").display()),
            None,
        ),
        Backend::Postgres => {
            let admin = args
                .admin_url
                .clone()
                .context("--admin-url or SEXTANT_TEST_DATABASE_URL is required for postgres")?;
            let name = format!("sextant_bench_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await?;
            let mut url = url::Url::parse(&admin)?;
            url.set_path(&name);
            (url.to_string(), Some((pool, name)))
        }
    };
    let any = "127.0.0.1:0".parse()?;
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(url.clone()),
        max_request_bytes: 256 * 1024 * 1024,
        // A request holds its body, its gzip output and its decoded message.
        max_inflight_request_bytes: 1024 * 1024 * 1024,
        ..HubConfig::default()
    };
    let app = Application::build(&config).await?;
    let endpoint = format!("http://{}", app.otlp_grpc_addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let base = 1_794_000_000_000_000_000u64;
    println!(
        "backend={:?} hosts={} workloads={} batch={} concurrency={} changed={}",
        args.backend, args.hosts, args.workloads, args.batch, args.concurrency, args.changed
    );
    // The deployments DORA reads are derived in the background from the
    // targets ingest lists; the time until none is left counts too.
    let store = sextant_receiver::store::open(&url).await?;
    let cold = round(&args, 0, base);
    let cold_records: usize = cold.iter().map(count_records).sum();
    let (elapsed, _) = send_all(&endpoint, cold, args.concurrency).await?;
    println!(
        "cold round (every key new): {cold_records} records in {:.2}s = {:.0} records/s",
        elapsed.as_secs_f64(),
        cold_records as f64 / elapsed.as_secs_f64()
    );
    let caught_up = derived(&*store).await?;
    println!(
        "  deployments derived {:.2}s after the last batch: {:.0} records/s counting them",
        caught_up.as_secs_f64(),
        cold_records as f64 / (elapsed + caught_up).as_secs_f64()
    );

    let requests: Vec<_> = (1..=args.rounds)
        .flat_map(|r| round(&args, r, base))
        .collect();
    let records: usize = requests.iter().map(count_records).sum();
    let (elapsed, mut latencies) = send_all(&endpoint, requests, args.concurrency).await?;
    latencies.sort();
    let rate = records as f64 / elapsed.as_secs_f64();
    println!(
        "steady rounds: {records} records in {:.2}s = {rate:.0} records/s; batch latency p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    let caught_up = derived(&*store).await?;
    println!(
        "  deployments derived {:.2}s after the last batch: {:.0} records/s counting them",
        caught_up.as_secs_f64(),
        records as f64 / (elapsed + caught_up).as_secs_f64()
    );
    store.close().await;

    shutdown.cancel();
    server.await??;
    if let Some((pool, name)) = admin {
        let copy = copy_baseline(&url, args.rounds, base).await?;
        for (what, copy_rate) in [
            ("observed_deployments (emptied each round)", copy.current),
            ("observed_history", copy.history),
            (
                "a bare copy of observed_deployments (no keys, indexes, FKs)",
                copy.bare,
            ),
        ] {
            println!(
                "raw COPY of the same {records} rows into {what}: {copy_rate:.0} rows/s; \
                 ingest/COPY = {:.2}",
                rate / copy_rate
            );
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&pool)
        .await?;
    }
    Ok(())
}
