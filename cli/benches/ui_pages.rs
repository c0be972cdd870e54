//! The hub's flow pages at size (issue 21): "pages of 1,000 releases,
//! 10,000 promotions and 1,000 agents render in under 200 ms on the hub"
//! (docs/performance.md, "Flow pages at size").
//!
//! ```text
//! cargo bench -p sextant-cli --bench ui_pages
//! cargo bench -p sextant-cli --bench ui_pages -- --backend postgres --requests 50
//! ```
//!
//! 1. Fills a fresh orchestrator database (SQLite file, or a PostgreSQL
//!    database made from `SEXTANT_TEST_DATABASE_URL` like the test kit's
//!    `TestDb`, dropped at the end) through the orchestrator's own `Store`
//!    functions, before the orchestrator starts (its engine would otherwise
//!    drive the jobs): environments dev → qa → stage → prod (prod needs two
//!    approvals), five applications with one to six components, 1,000
//!    releases, 10,000 promotions (per release four into dev, three into qa,
//!    two into stage, one into prod) in mixed states with their events,
//!    approvals, decision records, jobs and tasks (a rolled-back promotion
//!    has its rollback job too; the deploying ones keep a job leased by
//!    another replica), one wide job of 200 tasks with 60 log lines each,
//!    and 1,000 agents (900 with an open session, 100 revoked).
//!    The hub gets an estate over OTLP ([`estate`]): 2,870 hosts' rows over
//!    the same applications and environments, one in ten drifting, so the
//!    pipeline's "what runs there" reads real rows.
//! 2. Starts the orchestrator (`sextant_orchestrator::app::start`, engine
//!    and promotion loop running at their default `poll` of 2 s) and a hub
//!    linked to it (`sextant_receiver::Application`), in this process, with
//!    tokens: `alice` reads the hub and deploys on the orchestrator, as in
//!    `cli/tests/ui_flow/stack.rs`.
//! 3. Times each page over HTTP against the hub's API address, `--requests`
//!    times one after the other (after 3 untimed warm-ups), and checks every
//!    answer is a 200 showing what the page must show (the agents page has
//!    1,000 rows, …). The references, in the same run: the hub's
//!    `/health/live` and the orchestrator's `GET /api/v1/promotions?limit=100`,
//!    the API call the promotions page makes.
//!
//! Prints a markdown table and one JSON line (`{"bench":"ui_pages",…}`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sextant_e2e::{Backend, TestDb};
use sextant_kit::Secret;
use sextant_orchestrator::api::TokenConfig as OrchestratorToken;
use sextant_orchestrator::api::auth::Scope as OrchestratorScope;
use sextant_orchestrator::app::{self, RuntimeConfig};
use sextant_orchestrator::apply::Document;
use sextant_orchestrator::domain::failure::FailureKind;
use sextant_orchestrator::domain::task::{LogStream, TaskKind};
use sextant_orchestrator::domain::{
    JobKind, JobState, PromotionState, ReleaseComponent, Strategy, TaskState,
};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use sextant_orchestrator::store::{
    AgentInfo, NewJob, NewPromotion, NewTask, Store, TaskMove, TaskResultRow,
};
use sextant_protocol::deploy::ErrorKind;
use sextant_receiver::auth::TokenConfig as HubToken;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

/// The same allocator as the `sextant` binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TENANT: &str = "acme";
/// Reads the hub, deploys on the orchestrator: the person at the browser.
const ALICE: &str = "alice-token-0123456789";
/// The orchestrator's token for sending desired state to the hub.
const INGEST: &str = "ingest-token-0123456789";

const RELEASES: usize = 1000;
const AGENTS: usize = 1000;
const REVOKED: usize = 100;
/// Prod targets; the wide job deploys two components to each.
const WIDE_TARGETS: usize = 100;
const LOG_LINES: usize = 60;
/// Concurrent writers while filling (PostgreSQL commits overlap; SQLite's
/// one connection queues them).
const WRITERS: usize = 8;

/// Applications and their components.
const APPS: [(&str, &[&str]); 5] = [
    ("shop", &["web", "api", "worker"]),
    ("billing", &["ledger", "invoices"]),
    ("search", &["indexer", "query"]),
    ("auth", &["login"]),
    (
        "platform",
        &["gateway", "mesh", "dns", "logs", "metrics", "vault"],
    ),
];
/// Environments, promotions per release into each, targets a job uses.
const ENVIRONMENTS: [(&str, usize, usize); 4] =
    [("dev", 4, 1), ("qa", 3, 1), ("stage", 2, 2), ("prod", 1, 3)];

struct Args {
    requests: usize,
    backend: Backend,
    poll: Duration,
}

const USAGE: &str = "use --requests N --backend sqlite|postgres --poll SECONDS";

