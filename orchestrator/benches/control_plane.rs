//! The control plane at 1,000 agents (issue 6 §6): a real `sextant
//! orchestrator` process (release build) and N dry-run agents, all in this
//! process, each a real agent channel client (`sextant_agent::channel::run`
//! with [`Runner::DryRun`]: every task succeeds after `--delay`, no Docker).
//!
//! ```sh
//! cargo bench -p sextant-orchestrator --bench control_plane -- --runs 3
//! cargo bench -p sextant-orchestrator --bench control_plane -- --backend postgres --runs 3
//! ```
//!
//! 1. builds `sextant` in the release profile (`cargo build --release --bin
//!    sextant`; `--no-build` uses the binary already in `target/release/`);
//! 2. makes a fresh database (SQLite file in a temp dir, or PostgreSQL
//!    `sextant_bench_<uuid>` created from `--admin-url`,
//!    `SEXTANT_BENCH_DATABASE_URL` or `SEXTANT_TEST_DATABASE_URL`, dropped at
//!    the end) and starts `sextant orchestrator --listen 127.0.0.1:0
//!    --no-hub` on it, with every other setting at its default;
//! 3. creates N one-time tokens and starts N agents, `agent-<i>` with label
//!    `n=<i>` and a data dir each; times until the API lists all N online;
//! 4. applies N targets `t-<i>` (execution model agent, selector `n: <i>`),
//!    so each target selects exactly one agent;
//! 5. per run, for each strategy: a new release, a promotion, and the wall
//!    time from the promotion's POST until the API says `deployed` (polled
//!    every 25 ms); the job's own timestamps split it into phases; every
//!    task must have succeeded and every agent's `executed` counter must
//!    have grown by exactly one (no task ran twice, none was skipped);
//! 6. CPU (utime + stime from `/proc/PID/stat`) of the orchestrator, of this
//!    process (the agents) and, on PostgreSQL, of the database's backends,
//!    over each job; VmRSS / VmHWM of the orchestrator.
//!
//! Prints markdown tables and one JSON line (`{"bench":"control_plane",…}`).
//! `--binary PATH` measures another build of `sextant` (to compare two
//! builds on the same machine, back to back).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use sextant_agent::channel::{self, ChannelConfig, Runner};
use sextant_orchestrator::domain::Span;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

/// How often the promotion is polled while a job runs.
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    AllAtOnce,
    Rolling,
    Canary,
}

struct Args {
    agents: usize,
    delay: Duration,
    parallel: u32,
    batch: u32,
    stages: Vec<u32>,
    runs: usize,
    backend: Backend,
    admin_url: Option<String>,
    build: bool,
    /// A `sextant` binary to measure instead of `target/release/sextant`.
    binary: Option<PathBuf>,
    cases: Vec<Case>,
}

const USAGE: &str = "use --agents N --delay SPAN --parallel N --batch N --stages 1,10,100 \
     --runs N --backend sqlite|postgres --admin-url URL --cases all_at_once,rolling,canary \
     --no-build --binary PATH";

