//! Query latency benchmark: loads a large estate straight into a fresh
//! PostgreSQL database (bench fixture SQL, not ingest), starts the real hub
//! in-process on it, and measures the p50/p99 latency of the read API from
//! an HTTP client on the same machine.
//!
//! The estate: 4 environments (dev, qa, stage, prod), 10 applications,
//! `workloads` workloads, `clusters` targets per (workload, environment),
//! `hosts` hosts spread evenly over the environments and their clusters,
//! each running every workload (one current row per host × workload),
//! `versions` versions per workload, `assignments` desired assignments per
//! target (the newest wins; dev is newest, prod three versions behind), and
//! `history` rows of observed history. Current rows are mostly in sync;
//! the rest lag a version, failed, are in progress or stopped reporting.
//!
//! ```text
//! cargo bench -p sextant-receiver --bench query_load -- --hosts 10000 --workloads 100 --history 10000000
//! cargo bench -p sextant-receiver --bench query_load -- --hosts 1000 --history 500000   # quick
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use sextant_receiver::{Application, HubConfig};
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "stage", "prod"];
const APPLICATIONS: i64 = 10;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;

#[derive(Debug, Parser)]
struct Args {
    /// PostgreSQL admin URL; a fresh database is created and dropped.
    #[arg(long, env = "SEXTANT_TEST_DATABASE_URL")]
    admin_url: String,
    /// Hosts, spread evenly over the 4 environments.
    #[arg(long, default_value_t = 10_000)]
    hosts: i64,
    /// Workloads; every host runs every workload.
    #[arg(long, default_value_t = 100)]
    workloads: i64,
    /// Targets (clusters) per (workload, environment).
    #[arg(long, default_value_t = 5)]
    clusters: i64,
    /// Versions per workload.
    #[arg(long, default_value_t = 20)]
    versions: i64,
    /// Desired assignments per target (the newest wins).
    #[arg(long, default_value_t = 10)]
    assignments: i64,
    /// Rows of observed history.
    #[arg(long, default_value_t = 10_000_000)]
    history: i64,
    /// Measured requests per endpoint.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Unmeasured requests per endpoint first (connections, plans, caches).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Heartbeat rounds to write after the first measurement, before a
    /// second one (0: none). A round moves `observed_at` of every fresh
    /// current row forward, 1,000 rows per transaction as the hub writes
    /// them; that clears the visibility map index-only scans rely on.
    #[arg(long, default_value_t = 2)]
    heartbeats: u32,
    /// Keep the database at the end (prints its URL) to EXPLAIN queries.
    #[arg(long)]
    keep: bool,
    /// Measure on this database, loaded and kept by an earlier run with the
    /// same sizes (`--keep`), instead of creating and loading a new one:
    /// saves the load when comparing two builds. It is vacuumed first and
    /// kept at the end; the hub applies any newer migrations to it.
    #[arg(long)]
    reuse: Option<String>,
    /// Accepted (and ignored) for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.hosts >= ENVIRONMENTS.len() as i64 * self.clusters,
            "--hosts must be at least 4 × --clusters so every target has hosts"
        );
        anyhow::ensure!(
            self.workloads >= 1 && self.clusters >= 1,
            "sizes must be ≥ 1"
        );
        // Prod's newest version is 3 behind dev's, each target has
        // `assignments` of them, and lagging prod hosts run 2 before that.
        anyhow::ensure!(
            self.versions >= (self.assignments + 3).max(6),
            "--versions must be at least --assignments + 3, and at least 6"
        );
        anyhow::ensure!(self.assignments >= 1, "--assignments must be ≥ 1");
        anyhow::ensure!(self.requests >= 1, "--requests must be ≥ 1");
        Ok(())
    }
}