impl Args {
    fn parse() -> Self {
        let mut args = Self {
            requests: 50,
            backend: Backend::Sqlite,
            poll: Settings::default().poll,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_else(|| panic!("{flag} takes a value"));
            match flag.as_str() {
                "--requests" => {
                    args.requests = value()
                        .parse::<usize>()
                        .unwrap_or_else(|_| panic!("--requests takes a number; {USAGE}"))
                        .max(1)
                }
                "--backend" => {
                    args.backend = match value().as_str() {
                        "sqlite" => Backend::Sqlite,
                        "postgres" => Backend::Postgres,
                        other => panic!("unknown backend {other:?}; {USAGE}"),
                    }
                }
                "--poll" => {
                    args.poll = Duration::from_secs_f64(
                        value()
                            .parse()
                            .unwrap_or_else(|_| panic!("--poll takes seconds; {USAGE}")),
                    )
                }
                // `cargo bench` passes --bench to every bench binary.
                "--bench" => {}
                other => panic!("unknown argument {other:?}; {USAGE}"),
            }
        }
        args
    }
}

/// What a promotion ends as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Deployed,
    Failed,
    RolledBack,
    Deploying,
    Awaiting,
    Rejected,
}

/// The shape of promotion `k` (0-based, per environment) of release `r`.
fn shape(r: usize, env: &str, k: usize) -> Shape {
    if env == "prod" {
        // The 300 newest releases wait for approval in prod (the inbox);
        // older ones: mostly deployed, some rejected, failed, rolled back.
        return match r {
            r if r >= RELEASES - 300 => Shape::Awaiting,
            r if r % 20 == 1 => Shape::Rejected,
            r if r % 33 == 2 => Shape::Failed,
            r if r % 50 == 3 => Shape::RolledBack,
            _ => Shape::Deployed,
        };
    }
    // The newest stage promotions of ten releases are still deploying.
    if env == "stage" && k == 0 && r >= RELEASES - 10 {
        return Shape::Deploying;
    }
    let n = r * 7 + k * 3 + env.len();
    match n % 100 {
        0..=4 => Shape::Failed,
        5..=6 => Shape::RolledBack,
        _ => Shape::Deployed,
    }
}

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn actor(n: usize) -> &'static str {
    ["alice", "bob", "carol", "dave", "erin"][n % 5]
}

fn strategy() -> Strategy {
    serde_json::from_value(json!({"type": "all_at_once"})).expect("strategy")
}

fn task_move(from: TaskState, to: TaskState) -> TaskMove<'static> {
    TaskMove::new(from, to, "bench", Duration::from_secs(60))
}

/// The configuration: environments, components of the applications, and
/// targets (`prod-001`… for the wide job).
fn document() -> Document {
    let mut targets = Vec::new();
    for (env, _, n) in ENVIRONMENTS {
        let n = if env == "prod" { WIDE_TARGETS } else { n };
        for i in 1..=n {
            targets.push(json!({"name": format!("{env}-{i:03}"), "environment": env,
                "agent": {"selector": {"pool": format!("{env}-{}", i % 10)}}}));
        }
    }
    let components: Vec<Value> = APPS
        .iter()
        .flat_map(|(app, cs)| {
            cs.iter().map(move |c| {
                json!({"name": format!("{app}-{c}"), "image": format!("registry.example/{app}/{c}"), "application": app})
            })
        })
        .collect();
    let doc = json!({
        "environments": [
            {"name": "dev"}, {"name": "qa"}, {"name": "stage"},
            {"name": "prod", "production": true, "required_approvals": 2},
        ],
        "components": components,
        "targets": targets,
    });
    Document::parse(&doc.to_string()).expect("document")
}

/// A release and what the fill needs of it.
#[derive(Clone)]
struct Made {
    id: String,
    name: String,
    components: Vec<ReleaseComponent>,
}

/// Ids the timing needs.
#[derive(Default)]
struct Featured {
    /// The prod promotion with four approvals and a decision record; its
    /// job is the wide one.
    promotion: String,
    wide_job: String,
    release: String,
    awaiting: usize,
}

