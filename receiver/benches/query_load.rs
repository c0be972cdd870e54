//! Query latency benchmark (issue 18, "reads stay fast on every estate"):
//! the read API's cost should follow what it returns, not the estate's size
//! or shape. For every estate shape × geometry it loads a fresh database
//! straight through SQL (a bench fixture, not ingest), starts the real hub
//! in-process on it, and measures the p50/p99 latency of the read API and
//! of the two UI pages that count drift from an HTTP client on the same
//! machine. It prints one table per (size, backend): a row per endpoint, a
//! column per shape × geometry, and the load time of each.
//!
//! The estate: 4 environments (dev, qa, stage, prod), 10 applications,
//! `workloads` workloads, `versions` versions per workload, one target per
//! (workload, environment, cluster) with `assignments` desired assignments
//! (the newest wins; dev is newest, prod three versions behind), and
//! `rows` current rows, one per (host, workload it runs), one reconciler.
//! A geometry `KxT` gives each host K workloads (`rows / K` hosts, spread
//! evenly over the environments and over the workloads' slots and clusters)
//! and each target about T hosts:
//!
//! - `100x25`: wide hosts (every host runs every workload), narrow targets;
//! - `1x500`: narrow hosts, wide targets.
//!
//! Shapes (the state of the current rows; the hub runs with
//! `stale_after_seconds = 3600`):
//!
//! - `healthy`: every row on its target's desired revision, succeeded, fresh;
//! - `drifting`: every row drifts: 80 % on another revision than desired
//!   (most succeeded, some in progress), 20 % failed;
//! - `stale`: every row in sync but last observed 6 h ago (the uplink came
//!   back after an outage);
//! - `no-desired`: the rows of `mixed` without any desired assignment (an
//!   estate that only reconcilers report);
//! - `mixed`: the reference: 85 % in sync, 5 % one version behind, 3 % failed
//!   and 3 % in progress on the desired version, 4 % failed two versions
//!   behind; 2 % of hosts stopped reporting 6 h ago.
//!
//! Desired assignments are written before current rows and every trigger
//! of the schema stays on, so whatever the migrations maintain from these
//! tables is maintained by the load; only the secondary indexes and
//! constraints of the two observed tables are dropped during their load.
//! After it: `VACUUM (ANALYZE)` on PostgreSQL (a WAL checkpoint on SQLite,
//! whose hub never analyzes; `--sqlite-analyze` to compare), then one
//! `Application::sweep_stale`, timed (and the database settled again if
//! it marked rows).
//!
//! Each endpoint gets `--warmup` then `--requests` requests, within
//! `--max-seconds` (20 s): at 1,000,000 rows the UI's matrix takes seconds
//! a request, and the whole matrix would take hours. A failed request ends
//! its endpoint's measurement, marks the cell and fails the run at the end.
//!
//! ```text
//! cargo bench -p sextant-receiver --bench query_load -- --rows 200000 --requests 100 --warmup 10 --out q.md
//! cargo bench -p sextant-receiver --bench query_load -- --rows 200000 --backend sqlite --requests 100 --warmup 10
//! cargo bench -p sextant-receiver --bench query_load -- --rows 1000000 --requests 100 --warmup 10
//! cargo bench -p sextant-receiver --bench query_load -- --rows 20000 --requests 20 --warmup 2   # quick
//! # knobs: --geometry 100x25,1x500 --shapes healthy,drifting,stale,no-desired,mixed --workloads 100
//! #        --versions 20 --assignments 10 --history <rows> --concurrency 1 --max-seconds 20
//! #        --heartbeats 0 --keep --reuse <URL of a kept database> --sqlite-analyze
//! # one estate like the earlier figures of docs/performance.md, with the heartbeat measurement:
//! cargo bench -p sextant-receiver --bench query_load -- --rows 1000000 --geometry 100x500 \
//!     --shapes mixed --history 10000000 --heartbeats 2
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use sextant_receiver::{Application, HubConfig};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "stage", "prod"];
const APPLICATIONS: i64 = 10;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// The hub's `stale_after_seconds`: fresh rows stay fresh through a long
/// load and run; stale rows last reported 6 h ago.
const STALE_AFTER_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Sqlite => "SQLite",
        }
    }
}

/// The state of the current rows (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    Healthy,
    Drifting,
    Stale,
    NoDesired,
    Mixed,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Drifting => "drifting",
            Self::Stale => "stale",
            Self::NoDesired => "no-desired",
            Self::Mixed => "mixed",
        }
    }

    /// SQL of (versions behind desired, status, message) of a row from its
    /// hash `r` in 0..1000.
    fn state_sql(self) -> [&'static str; 3] {
        match self {
            Self::Healthy | Self::Stale => ["0", "'succeeded'", "CAST(NULL AS TEXT)"],
            Self::Drifting => [
                "CASE WHEN r < 800 THEN 1 WHEN r < 900 THEN 0 ELSE 2 END",
                "CASE WHEN r < 700 THEN 'succeeded' WHEN r < 800 THEN 'in_progress' \
                   ELSE 'failed' END",
                "CASE WHEN r >= 800 AND r < 900 THEN 'Back-off pulling image' \
                   WHEN r >= 900 THEN 'Readiness probe failed' END",
            ],
            Self::NoDesired | Self::Mixed => [
                "CASE WHEN r < 850 THEN 0 WHEN r < 900 THEN 1 WHEN r < 960 THEN 0 ELSE 2 END",
                "CASE WHEN r < 900 THEN 'succeeded' WHEN r < 930 THEN 'failed' \
                   WHEN r < 960 THEN 'in_progress' ELSE 'failed' END",
                "CASE WHEN r >= 900 AND r < 930 THEN 'Back-off pulling image' \
                   WHEN r >= 960 THEN 'Readiness probe failed' END",
            ],
        }
    }

    /// SQL condition on host `x`: the host stopped reporting 6 h ago.
    fn stale_sql(self) -> String {
        match self {
            Self::Healthy | Self::Drifting => "1 = 0".to_owned(),
            Self::Stale => "1 = 1".to_owned(),
            Self::NoDesired | Self::Mixed => format!("{} < 2", hash_sql("x", STALE_HASH, 100)),
        }
    }
}

/// Workloads per host × hosts per target, written `KxT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    per_host: i64,
    per_target: i64,
}

impl FromStr for Geometry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |n: &str| n.trim().parse::<i64>().ok().filter(|n| *n >= 1);
        s.split_once(['x', '×'])
            .and_then(|(k, t)| {
                Some(Self {
                    per_host: parse(k)?,
                    per_target: parse(t)?,
                })
            })
            .ok_or_else(|| {
                format!("{s:?}: want workloads-per-host x hosts-per-target, e.g. 100x25")
            })
    }
}

impl std::fmt::Display for Geometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.per_host, self.per_target)
    }
}

