//! DORA endpoint benchmark (issue 20 §3): `GET /api/v1/insights/dora` over
//! an estate of `--rows` observed history rows in PostgreSQL, for one
//! application over 90 days and for the whole estate.
//!
//! For each shape it makes a database, applies the hub's migrations, loads
//! the history straight through SQL (a bench fixture, not ingest), then
//! lets the hub's first start rebuild the derived `deployments` table from
//! it (the upgrade path, `deployments_backfill`), timed. It starts the real
//! hub in-process and measures p50/p99 of the endpoint from an HTTP client
//! on the same machine.
//!
//! The estate: 10 applications of `--workloads` workloads, 4 environments,
//! a target per (workload, environment), one deployment per target every
//! `--every-hours` over the history's span, each reported by every host of
//! the target: `in_progress`, then `succeeded` (or `failed`), and each
//! revision's first sighting and (for two in three) commit time in
//! `revision_times`, as ingest keeps them. Shapes:
//!
//! - `healthy`: every deployment succeeds;
//! - `failing`: one in five fails on its first host, and the next one is a
//!   rollback to the revision before (a redeploy of an older revision);
//!
//! Geometries: `few` (2 hosts a target) and `wide` (40 hosts a target). The
//! number of targets follows from `--rows`.
//!
//! ```text
//! cargo bench -p sextant-receiver --bench dora_load -- --rows 10000000
//! cargo bench -p sextant-receiver --bench dora_load -- --rows 200000 --requests 20   # quick
//! # knobs: --shapes healthy:few,failing:wide --every-hours 24 --days 180 --requests 100
//! #        --database-url postgres://sextant:sextant@127.0.0.1:5432/postgres --keep
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use sextant_receiver::{Application, HubConfig};
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;
const APPLICATIONS: i64 = 10;

#[derive(Parser, Debug)]
struct Args {
    /// Observed history rows per shape.
    #[arg(long, default_value_t = 10_000_000)]
    rows: i64,
    /// Shape:geometry pairs to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "healthy:few,failing:wide"
    )]
    shapes: Vec<String>,
    /// Workloads per application.
    #[arg(long, default_value_t = 10)]
    workloads: i64,
    /// Hours between two deployments of a target.
    #[arg(long, default_value_t = 24)]
    every_hours: i64,
    /// Days the history spans, ending now.
    #[arg(long, default_value_t = 180)]
    days: i64,
    /// Measured requests per query (after 5 warm-up requests).
    #[arg(long, default_value_t = 100)]
    requests: usize,
    #[arg(
        long,
        default_value = "postgres://sextant:sextant@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Keep the databases afterwards.
    #[arg(long)]
    keep: bool,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "| shape | hosts/target | targets | history rows | deployments (90 d) | load | backfill | first report (loads the index) | index (RSS growth) | one application, 90 d p50 / p99 | whole estate, 90 d p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for spec in &args.shapes {
        let (shape, geometry) = spec.split_once(':').context("shape:geometry")?;
        let failing = match shape {
            "healthy" => false,
            "failing" => true,
            other => anyhow::bail!("unknown shape {other}"),
        };
        let hosts = match geometry {
            "few" => 2,
            "wide" => 40,
            other => anyhow::bail!("unknown geometry {other}"),
        };
        bench_one(&args, shape, geometry, failing, hosts).await?;
    }
    Ok(())
}