async fn fill(store: &Store) -> Featured {
    let doc = document();
    for (i, e) in doc.environments.iter().enumerate() {
        store
            .put_environment(TENANT, e, i as i64)
            .await
            .expect("env");
    }
    for c in &doc.components {
        store.put_component(TENANT, c).await.expect("component");
    }
    for t in &doc.targets {
        store.put_target(TENANT, t).await.expect("target");
    }
    // Releases, oldest first, so that created_at follows the number.
    let mut releases = Vec::with_capacity(RELEASES);
    for r in 0..RELEASES {
        let (app, cs) = APPS[r % APPS.len()];
        let components: Vec<ReleaseComponent> = cs
            .iter()
            .enumerate()
            .map(|(j, c)| ReleaseComponent {
                component: format!("{app}-{c}"),
                image: format!("registry.example/{app}/{c}@{}", digest(r * 10 + j)),
                digest: digest(r * 10 + j),
                tag: Some(format!("1.{r}.0")),
            })
            .collect();
        let name = format!("{app}-1.{r}.0");
        let made = store
            .create_release(TENANT, &name, &components, actor(r), true)
            .await
            .expect("release")
            .expect("a new name");
        releases.push(Made {
            id: made.id,
            name,
            components,
        });
    }
    // Promotions: release by release, in `WRITERS` interleaved lanes.
    let releases = Arc::new(releases);
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..WRITERS {
        let (store, releases) = (store.clone(), releases.clone());
        lanes.spawn(async move {
            let mut awaiting = 0;
            for r in (lane..RELEASES).step_by(WRITERS) {
                for (env, per, targets) in ENVIRONMENTS {
                    for k in 0..per {
                        let s = shape(r, env, k);
                        awaiting += usize::from(s == Shape::Awaiting);
                        promote(&store, &releases, r, env, targets, k, s).await;
                    }
                }
            }
            awaiting
        });
    }
    let mut awaiting = 0;
    while let Some(n) = lanes.join_next().await {
        awaiting += n.expect("a lane");
    }
    // The featured promotion, the newest of all: billing, into prod, the
    // wide job.
    let (promotion, wide_job, release) = featured(store).await;
    agents(store).await;
    // The deploying promotions' jobs are driven by another replica: each
    // is leased for a day, so this orchestrator leaves them alone.
    let mut k = 0;
    while store
        .claim_job(&format!("elsewhere-{k}"), Duration::from_secs(86_400), &[])
        .await
        .expect("claim")
        .is_some()
    {
        k += 1;
    }
    println!("  {k} deploying jobs leased by another replica");
    Featured {
        promotion,
        wide_job,
        release,
        awaiting,
    }
}

/// One promotion of release `r` into `env`, taken to `shape` through the
/// store, as the engine would have: events, approvals, the decision, the
/// job and its tasks.
async fn promote(
    store: &Store,
    releases: &[Made],
    r: usize,
    env: &str,
    targets: usize,
    k: usize,
    shape: Shape,
) {
    let release = &releases[r];
    let requester = actor(r + k);
    let strategy = strategy();
    let p = store
        .create_promotion(&NewPromotion {
            tenant: TENANT,
            release_id: &release.id,
            environment: env,
            requested_by: requester,
            strategy: &strategy,
            reason: (k == 0).then_some("scheduled release"),
            traceparent: None,
        })
        .await
        .expect("promotion");
    let mv = |from, to, actor: &'static str, detail: String| {
        let id = p.id.clone();
        async move {
            assert!(
                store
                    .move_promotion(&id, from, to, actor, Some(&detail), None)
                    .await
                    .expect("move")
            );
        }
    };
    if env == "prod" {
        mv(
            PromotionState::Requested,
            PromotionState::AwaitingApproval,
            "sextant",
            "waiting for 0/2 approvals".into(),
        )
        .await;
        let first = actor(r + k + 1);
        match shape {
            Shape::Awaiting => {
                if r.is_multiple_of(2) {
                    store
                        .add_approval(&p.id, first, true, None)
                        .await
                        .expect("approval");
                }
                return;
            }
            Shape::Rejected => {
                store
                    .add_approval(&p.id, first, false, Some("not during the sale"))
                    .await
                    .expect("approval");
                mv(
                    PromotionState::AwaitingApproval,
                    PromotionState::Rejected,
                    first,
                    format!("rejected by {first}"),
                )
                .await;
                decide(store, &p.id, release, env, "rejected").await;
                return;
            }
            _ => {
                for a in [first, actor(r + k + 2)] {
                    store
                        .add_approval(&p.id, a, true, Some("looks good"))
                        .await
                        .expect("approval");
                }
                mv(
                    PromotionState::AwaitingApproval,
                    PromotionState::Approved,
                    "sextant",
                    "gates and approvals passed".into(),
                )
                .await;
            }
        }
    } else {
        mv(
            PromotionState::Requested,
            PromotionState::Approved,
            "sextant",
            "gates and approvals passed".into(),
        )
        .await;
    }
    decide(store, &p.id, release, env, "approved").await;
    let plan: Vec<NewTask> = (1..=targets)
        .flat_map(|t| {
            release.components.iter().map(move |c| NewTask {
                batch: 0,
                kind: TaskKind::Deploy,
                release_id: release.id.clone(),
                target: format!("{env}-{t:03}"),
                component: c.component.clone(),
                image: c.image.clone(),
                digest: c.digest.clone(),
                previous_digest: r.checked_sub(APPS.len()).map(|o| digest(o * 10)),
                slot: None,
                max_attempts: 2,
                timeout_ms: 600_000,
            })
        })
        .collect();
    let job = run_job(
        store,
        &p.id,
        release,
        env,
        JobKind::Deploy,
        None,
        plan,
        shape,
    )
    .await;
    let (to, detail) = match shape {
        Shape::Deploying => return,
        Shape::Failed => (PromotionState::Failed, "job failed: 1 of the tasks failed"),
        Shape::RolledBack => (PromotionState::RolledBack, "job rolled back"),
        _ => (PromotionState::Deployed, "job completed"),
    };
    mv(PromotionState::Deploying, to, "sextant", detail.into()).await;
    if shape == Shape::RolledBack {
        let plan: Vec<NewTask> = store
            .tasks(&job)
            .await
            .expect("tasks")
            .into_iter()
            .map(|t| NewTask {
                batch: 0,
                kind: TaskKind::Rollback,
                release_id: t.release_id,
                target: t.target,
                component: t.component,
                image: t.image,
                digest: t.previous_digest.unwrap_or_else(|| digest(0)),
                previous_digest: Some(t.digest),
                slot: None,
                max_attempts: 2,
                timeout_ms: 600_000,
            })
            .collect();
        run_job(
            store,
            &p.id,
            release,
            env,
            JobKind::Rollback,
            Some(job.clone()),
            plan,
            Shape::Deployed,
        )
        .await;
        assert!(
            store
                .move_job(
                    &job,
                    JobState::RollingBack,
                    JobState::RolledBack,
                    "sextant",
                    None,
                    None
                )
                .await
                .expect("job")
        );
    }
}