#[derive(Debug, Parser)]
struct Args {
    /// Store backends, comma-separated: `postgres` (a fresh database per
    /// estate, created and dropped) or `sqlite` (a file in a temp dir).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["postgres"])]
    backend: Vec<Backend>,
    /// PostgreSQL admin URL, to create and drop the databases.
    #[arg(long, env = "SEXTANT_TEST_DATABASE_URL")]
    admin_url: Option<String>,
    /// Current rows (hosts × workloads per host), comma-separated for
    /// several sizes.
    #[arg(long, value_delimiter = ',', default_values = ["200000"])]
    rows: Vec<i64>,
    /// Geometries, comma-separated: workloads per host `x` hosts per target.
    #[arg(long, value_delimiter = ',', default_values = ["100x25", "1x500"])]
    geometry: Vec<Geometry>,
    /// Shapes, comma-separated, measured on every geometry.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values = ["healthy", "drifting", "stale", "no-desired", "mixed"]
    )]
    shapes: Vec<Shape>,
    /// Workloads, in slots of `workloads per host`; 10 per application.
    #[arg(long, default_value_t = 100)]
    workloads: i64,
    /// Versions per workload.
    #[arg(long, default_value_t = 20)]
    versions: i64,
    /// Desired assignments per target (the newest wins).
    #[arg(long, default_value_t = 10)]
    assignments: i64,
    /// Rows of observed history (default: as many as current rows).
    #[arg(long)]
    history: Option<i64>,
    /// Measured requests per endpoint.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Unmeasured requests per endpoint first (connections, plans, caches).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds an endpoint may take (0: no limit): its warm-up stops after a
    /// quarter of them, its measurement when they are up, each after one
    /// request at least; a cell with fewer requests than asked says how
    /// many (`n=`). Keeps a matrix with second-long endpoints feasible.
    #[arg(long, default_value_t = 20)]
    max_seconds: u64,
    /// ANALYZE SQLite databases after the load. The hub never does, so
    /// by default the bench measures the plans a hub gets without
    /// statistics.
    #[arg(long)]
    sqlite_analyze: bool,
    /// Heartbeat rounds to write after the first measurement, before a
    /// second one (0: none). A round moves `observed_at` of every fresh
    /// current row forward, 1,000 rows per transaction as the hub writes
    /// them; on PostgreSQL that clears the visibility map index-only scans
    /// rely on (autovacuum is held off the table meanwhile).
    #[arg(long, default_value_t = 0)]
    heartbeats: u32,
    /// Also write the tables (markdown) to this file, rewritten after each
    /// (size, backend).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep every database (prints its URL) to EXPLAIN queries.
    #[arg(long)]
    keep: bool,
    /// Measure on this database (a `postgres://` or `sqlite://` URL), loaded
    /// and kept by an earlier run of one size, geometry and shape given
    /// again here (`--keep`), instead of loading a new one: saves the load
    /// when comparing two builds. The hub applies newer migrations to it.
    /// Within the hour of the load: fresh rows go stale after that.
    #[arg(long)]
    reuse: Option<String>,
    /// Accepted (and ignored) for `cargo bench` compatibility.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    /// Checks the arguments and every estate they name, before any load.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.versions >= (self.assignments + 3).max(6),
            "--versions must be at least --assignments + 3, and at least 6"
        );
        anyhow::ensure!(self.assignments >= 1, "--assignments must be ≥ 1");
        anyhow::ensure!(
            (1..=1000).contains(&self.workloads),
            "--workloads must be in 1..=1000"
        );
        anyhow::ensure!(
            self.requests >= 1 && self.concurrency >= 1,
            "--requests and --concurrency must be ≥ 1"
        );
        anyhow::ensure!(
            !self.rows.is_empty() && !self.geometry.is_empty() && !self.shapes.is_empty(),
            "--rows, --geometry and --shapes need at least one value"
        );
        if let Some(url) = &self.reuse {
            anyhow::ensure!(
                self.rows.len() == 1 && self.geometry.len() == 1 && self.shapes.len() == 1,
                "--reuse measures one database: give the one --rows, --geometry and --shapes \
                 it was loaded with"
            );
            Self::reused_backend(url)?;
        } else if self.backend.contains(&Backend::Postgres) {
            anyhow::ensure!(
                self.admin_url.is_some(),
                "--admin-url or SEXTANT_TEST_DATABASE_URL is required for postgres"
            );
        }
        for &rows in &self.rows {
            for &geometry in &self.geometry {
                Estate::new(self, rows, geometry, Shape::Mixed)?;
            }
        }
        Ok(())
    }

    fn reused_backend(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!("--reuse takes a postgres:// or sqlite:// URL, not {url:?}")
        }
    }

    fn backends(&self) -> anyhow::Result<Vec<Backend>> {
        match &self.reuse {
            Some(url) => Ok(vec![Self::reused_backend(url)?]),
            None => Ok(self.backend.clone()),
        }
    }
}

// ------------------------------------------------------------------ estate

/// Multipliers of the portable hashes (a Weyl sequence mod 2^32, scaled):
/// 2^32 / φ and 2^32 × (√2 − 1), so that the state of a row and the
/// staleness of its host are spread evenly and independently.
const ROW_HASH: i64 = 2_654_435_761;
const STALE_HASH: i64 = 1_779_033_703;

/// SQL for a hash of the non-negative integer `expr` in `0..modulo`, the same
/// on both backends (SQLite has no `hashint8`).
fn hash_sql(expr: &str, multiplier: i64, modulo: i64) -> String {
    format!("(((CAST({expr} AS BIGINT) * {multiplier}) % 4294967296) * {modulo} / 4294967296)")
}

/// SQL for the name of environment index `e`.
fn env_name_sql(e: &str) -> String {
    let mut sql = format!("(CASE {e}");
    for (i, name) in ENVIRONMENTS.iter().enumerate() {
        let _ = write!(sql, " WHEN {i} THEN '{name}'");
    }
    sql.push_str(" END)");
    sql
}

/// One estate to load: a size, a geometry and a shape.
///
/// Host `x` lives in environment `x % 4`; among the hosts of its
/// environment (`x / 4`) it takes slot `x / 4 % slots` (the workloads
/// `slot × per_host ..` of it) and cluster `x / 4 / slots % clusters`.
#[derive(Debug, Clone, Copy)]
struct Estate {
    shape: Shape,
    geometry: Geometry,
    rows: i64,
    hosts: i64,
    workloads: i64,
    slots: i64,
    clusters: i64,
    versions: i64,
    assignments: i64,
    history: i64,
    /// Digits of the zero-padded host numbers in host names.
    host_digits: usize,
}