impl Args {
    fn parse() -> Self {
        let admin_url = std::env::var("SEXTANT_BENCH_DATABASE_URL").ok();
        let mut args = Self {
            agents: 1000,
            delay: Duration::ZERO,
            parallel: 100,
            batch: 100,
            stages: vec![1, 10, 100],
            runs: 3,
            backend: if admin_url.is_some() {
                Backend::Postgres
            } else {
                Backend::Sqlite
            },
            admin_url,
            build: true,
            binary: None,
            cases: vec![Case::AllAtOnce, Case::Rolling, Case::Canary],
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_else(|| panic!("{flag} takes a value"));
            let number = |v: String| -> u64 {
                v.parse()
                    .unwrap_or_else(|_| panic!("{v:?} is not a number; {USAGE}"))
            };
            match flag.as_str() {
                "--agents" => args.agents = number(value()).max(1) as usize,
                "--delay" => args.delay = Span::parse(&value()).unwrap().0,
                "--parallel" => args.parallel = number(value()) as u32,
                "--batch" => args.batch = number(value()).max(1) as u32,
                "--stages" => {
                    args.stages = value()
                        .split(',')
                        .map(|s| number(s.into()) as u32)
                        .collect()
                }
                "--runs" => args.runs = number(value()).max(1) as usize,
                "--backend" => {
                    args.backend = match value().as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        other => panic!("unknown backend {other:?}; {USAGE}"),
                    }
                }
                "--admin-url" => args.admin_url = Some(value()),
                "--cases" => {
                    args.cases = value()
                        .split(',')
                        .map(|c| match c {
                            "all_at_once" => Case::AllAtOnce,
                            "rolling" => Case::Rolling,
                            "canary" => Case::Canary,
                            other => panic!("unknown case {other:?}; {USAGE}"),
                        })
                        .collect()
                }
                "--no-build" => args.build = false,
                "--binary" => args.binary = Some(PathBuf::from(value())),
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => panic!("unknown argument {other:?}; {USAGE}"),
            }
        }
        if args.backend == Backend::Postgres && args.admin_url.is_none() {
            args.admin_url = std::env::var("SEXTANT_TEST_DATABASE_URL").ok();
        }
        args
    }
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::AllAtOnce => "all_at_once",
            Case::Rolling => "rolling",
            Case::Canary => "canary",
        }
    }

    fn strategy(self, args: &Args) -> Value {
        match self {
            Case::AllAtOnce => json!({"type": "all_at_once", "max_parallel": args.parallel}),
            Case::Rolling => json!({"type": "rolling", "batch_size": args.batch, "pause": "0s"}),
            // `analysis: {}`: between stages every task of the stage must
            // have succeeded; no wait, no hub, no Prometheus.
            Case::Canary => json!({"type": "canary", "stages": args.stages, "analysis": {}}),
        }
    }

    fn label(self, args: &Args) -> String {
        match self {
            Case::AllAtOnce => format!("all-at-once, max_parallel {}", args.parallel),
            Case::Rolling => format!("rolling, batch_size {}, pause 0s", args.batch),
            Case::Canary => format!(
                "canary, stages {}",
                args.stages
                    .iter()
                    .map(|s| format!("{s}%"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        }
    }

    /// The wall time a job would take if the control plane cost nothing:
    /// rounds of `--delay`, one per wave of parallel tasks.
    fn ideal(self, args: &Args) -> Duration {
        let n = args.agents;
        let rounds = match self {
            Case::AllAtOnce if args.parallel > 0 => n.div_ceil(args.parallel as usize),
            Case::AllAtOnce => 1,
            // Within a batch or stage every task runs at once.
            Case::Rolling => n.div_ceil(args.batch as usize),
            Case::Canary => {
                let mut stages = 0;
                let mut reached = 0;
                for pct in &args.stages {
                    let upto = (n * *pct as usize).div_ceil(100).max(reached + 1).min(n);
                    if upto > reached {
                        stages += 1;
                        reached = upto;
                    }
                }
                stages
            }
        };
        args.delay * rounds as u32
    }
}

/// The `sextant orchestrator` process; killed when dropped.
struct Orchestrator {
    child: Child,
    api: String,
    agents: String,
}

impl Orchestrator {
    fn start(binary: &Path, data: &Path, database_url: &str) -> Self {
        let log = std::fs::File::create(data.join("orchestrator.log")).expect("log file");
        let mut child = Command::new(binary)
            .args(["orchestrator", "--listen", "127.0.0.1:0", "--no-hub"])
            .args(["--replica", "bench"])
            .arg("--data-dir")
            .arg(data)
            .args(["--database-url", database_url])
            // The default log level (info), as deployed; into a file.
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sextant orchestrator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut api, mut agents) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim();
                // `API          http://ADDR/api/v1` (not `API docs …`).
                if let Some(rest) = line.strip_prefix("API ").map(str::trim)
                    && rest.starts_with("http://")
                {
                    api = Some(rest.trim_end_matches("/api/v1").to_owned());
                }
                if let Some(rest) = line.strip_prefix("agents ") {
                    agents = rest.split_whitespace().next().map(str::to_owned);
                }
                if let (Some(a), Some(g)) = (&api, &agents) {
                    let _ = tx.send((a.clone(), g.clone()));
                    api = None;
                }
            }
        });
        let (api, agents) = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "the orchestrator printed no banner; see {}",
                    data.join("orchestrator.log").display()
                )
            });
        Self { child, api, agents }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS and VmHWM (KiB) from `/proc/PID/status`.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// CPU seconds (utime + stime, every thread, exited ones too) of `pid`.