async fn decide(store: &Store, id: &str, release: &Made, env: &str, outcome: &str) {
    let record = json!({"release": release.name, "environment": env, "gates": [],
        "required_approvals": if env == "prod" { 2 } else { 0 }, "outcome": outcome});
    store
        .write_decision(id, outcome, &record)
        .await
        .expect("decision");
}

/// Creates a job (a deploy job moves its promotion to deploying) and
/// takes it and its tasks to `shape`; its id.
#[allow(clippy::too_many_arguments)]
async fn run_job(
    store: &Store,
    promotion: &str,
    release: &Made,
    env: &str,
    kind: JobKind,
    parent: Option<String>,
    tasks: Vec<NewTask>,
    shape: Shape,
) -> String {
    let job = store
        .create_job(&NewJob {
            tenant: TENANT.into(),
            kind,
            promotion_id: Some(promotion.into()),
            parent_job_id: parent,
            release_id: release.id.clone(),
            environment: env.into(),
            strategy: strategy(),
            max_attempts: 3,
            created_by: "sextant".into(),
            tasks,
        })
        .await
        .expect("job")
        .expect("the promotion was approved");
    let jm = |from, to, detail: Option<&'static str>, failure| {
        let job = job.clone();
        async move {
            assert!(
                store
                    .move_job(&job, from, to, "sextant", detail, failure)
                    .await
                    .expect("job move")
            );
        }
    };
    jm(JobState::Pending, JobState::Running, None, None).await;
    let tasks = store.tasks(&job).await.expect("tasks");
    for (i, t) in tasks.iter().enumerate() {
        if shape == Shape::Deploying && i > 0 {
            break;
        }
        store
            .move_task(
                &t.id,
                task_move(TaskState::Pending, TaskState::Dispatched).new_attempt(),
            )
            .await
            .expect("task")
            .expect("pending");
        if shape == Shape::Deploying {
            break;
        }
        let fails = i == 0 && matches!(shape, Shape::Failed | Shape::RolledBack);
        let result = TaskResultRow {
            exit_code: Some(if fails { 1 } else { 0 }),
            error: fails.then_some("health check failed: GET /health answered 503 three times"),
            error_type: fails.then_some(ErrorKind::Health),
        };
        let to = if fails {
            TaskState::Failed
        } else {
            TaskState::Succeeded
        };
        store
            .move_task(
                &t.id,
                task_move(TaskState::Dispatched, to).with_result(result),
            )
            .await
            .expect("task")
            .expect("dispatched");
        if fails {
            store
                .append_logs(
                    &t.id,
                    1,
                    &[
                        (LogStream::System, "pulling image".into()),
                        (
                            LogStream::Stderr,
                            "health check: 503 Service Unavailable".into(),
                        ),
                    ],
                )
                .await
                .expect("logs");
        }
    }
    let detail = Some("1 task failed; the strategy tolerates 0");
    match shape {
        Shape::Deploying => {}
        Shape::Failed => {
            jm(
                JobState::Running,
                JobState::Failed,
                detail,
                Some(FailureKind::TasksFailed),
            )
            .await
        }
        Shape::RolledBack => {
            jm(
                JobState::Running,
                JobState::RollingBack,
                detail,
                Some(FailureKind::TasksFailed),
            )
            .await
        }
        _ => jm(JobState::Running, JobState::Completed, None, None).await,
    }
    job
}