impl Estate {
    fn new(args: &Args, rows: i64, geometry: Geometry, shape: Shape) -> anyhow::Result<Self> {
        let Geometry {
            per_host,
            per_target,
        } = geometry;
        anyhow::ensure!(
            rows >= 1 && rows % per_host == 0,
            "--rows {rows} must be a positive multiple of the {per_host} workloads per host"
        );
        anyhow::ensure!(
            args.workloads % per_host == 0,
            "--workloads {} must be a multiple of the {per_host} workloads per host",
            args.workloads
        );
        let hosts = rows / per_host;
        let slots = args.workloads / per_host;
        let envs = ENVIRONMENTS.len() as i64;
        anyhow::ensure!(
            hosts >= envs * slots,
            "{rows} rows of geometry {geometry} leave a workload without hosts: \
             at least {} rows",
            envs * slots * per_host
        );
        let clusters = (hosts / (envs * slots * per_target)).max(1);
        let history = args.history.unwrap_or(rows);
        anyhow::ensure!(history >= 0, "--history must be ≥ 0");
        Ok(Self {
            shape,
            geometry,
            rows,
            hosts,
            workloads: args.workloads,
            slots,
            clusters,
            versions: args.versions,
            assignments: args.assignments,
            history,
            host_digits: (hosts - 1).max(1).to_string().len().max(5),
        })
    }

    fn targets(&self) -> i64 {
        ENVIRONMENTS.len() as i64 * self.workloads * self.clusters
    }

    fn host_name(&self, x: i64) -> String {
        format!("host-{x:0width$}", width = self.host_digits)
    }

    /// Target names are unique in the tenant, so `?target=` names one.
    fn target_name(&self, w: i64, e: usize, c: i64) -> String {
        format!("svc-{w:03}-{}-{c}", ENVIRONMENTS[e])
    }

    fn describe(&self) -> String {
        format!(
            "{} hosts × {} workloads = {} current rows; 4 environments × {} workloads × {} \
             clusters = {} targets of ~{} hosts; {} history rows",
            self.hosts,
            self.geometry.per_host,
            self.rows,
            self.workloads,
            self.clusters,
            self.targets(),
            self.rows / self.targets(),
            self.history
        )
    }

    /// SQL: target id of workload `w` in environment `e`, cluster `c`.
    fn target_sql(&self, w: &str, e: &str, c: &str) -> String {
        format!(
            "((({w}) * {} + ({e})) * {} + ({c}) + 1)",
            ENVIRONMENTS.len(),
            self.clusters
        )
    }

    /// SQL: id of version index `x` of workload `w`.
    fn version_sql(&self, w: &str, x: &str) -> String {
        format!("(({w}) * {} + ({x}) + 1)", self.versions)
    }

    /// SQL: index of the newest desired version of environment `e` (dev
    /// newest, each later environment one version behind the one before).
    fn latest_sql(&self, e: &str) -> String {
        format!("({} - 1 - ({e}))", self.versions)
    }

    /// SQL: the rows of `source` (which has columns `x`, host, and `y`, the
    /// host's workload) with where they run and what state they are in: `e`,
    /// `c`, `w` (workload index), `k` (row key), `r` (0..1000, picks the
    /// state), `base` (when the host last reported), `behind`, `status`,
    /// `message`.
    fn placed_sql(&self, source: &str, now: i64) -> String {
        let (k, s, c) = (self.geometry.per_host, self.slots, self.clusters);
        let [behind, status, message] = self.shape.state_sql();
        format!(
            "SELECT p2.*, {behind} AS behind, {status} AS status, {message} AS message FROM ( \
               SELECT p1.*, p1.sl * {k} + p1.y AS w, {r} AS r, \
                 CASE WHEN {stale} THEN {stale_at} ELSE {now} END AS base FROM ( \
                 SELECT s0.*, s0.x % 4 AS e, (s0.x / 4) % {s} AS sl, (s0.x / 4 / {s}) % {c} AS c, \
                   CAST(s0.x AS BIGINT) * {k} + s0.y AS k \
                 FROM ({source}) s0) p1) p2",
            r = hash_sql("p1.k", ROW_HASH, 1000),
            stale = self.shape.stale_sql(),
            stale_at = now - 6 * HOUR,
        )
    }
}

// ---------------------------------------------------------------- database