/// Runs one statement, printing what it did and how long it took.
async fn run(pool: &PgPool, what: &str, sql: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let done = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .with_context(|| format!("{what}: {sql}"))?;
    println!(
        "  {what}: {} rows in {:.1}s",
        done.rows_affected(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Drops the secondary indexes and the unique and foreign-key constraints
/// of `table` (bulk loading is several times faster without them) and
/// returns the DDL that restores them exactly as the migrations made them.
async fn drop_indexes(pool: &PgPool, table: &str) -> anyhow::Result<Vec<String>> {
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = $1::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = $1::regclass \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) \
         ORDER BY i.relname",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let mut restore = Vec::new();
    for (name, def) in &constraints {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {table} DROP CONSTRAINT {name}"
        )))
        .execute(pool)
        .await?;
        restore.push(format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"));
    }
    for (name, def) in &indexes {
        sqlx::query(AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(pool)
            .await?;
        restore.push(def.clone());
    }
    Ok(restore)
}

/// Writes the estate with `INSERT … SELECT generate_series` into the hub's
/// own tables.
async fn load(pool: &PgPool, args: &Args, now: i64) -> anyhow::Result<()> {
    let (h, w, c, v, d) = (
        args.hosts,
        args.workloads,
        args.clusters,
        args.versions,
        args.assignments,
    );
    let envs = ENVIRONMENTS.len() as i64;
    let env_names = format!(
        "(ARRAY[{}])",
        ENVIRONMENTS
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Target of workload `w` in environment `e`, cluster `c` (all 0-based).
    let target =
        |w: &str, e: &str, cluster: &str| format!("(({w} * {envs} + {e}) * {c} + {cluster} + 1)");
    // Index of the newest desired version of environment `e`: dev newest,
    // each later environment one version behind the one before.
    let latest = |e: &str| format!("({v} - 1 - {e})");

    println!("loading dimensions");
    for (what, sql) in [
        (
            "tenants",
            format!(
                "INSERT INTO tenants (id, name, created_at) OVERRIDING SYSTEM VALUE \
                 VALUES (1, 'default', {now})"
            ),
        ),
        (
            "workspaces",
            "INSERT INTO workspaces (id, tenant_id, name) OVERRIDING SYSTEM VALUE \
             VALUES (1, 1, 'default')"
                .to_owned(),
        ),
        (
            "applications",
            format!(
                "INSERT INTO applications (id, tenant_id, workspace_id, name) OVERRIDING SYSTEM VALUE \
                 SELECT a + 1, 1, 1, 'app-' || lpad(a::text, 2, '0') \
                 FROM generate_series(0, {APPLICATIONS} - 1) a"
            ),
        ),
        (
            "workloads",
            format!(
                "INSERT INTO workloads (id, tenant_id, application_id, name) OVERRIDING SYSTEM VALUE \
                 SELECT w + 1, 1, w % {APPLICATIONS} + 1, 'svc-' || lpad(w::text, 3, '0') \
                 FROM generate_series(0, {w} - 1) w"
            ),
        ),
        (
            "environments",
            format!(
                "INSERT INTO environments (id, tenant_id, name) OVERRIDING SYSTEM VALUE \
                 SELECT e + 1, 1, {env_names}[e + 1] FROM generate_series(0, {envs} - 1) e"
            ),
        ),
        (
            "deployment_targets",
            format!(
                "INSERT INTO deployment_targets (id, tenant_id, workload_id, environment_id, name) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT {}, 1, w + 1, e + 1, {env_names}[e + 1] || '-cluster-' || c \
                 FROM generate_series(0, {w} - 1) w, generate_series(0, {envs} - 1) e, \
                      generate_series(0, {c} - 1) c",
                target("w", "e", "c")
            ),
        ),
        (
            "workload_versions",
            format!(
                "INSERT INTO workload_versions (id, tenant_id, workload_id, version, revision, \
                   build_commit, build_id, repository_url, first_seen_at) OVERRIDING SYSTEM VALUE \
                 SELECT w * {v} + x + 1, 1, w + 1, '1.' || x || '.0', \
                   'sha256:' || encode(sha256(convert_to(w || '/' || x, 'UTF8')), 'hex'), \
                   substr(md5(w || '/' || x), 1, 12), 'build-' || (w * {v} + x), \
                   'https://git.example.com/shop/svc-' || lpad(w::text, 3, '0'), \
                   {now} - ({v} - x) * {DAY} \
                 FROM generate_series(0, {w} - 1) w, generate_series(0, {v} - 1) x"
            ),
        ),
        (
            // Assignment j of a target names version latest - (d - 1 - j),
            // a day apart; the newest (j = d - 1) wins.
            "desired_assignments",
            format!(
                "INSERT INTO desired_assignments (id, tenant_id, target_id, workload_version_id, \
                   assigned_at, received_at) OVERRIDING SYSTEM VALUE \
                 SELECT ({t} - 1) * {d} + j + 1, 1, {t}, w * {v} + {l} - ({d} - 1 - j) + 1, \
                   {now} - ({d} - 1 - j) * {DAY} - e * {HOUR}, \
                   {now} - ({d} - 1 - j) * {DAY} - e * {HOUR} \
                 FROM generate_series(0, {w} - 1) w, generate_series(0, {envs} - 1) e, \
                      generate_series(0, {c} - 1) c, generate_series(0, {d} - 1) j",
                t = target("w", "e", "c"),
                l = latest("e"),
            ),
        ),
        (
            "hosts",
            format!(
                "INSERT INTO hosts (id, tenant_id, name) OVERRIDING SYSTEM VALUE \
                 SELECT x + 1, 1, 'host-' || lpad(x::text, 5, '0') FROM generate_series(0, {h} - 1) x"
            ),
        ),
        (
            "reconcilers",
            "INSERT INTO reconcilers (id, tenant_id, name, type) OVERRIDING SYSTEM VALUE \
             VALUES (1, 1, 'sextant-agent', 'agent')"
                .to_owned(),
        ),
    ] {
        run(pool, what, &sql).await?;
    }
    for table in [
        "tenants",
        "workspaces",
        "applications",
        "workloads",
        "environments",
        "deployment_targets",
        "workload_versions",
        "desired_assignments",
        "hosts",
        "reconcilers",
    ] {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )))
        .execute(pool)
        .await?;
    }

    // Host x lives in environment x % 4 and cluster (x / 4) % clusters, so
    // host names interleave environments. Per (host, workload) key k, a hash
    // picks the state: 85 % in sync, 5 % one version behind (succeeded),
    // 3 % failed on the desired version, 3 % in progress on it, 4 % failed
    // two versions behind. 2 % of hosts stopped reporting 6 h ago (stale).
    let key = format!(
        "CROSS JOIN LATERAL (SELECT x % {envs} AS e, (x / {envs}) % {c} AS c, \
           x::bigint * {w} + y AS k) key \
         CROSS JOIN LATERAL (SELECT (hashint8(k)::bigint & 2147483647) % 1000 AS r, \
           (hashint8(x::bigint)::bigint & 2147483647) % 100 < 2 AS stale) rnd"
    );
    println!("loading current state ({} rows)", h * w);
    let restore = drop_indexes(pool, "observed_deployments").await?;
    let chunk_hosts = (1_000_000 / w).max(1);
    let mut first = 0;
    while first < h {
        let last = (first + chunk_hosts).min(h) - 1;
        run(
            pool,
            &format!("observed_deployments hosts {first}..={last}"),
            &format!(
                "INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id, \
                   revision, status, message, observed_at, changed_at) \
                 SELECT 1, x + 1, 1, {t}, vv.revision, m.status, m.message, \
                   CASE WHEN stale THEN {now} - 6 * {HOUR} ELSE {now} END - (r % 30) * {SECOND}, \
                   {now} - 2 * {HOUR} - r * 60 * {SECOND} \
                 FROM generate_series({first}, {last}) x CROSS JOIN generate_series(0, {w} - 1) y \
                 {key} \
                 CROSS JOIN LATERAL (SELECT \
                   CASE WHEN r < 850 THEN 0 WHEN r < 900 THEN 1 WHEN r < 960 THEN 0 ELSE 2 END \
                     AS behind, \
                   CASE WHEN r < 900 THEN 'succeeded' WHEN r < 930 THEN 'failed' \
                     WHEN r < 960 THEN 'in_progress' ELSE 'failed' END AS status, \
                   CASE WHEN r >= 900 AND r < 930 THEN 'Back-off pulling image' \
                     WHEN r >= 960 THEN 'Readiness probe failed' END AS message) m \
                 JOIN workload_versions vv ON vv.id = y * {v} + {l} - m.behind + 1 \
                 ORDER BY x, y",
                t = target("y", "e", "c"),
                l = latest("e"),
            ),
        )
        .await?;
        first = last + 1;
    }
    restore_indexes(pool, &restore).await?;

    // History: `rounds` status changes per key, oldest round first (as it
    // was appended). Round i back from the newest names version
    // latest - (i + 1) / 2, alternately in progress and succeeded, 12 h
    // apart; every 37th change failed.
    let keys = h * w;
    let rounds = (args.history + keys - 1) / keys;
    println!(
        "loading observed history ({} rows, up to {rounds} per key)",
        args.history
    );
    let restore = drop_indexes(pool, "observed_history").await?;
    let chunk = 1_000_000i64;
    let started = Instant::now();
    let mut g0 = 0;
    while g0 < args.history {
        let g1 = (g0 + chunk).min(args.history) - 1;
        run(
            pool,
            &format!("observed_history rows {g0}..={g1}"),
            &format!(
                "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, \
                   revision, status, message, observed_at, received_at) \
                 SELECT 1, x + 1, 1, {t}, vv.revision, \
                   CASE WHEN g % 37 = 0 THEN 'failed' WHEN i % 2 = 0 THEN 'succeeded' \
                     ELSE 'in_progress' END, \
                   CASE WHEN g % 37 = 0 THEN 'Back-off pulling image' END, \
                   {now} - {age}, {now} - {age} + {SECOND} \
                 FROM generate_series({g0}, {g1}) g \
                 CROSS JOIN LATERAL (SELECT g % {keys} AS k0, {rounds} - 1 - g / {keys} AS i) gi \
                 CROSS JOIN LATERAL (SELECT k0 / {w} AS x, k0 % {w} AS y) xy \
                 {key} \
                 JOIN workload_versions vv \
                   ON vv.id = y * {v} + greatest({l} - (i + 1) / 2, 0) + 1",
                t = target("y", "e", "c"),
                l = latest("e"),
                age = format!("(2 * {HOUR} + i * 12 * {HOUR} + (k % 3600) * {SECOND})"),
            ),
        )
        .await?;
        let done = g1 + 1;
        println!(
            "  history: {done}/{} rows, {:.0} rows/s",
            args.history,
            done as f64 / started.elapsed().as_secs_f64()
        );
        g0 = g1 + 1;
    }
    restore_indexes(pool, &restore).await?;
    Ok(())
}