/// The newest promotion: a billing release into prod with four approvals,
/// a manual gate and six gate results; its job deploys both components to
/// the 100 prod targets (200 tasks, in ten batches, 60 log lines each).
async fn featured(store: &Store) -> (String, String, String) {
    let components: Vec<ReleaseComponent> = APPS[1]
        .1
        .iter()
        .enumerate()
        .map(|(j, c)| ReleaseComponent {
            component: format!("billing-{c}"),
            image: format!("registry.example/billing/{c}@{}", digest(99_000 + j)),
            digest: digest(99_000 + j),
            tag: Some("2.0.0".into()),
        })
        .collect();
    let r = store
        .create_release(TENANT, "billing-2.0.0", &components, "alice", true)
        .await
        .expect("release")
        .expect("new");
    let release = Made {
        id: r.id.clone(),
        name: r.name.clone(),
        components,
    };
    let strategy = strategy();
    let p = store
        .create_promotion(&NewPromotion {
            tenant: TENANT,
            release_id: &release.id,
            environment: "prod",
            requested_by: "alice",
            strategy: &strategy,
            reason: Some("quarterly billing change, CAB-1234"),
            traceparent: None,
        })
        .await
        .expect("promotion");
    store
        .move_promotion(
            &p.id,
            PromotionState::Requested,
            PromotionState::AwaitingApproval,
            "sextant",
            Some("waiting for 0/2 approvals; change-window: closed"),
            None,
        )
        .await
        .expect("move");
    store
        .set_manual_gate(&p.id, "change-window", true, "dave", Some("CAB approved"))
        .await
        .expect("gate");
    for a in ["bob", "carol", "dave", "erin"] {
        store
            .add_approval(&p.id, a, true, Some("reviewed the migration plan"))
            .await
            .expect("approval");
    }
    store
        .move_promotion(
            &p.id,
            PromotionState::AwaitingApproval,
            PromotionState::Approved,
            "sextant",
            Some("gates and approvals passed"),
            None,
        )
        .await
        .expect("move");
    let gates: Vec<Value> = [
        "freeze",
        "soak",
        "previous-environment",
        "change-window",
        "error-budget",
        "drift",
    ]
    .iter()
    .map(|g| json!({"gate": g, "decision": "allow", "reason": format!("{g}: passed")}))
    .collect();
    store
        .write_decision(
            &p.id,
            "approved",
            &json!({"release": release.name, "environment": "prod", "gates": gates, "required_approvals": 2}),
        )
        .await
        .expect("decision");
    let plan: Vec<NewTask> = (1..=WIDE_TARGETS)
        .flat_map(|t| {
            let release = &release;
            release.components.iter().map(move |c| NewTask {
                batch: ((t - 1) / 10) as i64,
                kind: TaskKind::Deploy,
                release_id: release.id.clone(),
                target: format!("prod-{t:03}"),
                component: c.component.clone(),
                image: c.image.clone(),
                digest: c.digest.clone(),
                previous_digest: Some(digest(t)),
                slot: None,
                max_attempts: 2,
                timeout_ms: 600_000,
            })
        })
        .collect();
    let job = run_job(
        store,
        &p.id,
        &release,
        "prod",
        JobKind::Deploy,
        None,
        plan,
        Shape::Deployed,
    )
    .await;
    for t in store.tasks(&job).await.expect("tasks") {
        let lines: Vec<(LogStream, String)> = (0..LOG_LINES)
            .map(|i| {
                (
                    if i % 7 == 0 {
                        LogStream::Stderr
                    } else {
                        LogStream::Stdout
                    },
                    format!(
                        "{} {}: step {i} of {LOG_LINES}: pulled layer sha256:{i:032x}, 12.3 MiB",
                        t.target, t.component
                    ),
                )
            })
            .collect();
        store.append_logs(&t.id, 1, &lines).await.expect("logs");
    }
    store
        .move_promotion(
            &p.id,
            PromotionState::Deploying,
            PromotionState::Deployed,
            "sextant",
            Some("job completed"),
            None,
        )
        .await
        .expect("move");
    (p.id, job, release.id)
}

/// 1,000 agents: 900 with an open session on another replica (online while
/// their heartbeat is recent), 100 revoked.
async fn agents(store: &Store) {
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..WRITERS {
        let store = store.clone();
        lanes.spawn(async move {
            for i in (lane..AGENTS).step_by(WRITERS) {
                let id = format!("00000000-0000-4000-8000-{i:012}");
                let hash = format!("{:064x}", i + 1);
                let labels = BTreeMap::from([
                    ("pool".to_owned(), format!("p{}", i % 10)),
                    ("zone".to_owned(), format!("z{}", i % 3)),
                    ("os".to_owned(), "linux".to_owned()),
                ]);
                let capabilities = vec!["docker".to_owned(), "compose".to_owned()];
                let info = AgentInfo {
                    name: &format!("agent-{i:04}"),
                    version: "0.9.0",
                    capabilities: &capabilities,
                    labels: &labels,
                };
                store
                    .create_agent_token(TENANT, "alice", &hash, i64::MAX / 2)
                    .await
                    .expect("token");
                store
                    .register_agent(&hash, &id, &hash, &info)
                    .await
                    .expect("register")
                    .expect("a fresh token");
                store
                    .open_agent_session(&id, &format!("session-{i}"), "elsewhere", &info, &[])
                    .await
                    .expect("session");
                if i % (AGENTS / REVOKED) == 0 {
                    assert!(store.revoke_agent(TENANT, &id).await.expect("revoke"));
                }
            }
        });
    }
    while let Some(r) = lanes.join_next().await {
        r.expect("a lane");
    }
}