async fn bench_one(
    args: &Args,
    shape: &str,
    geometry: &str,
    failing: bool,
    hosts: i64,
) -> anyhow::Result<()> {
    let admin = PgPool::connect(&args.database_url).await?;
    let name = format!("sextant_dora_bench_{shape}_{geometry}");
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let url = match args.database_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("database URL without a database"),
    };
    // The schema, through the hub's own migrations.
    sextant_receiver::store::open(&url).await?.close().await;
    let pool = PgPool::connect(&url).await?;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    let deploys_per_target = args.days * 24 / args.every_hours;
    let rows_per_target = deploys_per_target * hosts * 2;
    let targets = (args.rows / rows_per_target).max(1);
    let workloads = (targets + 3) / 4;
    let started = Instant::now();
    load(&pool, now, args, failing, hosts, targets, workloads).await?;
    let load_time = started.elapsed();
    // The upgrade path: every target rebuilt at the hub's start.
    sqlx::query("INSERT INTO deployments_backfill (target_id) SELECT id FROM deployment_targets")
        .execute(&pool)
        .await?;
    let started = Instant::now();
    let store = sextant_receiver::store::open(&url).await?;
    while store.derive_step().await? > 0 {}
    store.close().await;
    let backfill = started.elapsed();
    sqlx::query("VACUUM (ANALYZE)").execute(&pool).await?;
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM observed_history")
        .fetch_one(&pool)
        .await?;
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM deployments WHERE baseline = 0 AND started_at >= $1",
    )
    .bind(now - 90 * DAY)
    .fetch_one(&pool)
    .await?;
    pool.close().await;

    let config = HubConfig {
        otlp_grpc_addr: ([127, 0, 0, 1], 0).into(),
        otlp_http_addr: ([127, 0, 0, 1], 0).into(),
        api_addr: ([127, 0, 0, 1], 0).into(),
        database_url: Some(url.clone()),
        ..HubConfig::default()
    };
    let app = Application::build(&config).await?;
    let api = app.api_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    let base = format!("http://{api}/api/v1/insights/dora?since=90d");
    // The first report loads the hub's in-memory index of the tenant's
    // deployments: timed apart, with the process's growth in memory.
    let rss_before = rss_kib();
    let started = Instant::now();
    let first = client.get(&base).send().await?;
    anyhow::ensure!(first.status().is_success(), "{base}: {}", first.status());
    first.bytes().await?;
    let cold = started.elapsed();
    let index_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    let one = measure(&client, &format!("{base}&application=app-3"), args.requests).await?;
    let all = measure(&client, &base, args.requests).await?;
    // The answer counted what the fixture holds (the window has moved on
    // since `recent` was counted, by at most a day's deployments), lead
    // times included.
    let report: serde_json::Value = client.get(&base).send().await?.json().await?;
    let totals = &report["totals"];
    let counted = totals["deployments"].as_i64().unwrap_or(0);
    anyhow::ensure!(
        counted <= recent
            && counted >= recent - targets
            && totals["lead_time_deployments"].as_i64() > Some(0),
        "the whole estate's totals do not match the fixture ({recent} deployments): {totals}"
    );
    shutdown.cancel();
    let _ = task.await;
    println!(
        "| {shape} | {hosts} | {targets} | {history} | {recent} | {:.0} s | {:.0} s | {} | {index_mib:.0} MiB | {} / {} | {} / {} |",
        load_time.as_secs_f64(),
        backfill.as_secs_f64(),
        ms(cold),
        ms(one.0),
        ms(one.1),
        ms(all.0),
        ms(all.1),
    );
    if !args.keep {
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await?;
    }
    Ok(())
}