fn cpu(pid: u32, ticks: u64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(end) = stat.rfind(')') else {
        return 0.0;
    };
    let used: u64 = stat[end + 2..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    used as f64 / ticks as f64
}

/// The soft limit on open files of this process (the orchestrator
/// inherits it).
fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// The fresh database of one run; PostgreSQL's is dropped by [`Db::drop_now`].
struct Db {
    url: String,
    admin: Option<(sqlx::PgPool, String)>,
}

impl Db {
    async fn create(args: &Args, dir: &Path) -> Self {
        match args.backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", dir.join("orchestrator.db").display()),
                admin: None,
            },
            Backend::Postgres => {
                let admin = args.admin_url.clone().expect(
                    "--backend postgres needs --admin-url, SEXTANT_BENCH_DATABASE_URL or \
                     SEXTANT_TEST_DATABASE_URL",
                );
                let name = format!("sextant_bench_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create the bench database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    admin: Some((pool, name)),
                }
            }
        }
    }

    /// CPU seconds of each backend process serving this database.
    async fn backends_cpu(&self, ticks: u64) -> HashMap<u32, f64> {
        let Some((pool, name)) = &self.admin else {
            return HashMap::new();
        };
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .fetch_all(pool)
                .await
                .unwrap_or_default();
        pids.into_iter()
            .map(|p| (p as u32, cpu(p as u32, ticks)))
            .collect()
    }

    /// Transactions committed in this database so far (PostgreSQL's
    /// statistics, flushed by each backend within about a second).
    async fn commits(&self) -> Option<i64> {
        let (pool, name) = self.admin.as_ref()?;
        sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(name)
            .fetch_one(pool)
            .await
            .ok()
    }

    async fn drop_now(self) {
        if let Some((pool, name)) = self.admin {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&pool)
            .await
            .expect("drop the bench database");
            pool.close().await;
        }
    }
}

/// CPU of PostgreSQL backends between two samples (a backend that appeared
/// counts from zero).
fn pg_delta(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, s)| s - before.get(pid).copied().unwrap_or(0.0))
        .fold(0.0, |a, b| a + b)
}

/// The orchestrator's REST API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .header("x-sextant-actor", "bench");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("the API answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.call("POST", path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {out}");
        out
    }

    async fn online(&self) -> usize {
        let (_, agents) = self.call("GET", "/api/v1/agents", None).await;
        agents
            .as_array()
            .map_or(0, |a| a.iter().filter(|a| a["status"] == "online").count())
    }
}

/// The N dry-run agents.
struct Agents {
    cancel: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<Result<(), channel::ChannelError>>>,
    executed: Vec<Arc<AtomicU64>>,
}

impl Agents {
    fn start(endpoint: &str, tokens: Vec<String>, root: &Path, delay: Duration) -> Self {
        let cancel = CancellationToken::new();
        let mut handles = Vec::new();
        let mut executed = Vec::new();
        for (i, token) in tokens.into_iter().enumerate() {
            let counter = Arc::new(AtomicU64::new(0));
            let config = ChannelConfig {
                endpoints: vec![endpoint.to_owned()],
                registration_token: Some(sextant_kit::Secret::new(token)),
                name: format!("agent-{i:04}"),
                labels: BTreeMap::from([("n".to_owned(), i.to_string())]),
                data_dir: root.join(format!("agent-{i:04}")),
                max_backoff: Duration::from_secs(5),
                tls: Default::default(),
            };
            let runner = Runner::DryRun {
                delay,
                executed: counter.clone(),
                fail_image: None,
            };
            handles.push(tokio::spawn(channel::run(
                config,
                runner,
                cancel.child_token(),
            )));
            executed.push(counter);
        }
        Self {
            cancel,
            handles,
            executed,
        }
    }