fn hub_token(token: &str, subject: &str, scope: &str) -> HubToken {
    HubToken {
        token: Secret::new(token),
        tenant: TENANT.into(),
        subject: Some(subject.into()),
        scopes: vec![serde_json::from_value(json!(scope)).expect("scope")],
    }
}

/// What a page's answer must show.
type Check = Box<dyn Fn(&str) -> Result<(), String>>;

/// A page to time, and what its answer must show.
struct Probe {
    name: String,
    url: String,
    check: Check,
}

fn count(body: &str, needle: &str) -> usize {
    body.matches(needle).count()
}

/// `needle` appears exactly `n` times.
fn exactly(needle: &'static str, n: usize) -> Check {
    Box::new(move |body| {
        let c = count(body, needle);
        if c == n {
            Ok(())
        } else {
            Err(format!("{c} × {needle:?}, not {n}"))
        }
    })
}

fn all(checks: Vec<Check>) -> Check {
    Box::new(move |body| checks.iter().try_for_each(|c| c(body)))
}

fn contains(text: String) -> Check {
    Box::new(move |body| {
        if body.contains(&text) {
            Ok(())
        } else {
            Err(format!("no {text:?}"))
        }
    })
}

struct Timing {
    name: String,
    ms: Vec<f64>,
    bytes: usize,
}

impl Timing {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.ms.len() as f64 * p).ceil() as usize).clamp(1, self.ms.len()) - 1;
        self.ms[i]
    }
}