/// The process's resident memory, from `/proc/self/status` (0 where
/// there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// p50 and p99 of `requests` GETs of `url`, after 5 unmeasured ones.
async fn measure(
    client: &reqwest::Client,
    url: &str,
    requests: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + 5 {
        let started = Instant::now();
        let res = client.get(url).send().await?;
        anyhow::ensure!(res.status().is_success(), "{url}: {}", res.status());
        let body = res.bytes().await?;
        anyhow::ensure!(!body.is_empty(), "{url}: empty answer");
        if i >= 5 {
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    Ok((at(0.50), at(0.99)))
}

/// Loads the estate: dimensions, then history with generate_series, in
/// one statement per table.
async fn load(
    pool: &PgPool,
    now: i64,
    args: &Args,
    failing: bool,
    hosts: i64,
    targets: i64,
    workloads: i64,
) -> anyhow::Result<()> {
    let start = now - args.days * DAY;
    let every = args.every_hours * HOUR;
    let deploys = args.days * 24 / args.every_hours;
    let statements = [
        "INSERT INTO tenants (name, created_at) VALUES ('default', 0)".to_owned(),
        "INSERT INTO workspaces (tenant_id, name) VALUES (1, 'default')".to_owned(),
        format!(
            "INSERT INTO applications (tenant_id, workspace_id, name) \
             SELECT 1, 1, 'app-' || a FROM generate_series(0, {}) a",
            APPLICATIONS - 1
        ),
        format!(
            "INSERT INTO workloads (tenant_id, application_id, name) \
             SELECT 1, 1 + w % {APPLICATIONS}, 'svc-' || w FROM generate_series(0, {}) w",
            workloads - 1
        ),
        "INSERT INTO environments (tenant_id, name) \
         SELECT 1, e FROM unnest(ARRAY['dev','qa','stage','prod']) e"
            .to_owned(),
        format!(
            "INSERT INTO deployment_targets (tenant_id, workload_id, environment_id, name) \
             SELECT 1, 1 + t / 4, 1 + t % 4, 'eu' FROM generate_series(0, {}) t",
            targets - 1
        ),
        format!(
            "INSERT INTO hosts (tenant_id, name) SELECT 1, 'host-' || h FROM generate_series(0, {}) h",
            targets * hosts - 1
        ),
        "INSERT INTO reconcilers (tenant_id, name, type) VALUES (1, 'agent-1', 'agent')".to_owned(),
        // Deployment k of target t on host i (hosts t*H+1 ..): in_progress,
        // then succeeded a minute later, or, for one in five in `failing`
        // on the target's first host, failed; the deployment after a
        // failed one goes back to the revision before it.
        format!(
            "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, revision, \
               status, message, observed_at, received_at) \
             SELECT 1, t * {hosts} + i + 1, 1, t + 1, \
               'r' || (CASE WHEN {failing} AND k % 5 = 1 AND k > 1 THEN k - 2 ELSE k END), \
               CASE WHEN s.n = 1 AND {failing} AND k % 5 = 0 AND k > 0 AND i = 0 \
                 THEN 'failed' ELSE s.st END, NULL, \
               {start} + k * {every} + t * 1000 + i * {SECOND} + s.n * 60 * {SECOND}, 0 \
             FROM generate_series(0::bigint, {}) t, generate_series(0::bigint, {}) k, \
               generate_series(0::bigint, {}) i, \
               (VALUES (0::bigint, 'in_progress'), (1::bigint, 'succeeded')) AS s(n, st)",
            targets - 1,
            deploys - 1,
            hosts - 1
        ),
        "INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id, revision, \
           status, message, observed_at, changed_at, workload_id) \
         SELECT DISTINCT ON (h.host_id) 1, h.host_id, 1, h.target_id, h.revision, h.status, NULL, \
           h.observed_at, h.observed_at, t.workload_id \
         FROM observed_history h JOIN deployment_targets t ON t.id = h.target_id \
         ORDER BY h.host_id, h.observed_at DESC"
            .to_owned(),
        // What ingest keeps beside history: each revision's first
        // sighting in its workload, and for two revisions in three a
        // commit made two hours before it (the rest measure a promotion
        // lead time), so that every lead time is looked up as users' are.
        format!(
            "INSERT INTO revision_times (tenant_id, workload_id, revision, first_seen_at, committed_at) \
             SELECT 1, t.workload_id, h.revision, MIN(h.observed_at), \
               CASE WHEN substr(h.revision, 2)::bigint % 3 <> 0 \
                 THEN MIN(h.observed_at) - 2 * {HOUR} END \
             FROM observed_history h JOIN deployment_targets t ON t.id = h.target_id \
             GROUP BY t.workload_id, h.revision"
        ),
    ];
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .with_context(|| sql)?;
    }
    Ok(())
}