async fn restore_indexes(pool: &PgPool, ddl: &[String]) -> anyhow::Result<()> {
    for statement in ddl {
        let started = Instant::now();
        sqlx::query(AssertSqlSafe(statement.clone()))
            .execute(pool)
            .await
            .with_context(|| statement.clone())?;
        println!("  {statement}: {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// One endpoint under test: a name and the path of its i-th request.
struct Endpoint {
    name: &'static str,
    path: Box<dyn Fn(usize) -> String + Send + Sync>,
}

/// A deterministic spread of request parameters (splitmix64).
fn pick(i: usize, salt: u64, n: i64) -> i64 {
    let mut z = (i as u64)
        .wrapping_add(salt)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % n as u64) as i64
}

fn endpoints(args: &Args) -> Vec<Endpoint> {
    let env = |i: usize| ENVIRONMENTS[i % ENVIRONMENTS.len()];
    let (hosts, workloads) = (args.hosts, args.workloads);
    vec![
        Endpoint {
            name: "environment state",
            path: Box::new(move |i| format!("/api/v1/environments/{}/state", env(i))),
        },
        Endpoint {
            name: "compare, 3 environments",
            path: Box::new(move |i| {
                // The four ways to leave one environment out, in turn.
                let skip = i % ENVIRONMENTS.len();
                let three: Vec<&str> = ENVIRONMENTS
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != skip)
                    .map(|(_, e)| *e)
                    .collect();
                format!("/api/v1/compare?environments={}", three.join(","))
            }),
        },
        Endpoint {
            name: "drift, first page",
            path: Box::new(|_| "/api/v1/drift".to_owned()),
        },
        Endpoint {
            name: "drift, first page, one environment",
            path: Box::new(move |i| format!("/api/v1/drift?environment={}", env(i))),
        },
        Endpoint {
            name: "rollout",
            path: Box::new(move |i| {
                format!(
                    "/api/v1/rollout?workload=svc-{:03}&environment={}",
                    pick(i, 1, workloads),
                    env(pick(i, 2, 4) as usize)
                )
            }),
        },
        Endpoint {
            name: "host view",
            path: Box::new(move |i| format!("/api/v1/hosts/host-{:05}", pick(i, 3, hosts))),
        },
    ]
}

/// Latencies of one endpoint.
struct Measured {
    name: &'static str,
    sorted: Vec<Duration>,
    bytes: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Sends `warmup` then `requests` requests to each endpoint with
/// `concurrency` clients and returns the measured latencies.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
) -> anyhow::Result<Vec<Measured>> {
    let mut results = Vec::new();
    for endpoint in endpoints(args) {
        let endpoint = Arc::new(endpoint);
        for (count, offset, keep) in [
            (args.warmup, args.requests, false),
            (args.requests, 0, true),
        ] {
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..args.concurrency {
                let (client, next, endpoint) = (client.clone(), next.clone(), endpoint.clone());
                let base = base.to_owned();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut bytes = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let url = format!("{base}{}", (endpoint.path)(i + offset));
                        let started = Instant::now();
                        let response = client.get(&url).send().await?;
                        let status = response.status();
                        let body = response.bytes().await?;
                        latencies.push(started.elapsed());
                        anyhow::ensure!(
                            status.is_success(),
                            "{url}: {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                        bytes += body.len();
                    }
                    anyhow::Ok((latencies, bytes))
                }));
            }
            let mut sorted = Vec::new();
            let mut bytes = 0;
            for task in tasks {
                let (l, b) = task.await??;
                sorted.extend(l);
                bytes += b;
            }
            if keep {
                sorted.sort();
                results.push(Measured {
                    name: endpoint.name,
                    bytes: bytes / sorted.len().max(1),
                    sorted,
                });
            }
        }
    }
    Ok(results)
}