    fn counts(&self) -> Vec<u64> {
        self.executed
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    async fn stop(self) {
        self.cancel.cancel();
        for h in self.handles {
            if let Ok(Err(e)) = h.await {
                eprintln!("control_plane: an agent ended with {e:#}");
            }
        }
    }
}

fn at(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What one job measured.
#[derive(Debug, Clone, serde::Serialize)]
struct JobFigures {
    case: &'static str,
    run: usize,
    tasks: usize,
    /// Promotion POST → `deployed` seen by the poll.
    wall_s: f64,
    /// `wall_s` less the ideal time, per task.
    overhead_per_task_ms: f64,
    /// POST → job created (promotion evaluated, tasks planned and stored).
    to_job_s: f64,
    /// Job created → running (claimed, artifacts prepared).
    prepare_s: f64,
    /// Running → completing: the tasks.
    tasks_s: f64,
    /// Completing → completed (what runs where, recorded per target).
    complete_s: f64,
    /// Completed → `deployed` seen by the poll.
    tail_s: f64,
    /// Dispatched → finished of each task, less the dry-run delay.
    task_p50_ms: f64,
    task_p99_ms: f64,
    task_max_ms: f64,
    orchestrator_cpu_s: f64,
    agents_cpu_s: f64,
    /// CPU of the database's backends (PostgreSQL only).
    postgres_cpu_s: Option<f64>,
    /// Transactions committed per task (PostgreSQL only; from the
    /// statistics, so approximate).
    commits_per_task: Option<f64>,
    rss_after_kib: u64,
}

struct Ctx<'a> {
    args: &'a Args,
    api: &'a Api,
    agents: &'a Agents,
    db: &'a Db,
    pid: u32,
    ticks: u64,
}

async fn run_job(ctx: &Ctx<'_>, case: Case, run: usize) -> JobFigures {
    let (args, api) = (ctx.args, ctx.api);
    let n = args.agents;
    let release = format!("r-{}-{run}", case.name());
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(release.as_bytes()))
    );
    api.post_ok(
        "/api/v1/releases",
        json!({"name": release, "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{digest}")}]}),
    )
    .await;
    let before_counts = ctx.agents.counts();
    let self_pid = std::process::id();
    let (orch0, self0) = (cpu(ctx.pid, ctx.ticks), cpu(self_pid, ctx.ticks));
    let pg0 = ctx.db.backends_cpu(ctx.ticks).await;
    let commits0 = ctx.db.commits().await;
    let posted = OffsetDateTime::now_utc();
    let started = Instant::now();
    let promotion = api
        .post_ok(
            "/api/v1/promotions",
            json!({"release": release, "environment": "prod", "strategy": case.strategy(args)}),
        )
        .await;
    let id = promotion["id"].as_str().expect("promotion id").to_owned();
    let deadline = started + Duration::from_secs(900);
    let promotion = loop {
        let (_, p) = api
            .call("GET", &format!("/api/v1/promotions/{id}"), None)
            .await;
        let state = p["state"].as_str().unwrap_or("");
        if ["deployed", "failed", "rolled_back", "rejected", "cancelled"].contains(&state) {
            break p;
        }
        assert!(Instant::now() < deadline, "promotion stuck: {p:#}");
        tokio::time::sleep(POLL).await;
    };
    let wall = started.elapsed();
    let seen = OffsetDateTime::now_utc();
    let (orch1, self1) = (cpu(ctx.pid, ctx.ticks), cpu(self_pid, ctx.ticks));
    let pg1 = ctx.db.backends_cpu(ctx.ticks).await;
    let (rss, _) = memory(ctx.pid);
    let is_pg = ctx.db.admin.is_some();
    let job_id = promotion["job_id"].as_str().unwrap_or_default();
    let (_, job) = api
        .call("GET", &format!("/api/v1/jobs/{job_id}"), None)
        .await;
    assert_eq!(promotion["state"], "deployed", "{promotion:#}\n{job:#}");

    // Real work, once each: every task succeeded, every agent ran one.
    let tasks = job["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), n, "one task per target");
    let bad: Vec<&Value> = tasks.iter().filter(|t| t["state"] != "succeeded").collect();
    assert!(bad.is_empty(), "tasks not succeeded: {bad:#?}");
    let after_counts = ctx.agents.counts();
    let grew: Vec<(usize, u64)> = before_counts
        .iter()
        .zip(&after_counts)
        .enumerate()
        .filter(|(_, (b, a))| **a != **b + 1)
        .map(|(i, (b, a))| (i, a - b))
        .collect();
    assert!(
        grew.is_empty(),
        "agents that did not run exactly one task (agent, tasks run): {grew:?}"
    );
    let total: u64 = after_counts.iter().sum::<u64>() - before_counts.iter().sum::<u64>();
    assert_eq!(total, n as u64, "executed grew by the target count");

    // Phases, from the job's own timestamps.
    let created = at(&job["created_at"]).expect("job created_at");
    let event = |to: &str| {
        job["events"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["to"] == to))
            .and_then(|e| at(&e["at"]))
            .unwrap_or_else(|| panic!("job has no {to} event: {job:#}"))
    };
    let (running, completing, completed) =
        (event("running"), event("completing"), event("completed"));
    let delay_ms = args.delay.as_secs_f64() * 1000.0;
    let mut latency: Vec<f64> = tasks
        .iter()
        .filter_map(|t| Some(secs(at(&t["finished_at"])? - at(&t["started_at"])?) * 1000.0))
        .map(|ms| ms - delay_ms)
        .collect();
    latency.sort_by(f64::total_cmp);
    // Backends flush their statistics within about a second of going idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits = match (commits0, ctx.db.commits().await) {
        (Some(a), Some(b)) => Some((b - a) as f64 / n as f64),
        _ => None,
    };
    let ideal = case.ideal(args);
    JobFigures {
        case: case.name(),
        run,
        tasks: n,
        wall_s: wall.as_secs_f64(),
        overhead_per_task_ms: (wall.as_secs_f64() - ideal.as_secs_f64()) * 1000.0 / n as f64,
        to_job_s: secs(created - posted),
        prepare_s: secs(running - created),
        tasks_s: secs(completing - running),
        complete_s: secs(completed - completing),
        tail_s: secs(seen - completed),
        task_p50_ms: percentile(&latency, 0.5),
        task_p99_ms: percentile(&latency, 0.99),
        task_max_ms: latency.last().copied().unwrap_or(f64::NAN),
        orchestrator_cpu_s: orch1 - orch0,
        agents_cpu_s: self1 - self0,
        postgres_cpu_s: is_pg.then(|| pg_delta(&pg0, &pg1)),
        commits_per_task: commits,
        rss_after_kib: rss,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let n = args.agents;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => sextant_e2e::release_sextant(args.build),
    };
    let ticks = clock_ticks();
    if let Some(limit) = open_files_limit() {
        // One stream per agent on each side, plus registration's short
        // connections, files and the database.
        assert!(
            limit >= 2 * n as u64 + 256,
            "the open-files limit is {limit}; {n} agents need about {}: raise it with \
             `ulimit -n {}`",
            2 * n + 256,
            4 * n + 1024
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("control-plane-")
        .tempdir()
        .expect("temp dir");
    let db = Db::create(&args, dir.path()).await;
    let orchestrator = Orchestrator::start(&binary, dir.path(), &db.url);
    let pid = orchestrator.pid();
    let api = Api {
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        base: orchestrator.api.clone(),
    };
    let (rss_idle, _) = memory(pid);
    eprintln!(
        "control_plane: orchestrator {pid} on {} (agents {}), {:?} database",
        api.base, orchestrator.agents, args.backend
    );

    // Tokens, then N agents until all are online.
    let started = Instant::now();
    let tokens: Vec<String> = futures::stream::iter(0..n)
        .map(|_| async {
            let t = api.post_ok("/api/v1/agents/tokens", json!({})).await;
            t["token"].as_str().expect("token").to_owned()
        })
        .buffered(8)
        .collect()
        .await;
    let tokens_took = started.elapsed();
    let self_cpu0 = cpu(std::process::id(), ticks);
    let orch_cpu0 = cpu(pid, ticks);
    let started = Instant::now();
    let agents = Agents::start(&orchestrator.agents, tokens, dir.path(), args.delay);
    let deadline = started + Duration::from_secs(300);
    loop {
        let online = api.online().await;
        if online == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {online} of {n} agents online after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_took = started.elapsed();
    let connect_cpu = cpu(pid, ticks) - orch_cpu0;
    let connect_agents_cpu = cpu(std::process::id(), ticks) - self_cpu0;
    eprintln!("control_plane: {n} agents online in {connect_took:.2?}");

    // Idle with N streams open: heartbeats only.
    let idle_window = Duration::from_secs(10);
    let c0 = cpu(pid, ticks);
    tokio::time::sleep(idle_window).await;
    let idle_cpu_per_s = (cpu(pid, ticks) - c0) / idle_window.as_secs_f64();
    let (rss_connected, _) = memory(pid);

    let targets: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("t-{i:04}"), "environment": "prod",
                   "agent": {"selector": {"n": i.to_string()}}})
        })
        .collect();
    api.post_ok(
        "/api/v1/apply",
        json!({
            "environments": [{"name": "prod"}],
            "components": [{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}],
            "targets": targets,
        }),
    )
    .await;

    let ctx = Ctx {
        args: &args,
        api: &api,
        agents: &agents,
        db: &db,
        pid,
        ticks,
    };
    let mut jobs: Vec<JobFigures> = Vec::new();
    for run in 0..args.runs {
        for &case in &args.cases {
            let f = run_job(&ctx, case, run).await;
            eprintln!(
                "control_plane: run {run} {}: {:.2} s, orchestrator CPU {:.2} s",
                case.name(),
                f.wall_s,
                f.orchestrator_cpu_s
            );
            jobs.push(f);
        }
    }
    let (rss_end, hwm) = memory(pid);
    agents.stop().await;
    orchestrator.stop();
    db.drop_now().await;

    // Report.
    println!();
    println!(
        "sextant orchestrator (release, {:?}), {n} dry-run agents (delay {:?}), {} cores",
        args.backend,
        args.delay,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| {n} registration tokens (POST /api/v1/agents/tokens, 8 at a time) | {:.2} s |",
        tokens_took.as_secs_f64()
    );
    println!(
        "| {n} agents register and connect, until all online | {:.2} s (orchestrator CPU {:.2} s, agents {:.2} s) |",
        connect_took.as_secs_f64(),
        connect_cpu,
        connect_agents_cpu
    );
    println!(
        "| orchestrator CPU idle with {n} streams (heartbeats every 30 s) | {:.1} ms/s |",
        idle_cpu_per_s * 1000.0
    );
    println!(
        "| orchestrator VmRSS: started / {n} agents connected / after the jobs | {} / {} / {} MiB |",
        mib(rss_idle),
        mib(rss_connected),
        mib(rss_end)
    );
    println!("| orchestrator VmHWM (peak) | {} MiB |", mib(hwm));
    println!();
    println!(
        "| strategy | run | wall s | overhead/task ms | POST→job | prepare | tasks | complete | tail | task p50 / p99 / max ms | CPU s orch / agents / pg | pg commits/task | RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
    };
    for f in &jobs {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} | {:.2} / {:.2} / {} | {} | {} |",
            f.case,
            f.run + 1,
            f.wall_s,
            f.overhead_per_task_ms,
            f.to_job_s,
            f.prepare_s,
            f.tasks_s,
            f.complete_s,
            f.tail_s,
            f.task_p50_ms,
            f.task_p99_ms,
            f.task_max_ms,
            f.orchestrator_cpu_s,
            f.agents_cpu_s,
            opt(f.postgres_cpu_s, 2),
            opt(f.commits_per_task, 1),
            mib(f.rss_after_kib)
        );
    }
    println!();
    println!(
        "| strategy | wall s, median (min) | overhead/task ms | orchestrator CPU s | CPU ms/task | PostgreSQL CPU s | task p50 ms | ideal s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &case in &args.cases {
        let of = |get: fn(&JobFigures) -> f64| -> Vec<f64> {
            jobs.iter()
                .filter(|f| f.case == case.name())
                .map(get)
                .collect()
        };
        let wall = of(|f| f.wall_s);
        let over = of(|f| f.overhead_per_task_ms);
        let cpu_s = of(|f| f.orchestrator_cpu_s);
        let p50 = of(|f| f.task_p50_ms);
        let pg = of(|f| f.postgres_cpu_s.unwrap_or(f64::NAN));
        let pg_median = pg.iter().all(|v| !v.is_nan()).then(|| median(pg.clone()));
        println!(
            "| {} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} | {} | {:.1} | {:.1} |",
            case.label(&args),
            median(wall.clone()),
            min(&wall),
            median(over.clone()),
            min(&over),
            median(cpu_s.clone()),
            min(&cpu_s),
            median(cpu_s.clone()) * 1000.0 / n as f64,
            opt(pg_median, 2),
            median(p50.clone()),
            case.ideal(&args).as_secs_f64()
        );
        summary.push(json!({
            "case": case.name(),
            "strategy": case.strategy(&args),
            "wall_s_median": median(wall.clone()),
            "wall_s_min": min(&wall),
            "overhead_per_task_ms_median": median(over),
            "orchestrator_cpu_s_median": median(cpu_s),
            "postgres_cpu_s_median": pg_median,
            "task_p50_ms_median": median(p50),
            "ideal_s": case.ideal(&args).as_secs_f64(),
        }));
    }
    let line = json!({
        "bench": "control_plane",
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "agents": n,
        "delay_ms": args.delay.as_millis() as u64,
        "runs": args.runs,
        "tokens_s": tokens_took.as_secs_f64(),
        "connect_s": connect_took.as_secs_f64(),
        "connect_orchestrator_cpu_s": connect_cpu,
        "idle_cpu_ms_per_s": idle_cpu_per_s * 1000.0,
        "rss_kib": {"started": rss_idle, "connected": rss_connected, "end": rss_end, "hwm": hwm},
        "summary": summary,
        "jobs": jobs,
    });
    println!();
    println!("{line}");
}