async fn time(http: &reqwest::Client, probe: &Probe, n: usize) -> Timing {
    let get = || async {
        let started = Instant::now();
        let res = http
            .get(&probe.url)
            .bearer_auth(ALICE)
            .send()
            .await
            .expect("an answer");
        let status = res.status().as_u16();
        let body = res.text().await.expect("a body");
        (started.elapsed(), status, body)
    };
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n + 3 {
        let (took, status, body) = get().await;
        assert_eq!(
            status,
            200,
            "{}: {status}: {}",
            probe.name,
            &body[..body.len().min(2000)]
        );
        if let Err(why) = (probe.check)(&body) {
            panic!("{}: the page does not show what it must: {why}", probe.name);
        }
        bytes = body.len();
        if i >= 3 {
            ms.push(took.as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    Timing {
        name: probe.name.clone(),
        ms,
        bytes,
    }
}

/// `GET` of the orchestrator's API as alice, as JSON.
async fn api(http: &reqwest::Client, orchestrator: &str, path: &str) -> Value {
    let res = http
        .get(format!("{orchestrator}{path}"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("the orchestrator answers");
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res.json().await.expect("JSON")
}

/// The id at `index` (newest first) of a paged list.
async fn deep_id(http: &reqwest::Client, orchestrator: &str, list: &str, index: usize) -> String {
    let mut before: Option<String> = None;
    let mut seen = 0;
    loop {
        let cursor = before
            .as_deref()
            .map(|b| format!("&before={b}"))
            .unwrap_or_default();
        let page = api(http, orchestrator, &format!("{list}?limit=1000{cursor}")).await;
        let rows = page.as_array().expect("a list");
        assert!(!rows.is_empty(), "{list} has fewer than {index} rows");
        if index < seen + rows.len() {
            return rows[index - seen]["id"].as_str().expect("id").to_owned();
        }
        seen += rows.len();
        before = rows
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned);
    }
}

/// Hosts per (application, environment) in the hub's estate.
const HOSTS: [(&str, usize); 4] = [("dev", 5), ("qa", 10), ("stage", 40), ("prod", 150)];

/// The hub's estate, sent over OTLP/HTTP as hosts and the orchestrator
/// would: per application, environment and component one target with a
/// desired revision, and its hosts reporting it: most on it and succeeded,
/// one in ten on another revision (drift), one in twenty failed. 14
/// components × 205 hosts: 2,870 current rows; the widest application
/// (`platform`, six components) has 1,230 of them.
async fn estate(http: &reqwest::Client, otlp: &str) -> usize {
    let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut records = Vec::new();
    for (app, components) in APPS {
        for (env, hosts) in HOSTS {
            for (c, component) in components.iter().enumerate() {
                let target = format!("{env}-{app}");
                let place = |extra: Vec<Value>| {
                    let mut attrs = vec![
                        kv("sextant.application", app),
                        kv("sextant.workload", component),
                        kv("deployment.environment.name", env),
                        kv("sextant.target", &target),
                    ];
                    attrs.extend(extra);
                    attrs
                };
                let desired = digest(c + 1);
                records.push(json!({"eventName": "sextant.deployment.desired", "timeUnixNano": now.to_string(),
                    "attributes": place(vec![kv("service.version", "1.0.0"), kv("sextant.revision", &desired)])}));
                for h in 0..hosts {
                    let (revision, status) = match h % 20 {
                        0 => (desired.clone(), "failed"),
                        1 | 11 => (digest(c + 500), "succeeded"),
                        _ => (desired.clone(), "succeeded"),
                    };
                    records.push(json!({"eventName": "sextant.deployment.observed", "timeUnixNano": (now + 1).to_string(),
                        "attributes": place(vec![kv("host.name", &format!("{env}-{app}-{h}")),
                            kv("sextant.revision", &revision), kv("deployment.status", status)])}));
                }
            }
        }
    }
    let observed = records.len();
    for batch in records.chunks(1000) {
        let body = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": batch}]}]});
        let res = http
            .post(format!("{otlp}/v1/logs"))
            .bearer_auth(INGEST)
            .json(&body)
            .send()
            .await
            .expect("the hub takes OTLP");
        assert_eq!(res.status().as_u16(), 200, "{:?}", res.text().await);
    }
    observed
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backend_name = match args.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    println!(
        "# ui_pages: {backend_name}, {} requests per page",
        args.requests
    );
    let hub_db = TestDb::new(args.backend).await;
    let orchestrator_db = TestDb::new(args.backend).await;
    let data = tempfile::tempdir().expect("data dir");

    let started = Instant::now();
    let store = Store::open(&orchestrator_db.url).await.expect("store");
    let featured = fill(&store).await;
    drop(store);
    let setup = started.elapsed();
    println!(
        "  filled in {:.1} s: {RELEASES} releases (+1), 10,000 promotions (+1), {AGENTS} agents",
        setup.as_secs_f64()
    );

    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = HubConfig {
        otlp_grpc_addr: any,
        otlp_http_addr: any,
        api_addr: any,
        database_url: Some(hub_db.url.clone()),
        environments: ENVIRONMENTS.iter().map(|(e, _, _)| (*e).into()).collect(),
        tokens: vec![
            hub_token(ALICE, "alice", "read"),
            hub_token(INGEST, "orchestrator", "ingest"),
        ],
        ..HubConfig::default()
    };
    let mut hub_app = Application::build(&config).await.expect("hub builds");
    let hub = format!("http://{}", hub_app.api_addr());
    let hub_otlp = format!("http://{}", hub_app.otlp_http_addr());
    let runtime = RuntimeConfig {
        listeners: Default::default(),
        metrics_require_token: false,
        links: Default::default(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: orchestrator_db.url.clone(),
        data_dir: data.path().to_owned(),
        hub_api: Some(hub.clone()),
        hub_otlp: Some(hub_otlp.clone()),
        hub_token: Some(INGEST.into()),
        tokens: vec![OrchestratorToken {
            scopes: vec![OrchestratorScope::Deploy],
            ..OrchestratorToken::admin(ALICE, TENANT, "alice")
        }],
        insecure_registries: Vec::new(),
        agent_listen: Some("127.0.0.1:0".parse().expect("addr")),
        agent_tls: Default::default(),
        // The agents' sessions were opened while filling: an hour's
        // heartbeat keeps them online through the run.
        agent_heartbeat: Duration::from_secs(3600),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings {
            replica: "ui-bench".into(),
            poll: args.poll,
            ..Settings::default()
        },
    };
    let cancel = CancellationToken::new();
    let running = app::start(runtime, Arc::new(SshExecutor::new()), cancel.clone())
        .await
        .expect("orchestrator starts");
    let orchestrator = format!("http://{}", running.addr);
    hub_app.link_orchestrator(&orchestrator);
    let hub_cancel = CancellationToken::new();
    let hub_task = tokio::spawn(hub_app.run_until_stopped(hub_cancel.clone()));

    let http = reqwest::Client::new();
    let sent = estate(&http, &hub_otlp).await;
    println!("  the hub's estate: {sent} records over OTLP");
    let deep_release = deep_id(&http, &orchestrator, "/api/v1/releases", 850).await;
    let deep_promotion = deep_id(&http, &orchestrator, "/api/v1/promotions", 9_500).await;
    let rows = |n| exactly("data-promotion=\"", n);
    let probes = vec![
        Probe {
            name: "hub /health/live (reference)".into(),
            url: format!("{hub}/health/live"),
            check: Box::new(|_| Ok(())),
        },
        Probe {
            name: "API GET /api/v1/promotions?limit=100 (reference)".into(),
            url: format!("{orchestrator}/api/v1/promotions?limit=100"),
            check: exactly("\"release_id\"", 100),
        },
        Probe {
            name: "/pipeline".into(),
            url: format!("{hub}/pipeline"),
            check: all(vec![
                exactly("<td class=\"stage\"", APPS.len() * ENVIRONMENTS.len()),
                exactly("nothing promoted", 0),
                exactly("class=\"drifting\"", APPS.len() * ENVIRONMENTS.len()),
            ]),
        },
        Probe {
            name: "/releases".into(),
            url: format!("{hub}/releases"),
            check: all(vec![
                exactly("href=\"/releases/", 100),
                contains("Older".into()),
            ]),
        },
        Probe {
            name: "/releases?before=<851st>".into(),
            url: format!("{hub}/releases?before={deep_release}"),
            check: exactly("href=\"/releases/", 100),
        },
        Probe {
            name: "/releases/{id}".into(),
            url: format!("{hub}/releases/{}", featured.release),
            check: all(vec![
                contains("Release billing-2.0.0".into()),
                exactly("<td>billing-", 2),
            ]),
        },
        Probe {
            name: "/promotions".into(),
            url: format!("{hub}/promotions"),
            check: rows(100),
        },
        Probe {
            name: "/promotions?state=failed".into(),
            url: format!("{hub}/promotions?state=failed"),
            check: all(vec![rows(100), exactly("data-state=\"failed\"", 100)]),
        },
        Probe {
            name: "/promotions?before=<9,501st>".into(),
            url: format!("{hub}/promotions?before={deep_promotion}"),
            check: rows(100),
        },
        Probe {
            name: "/promotions/{id} (4 approvals, 6 gates)".into(),
            url: format!("{hub}/promotions/{}", featured.promotion),
            check: all(vec![
                contains("4 of 2 needed".into()),
                exactly("<span class=\"actor\">", 5),
                exactly("data-state=\"allow\"", 6),
            ]),
        },
        Probe {
            name: format!("/inbox ({} awaiting)", featured.awaiting),
            url: format!("{hub}/inbox"),
            check: rows(featured.awaiting),
        },
        Probe {
            name: "/jobs".into(),
            url: format!("{hub}/jobs"),
            check: exactly("data-job=\"", 100),
        },
        Probe {
            name: "/jobs/{id} (200 tasks, logs)".into(),
            url: format!("{hub}/jobs/{}", featured.wide_job),
            check: all(vec![
                exactly("data-task=\"", 2 * WIDE_TARGETS),
                exactly("<pre class=\"log\">", 24),
            ]),
        },
        Probe {
            name: format!("/agents ({AGENTS})"),
            url: format!("{hub}/agents"),
            check: all(vec![
                exactly("data-agent=\"", AGENTS),
                exactly("data-state=\"online\"", AGENTS - REVOKED),
                exactly("data-state=\"revoked\"", REVOKED),
            ]),
        },
    ];
    let mut timings = Vec::new();
    for probe in &probes {
        let t = time(&http, probe, args.requests).await;
        println!(
            "  {:<48} p50 {:>7.1} ms  p99 {:>7.1} ms",
            t.name,
            t.pct(0.5),
            t.pct(0.99)
        );
        timings.push(t);
    }
    let reference = timings[1].pct(0.5);
    println!();
    println!("| page | p50 ms | p95 ms | p99 ms | max ms | p50 ÷ API p50 | KiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for t in &timings {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}× | {} |",
            t.name,
            t.pct(0.5),
            t.pct(0.95),
            t.pct(0.99),
            t.ms[t.ms.len() - 1],
            t.pct(0.5) / reference,
            t.bytes / 1024
        );
    }
    let json_pages: Vec<Value> = timings
        .iter()
        .map(|t| {
            json!({"page": t.name, "p50_ms": t.pct(0.5), "p95_ms": t.pct(0.95),
                "p99_ms": t.pct(0.99), "max_ms": t.ms[t.ms.len() - 1], "bytes": t.bytes})
        })
        .collect();
    println!(
        "{}",
        json!({"bench": "ui_pages", "backend": backend_name, "requests": args.requests,
            "setup_s": setup.as_secs_f64(), "pages": json_pages})
    );
    let slow: Vec<&str> = timings
        .iter()
        .filter(|t| t.pct(0.99) > 200.0)
        .map(|t| t.name.as_str())
        .collect();
    if !slow.is_empty() {
        println!("over 200 ms at p99: {}", slow.join(", "));
    }

    cancel.cancel();
    let _ = running.wait().await;
    hub_cancel.cancel();
    let _ = hub_task.await;
}