fn print_table(title: &str, results: &[Measured]) {
    println!("\n{title}");
    println!("| endpoint | requests | p50 ms | p99 ms | max ms | mean response |");
    println!("|---|---|---|---|---|---|");
    for m in results {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} KiB |",
            m.name,
            m.sorted.len(),
            ms(percentile(&m.sorted, 0.50)),
            ms(percentile(&m.sorted, 0.99)),
            ms(m.sorted.last().copied().unwrap_or_default()),
            m.bytes as f64 / 1024.0
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    if let Some(url) = &args.reuse {
        let result = bench(&args, url).await;
        println!("\nreused and kept the database: {url}");
        return result;
    }
    let name = format!("sextant_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&args.admin_url).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let mut url = url::Url::parse(&args.admin_url)?;
    url.set_path(&name);
    let url = url.to_string();
    let result = bench(&args, &url).await;
    if args.keep {
        println!("\nkept the database: {url}");
    } else {
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .execute(&admin)
            .await?;
    }
    result
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<()> {
    let any = "127.0.0.1:0".parse()?;
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(url.to_owned()),
        // Fresh rows must stay fresh through a long load and run; the stale
        // hosts of the estate last reported 6 h ago.
        stale_after_seconds: 3600,
        environments: ENVIRONMENTS.iter().map(|e| (*e).to_owned()).collect(),
        ..HubConfig::default()
    };
    // Building the hub migrates the fresh database.
    let app = Application::build(&config).await?;
    let base = format!("http://{}", app.api_addr());

    println!(
        "estate: {} hosts × {} workloads = {} current rows; 4 environments × {} workloads × {} \
         clusters = {} targets; {} history rows",
        args.hosts,
        args.workloads,
        args.hosts * args.workloads,
        args.workloads,
        args.clusters,
        4 * args.workloads * args.clusters,
        args.history
    );
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    let pool = PgPool::connect(url).await?;
    let started = Instant::now();
    if args.reuse.is_none() {
        load(&pool, args, now).await?;
    } else {
        // An earlier run's heartbeat rounds turned autovacuum off.
        sqlx::query("ALTER TABLE observed_deployments RESET (autovacuum_enabled)")
            .execute(&pool)
            .await?;
    }
    let vacuum = Instant::now();
    sqlx::query(
        "VACUUM (ANALYZE) tenants, workspaces, applications, workloads, environments, \
         deployment_targets, workload_versions, desired_assignments, hosts, reconcilers, \
         observed_deployments, observed_history",
    )
    .execute(&pool)
    .await?;
    println!(
        "VACUUM (ANALYZE): {:.1}s; loaded in {:.1}s",
        vacuum.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let mut sizes = String::new();
    for (table, size) in sqlx::query_as::<_, (String, String)>(
        "SELECT relname::text, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class \
         WHERE relname IN ('observed_deployments', 'observed_history', 'desired_assignments') \
         ORDER BY relname",
    )
    .fetch_all(&pool)
    .await?
    {
        let _ = write!(sizes, " {table} {size};");
    }
    println!("sizes (with indexes):{sizes}");
    let mix: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*), COUNT(*) FILTER (WHERE observed_at < $1) \
         FROM observed_deployments GROUP BY status ORDER BY status",
    )
    .bind(now - HOUR)
    .fetch_all(&pool)
    .await?;
    for (status, rows, stale) in mix {
        println!("current rows {status}: {rows} ({stale} stale)");
    }

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    println!(
        "\nmeasuring {} requests per endpoint ({} warm-up) with {} client(s)",
        args.requests, args.warmup, args.concurrency
    );
    let results = measure(&client, &base, args).await?;
    print_table("after VACUUM (ANALYZE):", &results);

    if args.heartbeats > 0 {
        // Hold autovacuum off this table until the end, so the second
        // measurement sees every page rewritten since the last VACUUM (the
        // far end from the first one) rather than whatever part autovacuum
        // happens to have visited meanwhile.
        sqlx::query("ALTER TABLE observed_deployments SET (autovacuum_enabled = false)")
            .execute(&pool)
            .await?;
        let hosts_per_tx = (1000 / args.workloads).max(1);
        for round in 1..=args.heartbeats {
            let started = Instant::now();
            let mut touched = 0;
            let mut first = 1;
            while first <= args.hosts {
                // Fresh rows only: stale hosts do not report.
                touched += sqlx::query(
                    "UPDATE observed_deployments SET observed_at = observed_at + $1 \
                     WHERE host_id BETWEEN $2 AND $3 AND observed_at > $4",
                )
                .bind(30 * SECOND)
                .bind(first)
                .bind(first + hosts_per_tx - 1)
                .bind(now - HOUR)
                .execute(&pool)
                .await?
                .rows_affected();
                first += hosts_per_tx;
            }
            println!(
                "heartbeat round {round}: {touched} current rows in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        let results = measure(&client, &base, args).await?;
        print_table(
            &format!(
                "after {} heartbeat rounds (every page of current state rewritten since VACUUM):",
                args.heartbeats
            ),
            &results,
        );
    }

    shutdown.cancel();
    server.await??;
    pool.close().await;
    Ok(())
}