/// The loader's connection to the hub's database.
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    async fn connect(backend: Backend, url: &str) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Postgres => Self::Postgres(PgPool::connect(url).await?),
            // One connection, so its settings hold for every statement: no
            // foreign-key checks and no fsync during the load (triggers
            // stay on).
            Backend::Sqlite => Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        SqliteConnectOptions::from_str(url)?
                            .foreign_keys(false)
                            .synchronous(SqliteSynchronous::Off)
                            .busy_timeout(Duration::from_secs(60)),
                    )
                    .await?,
            ),
        })
    }

    fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    async fn execute(&self, sql: &str) -> anyhow::Result<u64> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Self::Postgres(pool) => sqlx::query(sql).execute(pool).await?.rows_affected(),
            Self::Sqlite(pool) => sqlx::query(sql).execute(pool).await?.rows_affected(),
        })
    }

    async fn fetch<T>(&self, sql: &str) -> anyhow::Result<Vec<T>>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
            Self::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        })
    }

    async fn close(self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }

    /// SQL: the integers `lo..=hi` as a table `name` with one column `name`.
    fn series(&self, name: &str, lo: i64, hi: i64) -> String {
        match self {
            Self::Postgres(_) => format!("generate_series({lo}, {hi}) {name}"),
            // The bundled SQLite has no generate_series.
            Self::Sqlite(_) => format!(
                "(WITH RECURSIVE {name}_s({name}) AS (SELECT {lo} UNION ALL \
                   SELECT {name} + 1 FROM {name}_s WHERE {name} < {hi}) \
                 SELECT {name} FROM {name}_s) {name}"
            ),
        }
    }

    /// SQL: integer `expr` zero-padded to `width` digits.
    fn pad(&self, expr: &str, width: usize) -> String {
        match self {
            Self::Postgres(_) => format!("lpad(CAST({expr} AS TEXT), {width}, '0')"),
            Self::Sqlite(_) => format!("printf('%0{width}d', {expr})"),
        }
    }

    /// SQL: `chars` hex digits, a digest of `key` (random on SQLite, which
    /// has no digest function; only their uniqueness matters).
    fn digest(&self, key: &str, chars: usize) -> String {
        match self {
            Self::Postgres(_) => format!(
                "substr(encode(sha256(convert_to(CAST({key} AS TEXT), 'UTF8')), 'hex'), 1, {chars})"
            ),
            Self::Sqlite(_) => format!("lower(hex(randomblob({})))", chars.div_ceil(2)),
        }
    }

    /// Inserting into PostgreSQL's `GENERATED ALWAYS` ids needs this.
    fn overriding(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "OVERRIDING SYSTEM VALUE",
            Self::Sqlite(_) => "",
        }
    }

    /// Runs one statement, printing what it did and how long it took.
    async fn run(&self, what: &str, sql: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let rows = self
            .execute(sql)
            .await
            .with_context(|| format!("{what}: {sql}"))?;
        println!(
            "  {what}: {rows} rows in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Drops the secondary indexes of `table`, and on PostgreSQL its unique
    /// and foreign-key constraints too (bulk loading is several times faster
    /// without them), and returns the DDL that restores them exactly as the
    /// migrations made them. SQLite's unique constraints cannot be dropped;
    /// its loader checks no foreign keys.
    async fn drop_indexes(&self, table: &str) -> anyhow::Result<Vec<String>> {
        let constraints: Vec<(String, String)> = match self {
            Self::Postgres(_) => {
                self.fetch(&format!(
                    "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
                     WHERE conrelid = '{table}'::regclass AND contype IN ('u', 'f') \
                     ORDER BY contype DESC, conname"
                ))
                .await?
            }
            Self::Sqlite(_) => Vec::new(),
        };
        let indexes: Vec<(String, String)> = self
            .fetch(&match self {
                Self::Postgres(_) => format!(
                    "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x \
                     JOIN pg_class i ON i.oid = x.indexrelid \
                     WHERE x.indrelid = '{table}'::regclass \
                       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) \
                     ORDER BY i.relname"
                ),
                Self::Sqlite(_) => format!(
                    "SELECT name, sql FROM sqlite_master \
                     WHERE type = 'index' AND tbl_name = '{table}' AND sql IS NOT NULL \
                     ORDER BY name"
                ),
            })
            .await?;
        let mut restore = Vec::new();
        for (name, def) in &constraints {
            self.execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
                .await?;
            restore.push(format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"));
        }
        for (name, def) in &indexes {
            self.execute(&format!("DROP INDEX {name}")).await?;
            restore.push(def.clone());
        }
        Ok(restore)
    }

    async fn restore_indexes(&self, ddl: &[String]) -> anyhow::Result<()> {
        for statement in ddl {
            let started = Instant::now();
            self.execute(statement)
                .await
                .with_context(|| statement.clone())?;
            println!("  {statement}: {:.1}s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// `VACUUM (ANALYZE)` of the whole database on PostgreSQL; on SQLite a
    /// WAL checkpoint, after an ANALYZE only if `sqlite_analyze` (the hub
    /// never runs one there).
    async fn settle(&self, sqlite_analyze: bool) -> anyhow::Result<()> {
        match self {
            Self::Postgres(_) => {
                self.execute("VACUUM (ANALYZE)").await?;
            }
            Self::Sqlite(_) => {
                if sqlite_analyze {
                    self.execute("ANALYZE").await?;
                }
                self.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            }
        }
        Ok(())
    }

    fn settle_name(&self, sqlite_analyze: bool) -> &'static str {
        settle_name(self.backend(), sqlite_analyze)
    }
}

fn settle_name(backend: Backend, sqlite_analyze: bool) -> &'static str {
    match (backend, sqlite_analyze) {
        (Backend::Postgres, _) => "VACUUM (ANALYZE)",
        (Backend::Sqlite, false) => "WAL checkpoint",
        (Backend::Sqlite, true) => "ANALYZE, WAL checkpoint",
    }
}

// -------------------------------------------------------------------- load

/// Writes the estate into the hub's own tables, in the order ingest would:
/// dimensions, desired assignments, then current rows and history.
async fn load(db: &Db, estate: &Estate, now: i64) -> anyhow::Result<()> {
    let e = estate;
    let (w, v, d, c) = (e.workloads, e.versions, e.assignments, e.clusters);
    let envs = ENVIRONMENTS.len() as i64;
    let ov = db.overriding();

    println!("loading dimensions");
    let mut statements = vec![
        (
            "tenants",
            format!("INSERT INTO tenants (id, name, created_at) {ov} VALUES (1, 'default', {now})"),
        ),
        (
            "workspaces",
            format!("INSERT INTO workspaces (id, tenant_id, name) {ov} VALUES (1, 1, 'default')"),
        ),
        (
            "applications",
            format!(
                "INSERT INTO applications (id, tenant_id, workspace_id, name) {ov} \
                 SELECT a + 1, 1, 1, 'app-' || {} FROM {}",
                db.pad("a", 2),
                db.series("a", 0, APPLICATIONS - 1)
            ),
        ),
        (
            "workloads",
            format!(
                "INSERT INTO workloads (id, tenant_id, application_id, name) {ov} \
                 SELECT w + 1, 1, w % {APPLICATIONS} + 1, 'svc-' || {} FROM {}",
                db.pad("w", 3),
                db.series("w", 0, w - 1)
            ),
        ),
        (
            "environments",
            format!(
                "INSERT INTO environments (id, tenant_id, name) {ov} \
                 SELECT e + 1, 1, {} FROM {}",
                env_name_sql("e"),
                db.series("e", 0, envs - 1)
            ),
        ),
        (
            "deployment_targets",
            format!(
                "INSERT INTO deployment_targets (id, tenant_id, workload_id, environment_id, name) \
                 {ov} SELECT {}, 1, w + 1, e + 1, 'svc-' || {} || '-' || {} || '-' || c \
                 FROM {}, {}, {}",
                e.target_sql("w", "e", "c"),
                db.pad("w", 3),
                env_name_sql("e"),
                db.series("w", 0, w - 1),
                db.series("e", 0, envs - 1),
                db.series("c", 0, c - 1)
            ),
        ),
        (
            "workload_versions",
            format!(
                "INSERT INTO workload_versions (id, tenant_id, workload_id, version, revision, \
                   build_commit, build_id, repository_url, first_seen_at) {ov} \
                 SELECT w * {v} + x + 1, 1, w + 1, '1.' || x || '.0', 'sha256:' || {}, {}, \
                   'build-' || (w * {v} + x), 'https://git.example.com/shop/svc-' || {}, \
                   {now} - ({v} - x) * {DAY} \
                 FROM {}, {}",
                db.digest("w * 1000 + x", 64),
                db.digest("w * 1000 + x + 500", 12),
                db.pad("w", 3),
                db.series("w", 0, w - 1),
                db.series("x", 0, v - 1)
            ),
        ),
    ];
    if e.shape != Shape::NoDesired {
        // Assignment j of a target names version latest - (d - 1 - j), a
        // day apart; the newest (j = d - 1) wins.
        statements.push((
            "desired_assignments",
            format!(
                "INSERT INTO desired_assignments (id, tenant_id, target_id, workload_version_id, \
                   assigned_at, received_at) {ov} \
                 SELECT ({t} - 1) * {d} + j + 1, 1, {t}, {version}, \
                   {now} - ({d} - 1 - j) * {DAY} - e * {HOUR}, \
                   {now} - ({d} - 1 - j) * {DAY} - e * {HOUR} \
                 FROM {}, {}, {}, {}",
                db.series("w", 0, w - 1),
                db.series("e", 0, envs - 1),
                db.series("c", 0, c - 1),
                db.series("j", 0, d - 1),
                t = e.target_sql("w", "e", "c"),
                version = e.version_sql("w", &format!("{} - ({d} - 1 - j)", e.latest_sql("e"))),
            ),
        ));
    }
    statements.extend([
        (
            "hosts",
            format!(
                "INSERT INTO hosts (id, tenant_id, name) {ov} SELECT x + 1, 1, 'host-' || {} FROM {}",
                db.pad("x", e.host_digits),
                db.series("x", 0, e.hosts - 1)
            ),
        ),
        (
            "reconcilers",
            format!(
                "INSERT INTO reconcilers (id, tenant_id, name, type) {ov} \
                 VALUES (1, 1, 'sextant-agent', 'agent')"
            ),
        ),
    ]);
    for (what, sql) in &statements {
        db.run(what, sql).await?;
    }
    if db.backend() == Backend::Postgres {
        // The identities continue after the ids written here.
        for (table, _) in &statements {
            db.execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            ))
            .await?;
        }
    }

    println!("loading current state ({} rows)", e.rows);
    let restore = db.drop_indexes("observed_deployments").await?;
    let chunk_hosts = (1_000_000 / e.geometry.per_host).max(1);
    let mut first = 0;
    while first < e.hosts {
        let last = (first + chunk_hosts).min(e.hosts) - 1;
        let source = format!(
            "SELECT x, y FROM {}, {}",
            db.series("x", first, last),
            db.series("y", 0, e.geometry.per_host - 1)
        );
        db.run(
            &format!("observed_deployments hosts {first}..={last}"),
            &format!(
                "INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id, \
                   workload_id, revision, status, message, observed_at, changed_at) \
                 SELECT 1, m.x + 1, 1, {t}, m.w + 1, vv.revision, m.status, m.message, \
                   m.base - (m.r % 30) * {SECOND}, m.base - 2 * {HOUR} - m.r * 60 * {SECOND} \
                 FROM ({placed}) m \
                 JOIN workload_versions vv ON vv.id = {version} \
                 ORDER BY m.x, m.y",
                t = e.target_sql("m.w", "m.e", "m.c"),
                placed = e.placed_sql(&source, now),
                version = e.version_sql("m.w", &format!("{} - m.behind", e.latest_sql("m.e"))),
            ),
        )
        .await?;
        first = last + 1;
    }
    db.restore_indexes(&restore).await?;

    // History: `rounds` status changes per row key, oldest round first (as
    // it was appended), the newest 2 h before the host's last report. Round
    // i back from the newest names version latest - (i + 1) / 2,
    // alternately in progress and succeeded, 12 h apart; every 37th change
    // failed.
    let keys = e.rows;
    let rounds = (e.history + keys - 1) / keys;
    println!(
        "loading observed history ({} rows, up to {rounds} per key)",
        e.history
    );
    let restore = db.drop_indexes("observed_history").await?;
    let chunk = 1_000_000i64;
    let mut g0 = 0;
    while g0 < e.history {
        let g1 = (g0 + chunk).min(e.history) - 1;
        let source = format!(
            "SELECT g, g % {keys} / {k} AS x, g % {keys} % {k} AS y, {rounds} - 1 - g / {keys} AS i \
             FROM {}",
            db.series("g", g0, g1),
            k = e.geometry.per_host,
        );
        let back = format!("{} - (m.i + 1) / 2", e.latest_sql("m.e"));
        let age = format!("(2 * {HOUR} + m.i * 12 * {HOUR} + (m.k % 3600) * {SECOND})");
        db.run(
            &format!("observed_history rows {g0}..={g1}"),
            &format!(
                "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, \
                   revision, status, message, observed_at, received_at) \
                 SELECT 1, m.x + 1, 1, {t}, vv.revision, \
                   CASE WHEN m.g % 37 = 0 THEN 'failed' WHEN m.i % 2 = 0 THEN 'succeeded' \
                     ELSE 'in_progress' END, \
                   CASE WHEN m.g % 37 = 0 THEN 'Back-off pulling image' END, \
                   m.base - {age}, m.base - {age} + {SECOND} \
                 FROM ({placed}) m \
                 JOIN workload_versions vv \
                   ON vv.id = {version}",
                t = e.target_sql("m.w", "m.e", "m.c"),
                placed = e.placed_sql(&source, now),
                version = e.version_sql(
                    "m.w",
                    &format!("CASE WHEN {back} > 0 THEN {back} ELSE 0 END")
                ),
            ),
        )
        .await?;
        g0 = g1 + 1;
    }
    db.restore_indexes(&restore).await?;
    Ok(())
}

/// What the loaded estate holds, counted by the bench's own SQL.
async fn describe_database(db: &Db, stale_before: i64) -> anyhow::Result<i64> {
    let sizes: Vec<(String, i64)> = match db {
        Db::Postgres(_) => {
            db.fetch(
                "SELECT 'database', pg_database_size(current_database()) UNION ALL \
                 SELECT relname::text, pg_total_relation_size(oid) FROM pg_class \
                 WHERE relname IN ('observed_deployments', 'observed_history', 'desired_assignments') \
                   AND relkind = 'r'",
            )
            .await?
        }
        Db::Sqlite(_) => {
            db.fetch(
                "SELECT 'database', page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )
            .await?
        }
    };
    let sizes: Vec<String> = sizes
        .into_iter()
        .map(|(what, bytes)| format!("{what} {:.0} MB", bytes as f64 / 1e6))
        .collect();
    println!("sizes (with indexes): {}", sizes.join("; "));
    let mix: Vec<(String, i64, i64)> = db
        .fetch(&format!(
            "SELECT status, CAST(COUNT(*) AS BIGINT), \
               CAST(SUM(CASE WHEN observed_at < {stale_before} THEN 1 ELSE 0 END) AS BIGINT) \
             FROM observed_deployments GROUP BY status ORDER BY status"
        ))
        .await?;
    for (status, rows, stale) in mix {
        println!("current rows {status}: {rows} ({stale} stale)");
    }
    // Drift as the hub defines it (one reconciler, not Argo CD): no desired
    // state, another revision than desired, failed, or stale.
    let drifting: Vec<(i64,)> = db
        .fetch(&format!(
            "WITH td AS MATERIALIZED (SELECT t.id, \
               (SELECT v.revision FROM desired_assignments d \
                  JOIN workload_versions v ON v.id = d.workload_version_id \
                 WHERE d.target_id = t.id ORDER BY d.assigned_at DESC, d.id DESC LIMIT 1) AS desired \
               FROM deployment_targets t) \
             SELECT CAST(COUNT(*) AS BIGINT) FROM observed_deployments o \
             JOIN td ON td.id = o.target_id \
             WHERE td.desired IS NULL OR o.revision <> td.desired OR o.status = 'failed' \
                OR o.observed_at < {stale_before}"
        ))
        .await?;
    let drifting = drifting.first().map_or(0, |r| r.0);
    println!("drifting current rows: {drifting}");
    Ok(drifting)
}

// ------------------------------------------------------------- measurement

/// How an endpoint's i-th request is made, or why it is not.
enum Route {
    Path(Box<dyn Fn(usize) -> String + Send + Sync>),
    /// Not measured on this estate (the reason, for the table).
    Skip(&'static str),
    /// Preparing it failed.
    Fail(String),
}

/// One endpoint under test.
struct Endpoint {
    name: &'static str,
    route: Route,
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

/// The API cursor that continues after workload `w`: its names as the hub
/// encodes a workload key (JSON, hex).
fn workload_cursor(w: i64) -> String {
    let key = (
        "default",
        format!("app-{:02}", w % APPLICATIONS),
        format!("svc-{w:03}"),
    );
    hex::encode(serde_json::to_vec(&key).unwrap_or_default())
}

fn path(f: impl Fn(usize) -> String + Send + Sync + 'static) -> Route {
    Route::Path(Box::new(f))
}

/// The cursor of the drift list's second page: `next_cursor` of the first.
async fn second_page(client: &reqwest::Client, base: &str) -> Route {
    let first = async {
        let response = client.get(format!("{base}/api/v1/drift")).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "/api/v1/drift: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        Ok(page
            .get("next_cursor")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned))
    };
    match first.await {
        Ok(Some(cursor)) => {
            let cursor: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            path(move |_| format!("/api/v1/drift?cursor={cursor}"))
        }
        Ok(None) => Route::Skip("no second page"),
        Err(e) => Route::Fail(format!("{e:#}")),
    }
}

async fn endpoints(client: &reqwest::Client, base: &str, estate: &Estate) -> Vec<Endpoint> {
    let env = |i: usize| ENVIRONMENTS[i % ENVIRONMENTS.len()];
    let estate = *estate;
    let endpoint = |name, route| Endpoint { name, route };
    vec![
        endpoint(
            "environment state",
            path(move |i| format!("/api/v1/environments/{}/state", env(i))),
        ),
        endpoint(
            "environment state, a later page",
            path(move |i| {
                // A page after a workload picked in turn, in an environment
                // picked in turn: most requests miss the report cache.
                let cursor = workload_cursor(pick(i, 8, estate.workloads));
                format!(
                    "/api/v1/environments/{}/state?limit=100&cursor={cursor}",
                    env(pick(i, 9, ENVIRONMENTS.len() as i64) as usize)
                )
            }),
        ),
        endpoint(
            "compare, 3 environments",
            path(move |i| {
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
        ),
        endpoint(
            "compare, 3 environments, a later page",
            path(move |i| {
                // Continues after a workload picked in turn: many pages,
                // so most requests miss the report cache.
                let cursor = workload_cursor(pick(i, 7, estate.workloads));
                let three = ENVIRONMENTS[..3].join(",");
                format!("/api/v1/compare?environments={three}&cursor={cursor}")
            }),
        ),
        endpoint("drift, first page", path(|_| "/api/v1/drift".to_owned())),
        endpoint("drift, second page", second_page(client, base).await),
        endpoint(
            "drift, first page, one environment",
            path(move |i| format!("/api/v1/drift?environment={}", env(i))),
        ),
        endpoint(
            "drift, one target",
            path(move |i| {
                let name = estate.target_name(
                    pick(i, 4, estate.workloads),
                    pick(i, 5, ENVIRONMENTS.len() as i64) as usize,
                    pick(i, 6, estate.clusters),
                );
                format!("/api/v1/drift?target={name}")
            }),
        ),
        endpoint(
            "rollout",
            path(move |i| {
                format!(
                    "/api/v1/rollout?workload=svc-{:03}&environment={}",
                    pick(i, 1, estate.workloads),
                    env(pick(i, 2, 4) as usize)
                )
            }),
        ),
        endpoint(
            "host view",
            path(move |i| {
                format!(
                    "/api/v1/hosts/{}",
                    estate.host_name(pick(i, 3, estate.hosts))
                )
            }),
        ),
        endpoint("hosts, first page", path(|_| "/api/v1/hosts".to_owned())),
        endpoint("UI: matrix (/)", path(|_| "/".to_owned())),
        endpoint("UI: drift (/drift)", path(|_| "/drift".to_owned())),
    ]
}

/// What measuring one endpoint gave.
enum Outcome {
    Measured { sorted: Vec<Duration>, bytes: usize },
    Skipped(&'static str),
    Failed(String),
}

/// Latencies of one endpoint.
struct Measured {
    name: &'static str,
    outcome: Outcome,
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

/// Sends `count` requests (numbered from `offset`) with `concurrency`
/// clients, none after `deadline` but the first; returns the latencies and
/// the bytes received, or the first failure.
async fn send(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
    route: &Arc<Box<dyn Fn(usize) -> String + Send + Sync>>,
    count: usize,
    offset: usize,
    deadline: Option<Instant>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, next, route) = (client.clone(), next.clone(), route.clone());
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || (i > 0 && deadline.is_some_and(|d| Instant::now() > d)) {
                    break;
                }
                let url = format!("{base}{}", route(i + offset));
                let sent = Instant::now();
                let response = client.get(&url).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                latencies.push(sent.elapsed());
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
    sorted.sort();
    Ok((sorted, bytes))
}

/// Sends `warmup` then `requests` requests to each endpoint, within
/// `max_seconds`. A failed request ends its endpoint's measurement and
/// fails the run at the end.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
    estate: &Estate,
) -> Vec<Measured> {
    let mut results = Vec::new();
    for endpoint in endpoints(client, base, estate).await {
        let outcome = match endpoint.route {
            Route::Skip(why) => Outcome::Skipped(why),
            Route::Fail(error) => Outcome::Failed(error),
            Route::Path(route) => {
                let route = Arc::new(route);
                let started = Instant::now();
                let budget = (args.max_seconds > 0).then(|| Duration::from_secs(args.max_seconds));
                let sent = async {
                    let warm = budget.map(|b| started + b / 4);
                    send(client, base, args, &route, args.warmup, args.requests, warm).await?;
                    let deadline = budget.map(|b| started + b);
                    send(client, base, args, &route, args.requests, 0, deadline).await
                };
                match sent.await {
                    Ok((sorted, bytes)) => Outcome::Measured {
                        bytes: bytes / sorted.len().max(1),
                        sorted,
                    },
                    Err(e) => Outcome::Failed(format!("{e:#}")),
                }
            }
        };
        if let Outcome::Failed(error) = &outcome {
            println!("FAILED {}: {error}", endpoint.name);
        }
        results.push(Measured {
            name: endpoint.name,
            outcome,
        });
    }
    results
}

fn print_table(title: &str, results: &[Measured]) {
    println!("\n{title}");
    println!("| endpoint | requests | p50 ms | p99 ms | max ms | mean response |");
    println!("|---|---|---|---|---|---|");
    for m in results {
        match &m.outcome {
            Outcome::Measured { sorted, bytes } => println!(
                "| {} | {} | {} | {} | {} | {:.0} KiB |",
                m.name,
                sorted.len(),
                ms(percentile(sorted, 0.50)),
                ms(percentile(sorted, 0.99)),
                ms(sorted.last().copied().unwrap_or_default()),
                *bytes as f64 / 1024.0
            ),
            Outcome::Skipped(why) => println!("| {} | – | {why} | | | |", m.name),
            Outcome::Failed(_) => println!("| {} | – | failed | | | |", m.name),
        }
    }
}

// -------------------------------------------------------------------- runs

/// One estate measured.
struct Cell {
    estate: Estate,
    /// Seconds of the load (None: a reused database).
    load: Option<f64>,
    settle: f64,
    swept: u64,
    sweep: Duration,
    drifting: i64,
    results: Vec<Measured>,
    after_heartbeats: Option<Vec<Measured>>,
}

/// Creates the database of one estate, measures it and drops it (unless
/// `--keep`), also when `stop` is cancelled meanwhile; or measures the
/// `--reuse`d one.
async fn run_cell(
    args: &Args,
    estate: &Estate,
    backend: Backend,
    admin: Option<&PgPool>,
    stop: &CancellationToken,
) -> anyhow::Result<Cell> {
    let measure_on = |url: String, fresh: bool| async move {
        tokio::select! {
            result = bench(args, estate, backend, &url, fresh) => result,
            () = stop.cancelled() => Err(anyhow::anyhow!("interrupted")),
        }
    };
    if let Some(url) = &args.reuse {
        let result = measure_on(url.clone(), false).await;
        println!("\nreused and kept the database: {url}");
        return result;
    }
    match backend {
        Backend::Postgres => {
            let admin = admin.context("no PostgreSQL admin connection")?;
            let name = format!("sextant_bench_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(admin)
                .await?;
            let mut url = url::Url::parse(args.admin_url.as_deref().unwrap_or_default())?;
            url.set_path(&name);
            let url = url.to_string();
            let result = measure_on(url.clone(), true).await;
            if args.keep {
                println!("\nkept the database: {url}");
            } else {
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
                    .execute(admin)
                    .await?;
            }
            result
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
            let result = measure_on(url.clone(), true).await;
            if args.keep {
                let dir = dir.keep();
                println!("\nkept the database: {url} (in {})", dir.display());
            }
            result
        }
    }
}

/// Builds the hub on `url`, loads the estate (when `fresh`), settles the
/// database, sweeps stale rows and measures.
async fn bench(
    args: &Args,
    estate: &Estate,
    backend: Backend,
    url: &str,
    fresh: bool,
) -> anyhow::Result<Cell> {
    let any = "127.0.0.1:0".parse()?;
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(url.to_owned()),
        stale_after_seconds: STALE_AFTER_SECONDS,
        environments: ENVIRONMENTS.iter().map(|e| (*e).to_owned()).collect(),
        ..HubConfig::default()
    };
    // Building the hub migrates the fresh database.
    let app = Application::build(&config).await?;
    let base = format!("http://{}", app.api_addr());
    println!(
        "\n=== {} {} on {}: {}",
        estate.shape.name(),
        estate.geometry,
        backend.name(),
        estate.describe()
    );
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    let db = Db::connect(backend, url).await?;
    let load_time = if fresh {
        let started = Instant::now();
        load(&db, estate, now).await?;
        let seconds = started.elapsed().as_secs_f64();
        println!("loaded in {seconds:.1}s");
        Some(seconds)
    } else {
        if backend == Backend::Postgres {
            // An earlier run's heartbeat rounds turned autovacuum off.
            db.execute("ALTER TABLE observed_deployments RESET (autovacuum_enabled)")
                .await?;
        }
        None
    };
    let started = Instant::now();
    db.settle(args.sqlite_analyze).await?;
    let settle = started.elapsed().as_secs_f64();
    println!("{}: {settle:.1}s", db.settle_name(args.sqlite_analyze));

    let started = Instant::now();
    let swept = app.sweep_stale().await?;
    let sweep = started.elapsed();
    println!("sweep_stale: {swept} rows in {} ms", ms(sweep));
    if swept > 0 {
        // The sweep rewrote rows: measure on settled pages again.
        let started = Instant::now();
        db.settle(args.sqlite_analyze).await?;
        println!(
            "{} after the sweep: {:.1}s",
            db.settle_name(args.sqlite_analyze),
            started.elapsed().as_secs_f64()
        );
    }
    let stale_before = now - i64::try_from(STALE_AFTER_SECONDS)? * SECOND;
    let drifting = describe_database(&db, stale_before).await?;

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::new();
    println!(
        "\nmeasuring {} requests per endpoint ({} warm-up) with {} client(s)",
        args.requests, args.warmup, args.concurrency
    );
    let results = measure(&client, &base, args, estate).await;
    print_table(
        &format!("after {}:", db.settle_name(args.sqlite_analyze)),
        &results,
    );

    let after_heartbeats = if args.heartbeats > 0 {
        heartbeats(&db, args, estate, now).await?;
        let results = measure(&client, &base, args, estate).await;
        print_table(
            &format!(
                "after {} heartbeat rounds (every page of current state rewritten since {}):",
                args.heartbeats,
                db.settle_name(args.sqlite_analyze)
            ),
            &results,
        );
        Some(results)
    } else {
        None
    };

    shutdown.cancel();
    server.await??;
    db.close().await;
    Ok(Cell {
        estate: *estate,
        load: load_time,
        settle,
        swept,
        sweep,
        drifting,
        results,
        after_heartbeats,
    })
}

/// Writes `--heartbeats` rounds: every fresh current row's `observed_at`
/// moves forward, 1,000 rows per transaction, as the hub writes them.
async fn heartbeats(db: &Db, args: &Args, estate: &Estate, now: i64) -> anyhow::Result<()> {
    if db.backend() == Backend::Postgres {
        // Hold autovacuum off this table until the end, so the second
        // measurement sees every page rewritten since the last VACUUM (the
        // far end from the first one) rather than whatever part autovacuum
        // happens to have visited meanwhile.
        db.execute("ALTER TABLE observed_deployments SET (autovacuum_enabled = false)")
            .await?;
    }
    let hosts_per_tx = (1000 / estate.geometry.per_host).max(1);
    for round in 1..=args.heartbeats {
        let started = Instant::now();
        let mut touched = 0;
        let mut first = 1;
        while first <= estate.hosts {
            // Fresh rows only: stale hosts do not report.
            touched += db
                .execute(&format!(
                    "UPDATE observed_deployments SET observed_at = observed_at + {} \
                     WHERE host_id BETWEEN {first} AND {} AND observed_at > {}",
                    30 * SECOND,
                    first + hosts_per_tx - 1,
                    now - HOUR
                ))
                .await?;
            first += hosts_per_tx;
        }
        println!(
            "heartbeat round {round}: {touched} current rows in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

// ----------------------------------------------------------------- reports

/// The cells of one (size, backend).
struct Group {
    rows: i64,
    backend: Backend,
    cells: Vec<Cell>,
    wall: Duration,
}

impl Group {
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for cell in &self.cells {
            let all = cell
                .results
                .iter()
                .chain(cell.after_heartbeats.iter().flatten());
            for m in all {
                if let Outcome::Failed(error) = &m.outcome {
                    failures.push(format!(
                        "{} {} on {}, {}: {error}",
                        cell.estate.shape.name(),
                        cell.estate.geometry,
                        self.backend.name(),
                        m.name
                    ));
                }
            }
        }
        failures
    }
}

/// A "p50 / p99" cell, with the request count when fewer than asked.
fn latency_cell(m: &Measured, asked: usize) -> String {
    match &m.outcome {
        Outcome::Measured { sorted, .. } => {
            let mut cell = format!(
                "{} / {}",
                ms(percentile(sorted, 0.50)),
                ms(percentile(sorted, 0.99))
            );
            if sorted.len() < asked {
                let _ = write!(cell, " (n={})", sorted.len());
            }
            cell
        }
        Outcome::Skipped(_) => "n/a".to_owned(),
        Outcome::Failed(_) => "**error**".to_owned(),
    }
}

fn render_table(
    out: &mut String,
    group: &Group,
    asked: usize,
    results: impl Fn(&Cell) -> Option<&Vec<Measured>>,
) {
    let cells = &group.cells;
    out.push_str("| endpoint |");
    for cell in cells {
        let _ = write!(
            out,
            " {} {} |",
            cell.estate.shape.name(),
            cell.estate.geometry
        );
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(cells.len()));
    out.push('\n');
    let names: Vec<&str> = cells
        .first()
        .and_then(&results)
        .map(|r| r.iter().map(|m| m.name).collect())
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let _ = write!(out, "| {name} |");
        for cell in cells {
            let text = results(cell)
                .and_then(|r| r.get(i))
                .map_or_else(String::new, |m| latency_cell(m, asked));
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
}

/// The markdown of one (size, backend): the latency table, then the load.
fn render_group(args: &Args, group: &Group) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} current rows, {}\n",
        group.rows,
        group.backend.name()
    );
    let mut geometries: Vec<&Estate> = Vec::new();
    for cell in &group.cells {
        if !geometries
            .iter()
            .any(|e| e.geometry == cell.estate.geometry)
        {
            geometries.push(&cell.estate);
        }
    }
    for e in geometries {
        let _ = writeln!(
            out,
            "- {}: {} hosts × {} workloads, {} targets of ~{} hosts ({} clusters per workload \
             and environment); {} history rows",
            e.geometry,
            e.hosts,
            e.geometry.per_host,
            e.targets(),
            e.rows / e.targets(),
            e.clusters,
            e.history
        );
    }
    let _ = writeln!(
        out,
        "\np50 / p99 ms of {} requests per endpoint after {} warm-up, {} client(s){}; \
         columns: shape, workloads per host × hosts per target. Whole run: {:.0} s.\n",
        args.requests,
        args.warmup,
        args.concurrency,
        match args.max_seconds {
            0 => String::new(),
            s => format!(", at most {s} s per endpoint (n=: fewer requests)"),
        },
        group.wall.as_secs_f64()
    );
    render_table(&mut out, group, args.requests, |c| Some(&c.results));
    let settle = settle_name(group.backend, args.sqlite_analyze);
    let cells = &group.cells;
    let extra = [
        (
            "*drifting current rows*".to_owned(),
            cells.iter().map(|c| c.drifting.to_string()).collect(),
        ),
        (
            "*load, s*".to_owned(),
            cells
                .iter()
                .map(|c| c.load.map_or("reused".to_owned(), |s| format!("{s:.1}")))
                .collect(),
        ),
        (
            format!("*{settle}, s*"),
            cells.iter().map(|c| format!("{:.1}", c.settle)).collect(),
        ),
        (
            "*sweep_stale: rows, ms*".to_owned(),
            cells
                .iter()
                .map(|c| format!("{}, {}", c.swept, ms(c.sweep)))
                .collect::<Vec<String>>(),
        ),
    ];
    for (label, values) in &extra {
        let _ = writeln!(out, "| {label} | {} |", values.join(" | "));
    }
    if args.heartbeats > 0 {
        let _ = writeln!(
            out,
            "\nAfter {} heartbeat rounds (every page of current state rewritten):\n",
            args.heartbeats
        );
        render_table(&mut out, group, args.requests, |c| {
            c.after_heartbeats.as_ref()
        });
    }
    let skipped = group.cells.iter().any(|c| {
        c.results
            .iter()
            .any(|m| matches!(m.outcome, Outcome::Skipped(_)))
    });
    if skipped {
        out.push_str("\nn/a: the first drift page had no `next_cursor` (no second page).\n");
    }
    for failure in group.failures() {
        let _ = writeln!(out, "\nerror: {failure}");
    }
    out
}

/// Resolves on the first SIGINT or SIGTERM.
async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    let backends = args.backends()?;
    let admin = match (&args.admin_url, &args.reuse) {
        (Some(url), None) if backends.contains(&Backend::Postgres) => {
            Some(PgPool::connect(url).await?)
        }
        _ => None,
    };
    let command: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // SIGINT or SIGTERM stops the run between statements, and the
    // database of the estate being measured is still dropped.
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            interrupted().await;
            println!("\ninterrupted: stopping");
            stop.cancel();
        }
    });
    let started = Instant::now();
    let mut markdown = format!(
        "Query latency by estate shape (`query_load -- {}`)\n",
        command.join(" ")
    );
    let mut failures = Vec::new();
    for &rows in &args.rows {
        for &backend in &backends {
            let mut group = Group {
                rows,
                backend,
                cells: Vec::new(),
                wall: Duration::ZERO,
            };
            let group_started = Instant::now();
            for &geometry in &args.geometry {
                for &shape in &args.shapes {
                    anyhow::ensure!(!stop.is_cancelled(), "interrupted");
                    let estate = Estate::new(&args, rows, geometry, shape)?;
                    let cell = run_cell(&args, &estate, backend, admin.as_ref(), &stop).await?;
                    group.cells.push(cell);
                    group.wall = group_started.elapsed();
                    // The file holds every cell measured so far.
                    if let Some(path) = &args.out {
                        let partial = format!("{markdown}\n{}", render_group(&args, &group));
                        std::fs::write(path, partial)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                }
            }
            let table = render_group(&args, &group);
            println!("\n{table}");
            markdown.push('\n');
            markdown.push_str(&table);
            failures.extend(group.failures());
        }
    }
    println!("total wall time: {:.0} s", started.elapsed().as_secs_f64());
    anyhow::ensure!(
        failures.is_empty(),
        "{} endpoint(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
