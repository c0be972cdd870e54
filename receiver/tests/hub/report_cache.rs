//! The report cache (`api/cache.rs`) behind environment state and compare:
//! a read after any change that alters them shows the change, whichever hub
//! replica wrote it; heartbeats leave the change mark alone, so reads after
//! them are served from the cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sextant_receiver::store::{ChangeMark, HubStore};
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, desired, logs, observed, on_both_backends, spawn_app};

const S: u64 = 1_000_000_000;
const STAGE: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");
const PROD: (&str, &str, &str, &str) = ("shop", "checkout", "prod", "eu");
const STATE: &str = "/api/v1/environments/stage/state";
const COMPARE: &str = "/api/v1/compare?environments=stage,prod";

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

/// A second hub on the same database, as another replica would be.
struct Replica {
    http: SocketAddr,
    client: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sextant_receiver::app::AppError>>,
}

impl Replica {
    async fn start(url: &str) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = HubConfig {
            otlp_grpc_addr: any,
            otlp_http_addr: any,
            api_addr: any,
            database_url: Some(url.to_owned()),
            ..HubConfig::default()
        };
        let app = Application::build(&config).await.expect("replica builds");
        let http = app.otlp_http_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            http,
            client: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    async fn send_logs(&self, body: &Value) {
        let res = self
            .client
            .post(format!("http://{}/v1/logs", self.http))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("OTLP/HTTP request");
        assert_eq!(res.status(), 200);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("replica task")
            .expect("replica stops");
    }
}

/// How many environment-state and compare requests the cache served, by
/// result (`hit`, `miss`, `uncached`).
async fn cache_count(app: &TestApp, result: &str) -> u64 {
    let (_, metrics) = app.get("/metrics", None).await;
    let metrics = metrics.as_str().expect("metrics text").to_owned();
    let prefix = format!("sextant_api_report_cache_requests_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("counter"))
}

/// Reads stage's state and the stage/prod comparison twice: the second read
/// of each must come from the cache, and both must be the same. Returns
/// stage's checkout target and compare's checkout row.
async fn read_twice(app: &TestApp) -> (Value, Value) {
    let mut first = Vec::new();
    for path in [STATE, COMPARE] {
        let (code, body) = app.get(path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
        first.push(body);
    }
    let hits = cache_count(app, "hit").await;
    for (path, expected) in [STATE, COMPARE].into_iter().zip(&first) {
        let (code, body) = app.get(path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(&body, expected, "{path}: a cached read differs");
    }
    assert_eq!(
        cache_count(app, "hit").await,
        hits + 2,
        "unchanged reports come from the cache"
    );
    let compare = first.pop().expect("compare");
    let state = first.pop().expect("state");
    let target = state
        .as_array()
        .expect("rows")
        .iter()
        .find(|t| t["workload"] == "checkout" && t["target"] == "eu")
        .cloned()
        .unwrap_or(Value::Null);
    let row = compare["workloads"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|w| w["workload"] == "checkout")
        .cloned()
        .unwrap_or(Value::Null);
    (target, row)
}

/// Deployed groups of a target as (revision, status, hosts), sorted.
fn groups(target: &Value) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = target["deployed"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .map(|g| {
                    (
                        g["revision"].as_str().unwrap_or_default().to_owned(),
                        g["status"].as_str().unwrap_or_default().to_owned(),
                        g["hosts"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn group(revision: &str, status: &str, hosts: u64) -> (String, String, u64) {
    (revision.to_owned(), status.to_owned(), hosts)
}

async fn store_of(app: &TestApp) -> Arc<dyn HubStore> {
    sextant_receiver::store::open(&app.db.url)
        .await
        .expect("store opens")
}

async fn mark(store: &Arc<dyn HubStore>) -> ChangeMark {
    store
        .change_mark("default")
        .await
        .expect("mark")
        .expect("tenant exists")
}

async fn every_change_shows_and_heartbeats_do_not_move_the_mark(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = store_of(&app).await;
    let t0 = now() - 3600 * S;
    app.send_logs(&logs(vec![
        desired(STAGE, "1.0", "r1", t0),
        desired(PROD, "1.0", "r1", t0),
        observed("h1", STAGE, "r1", "succeeded", t0 + S),
        observed("h2", STAGE, "r1", "succeeded", t0 + S),
        observed("p1", PROD, "r1", "succeeded", t0 + S),
    ]))
    .await;
    let (target, row) = read_twice(&app).await;
    assert_eq!(target["desired"]["version"], "1.0");
    assert_eq!(groups(&target), [group("r1", "succeeded", 2)]);
    assert_eq!(row["differs"], false, "{row}");

    // A heartbeat-only batch: later time, same content. The mark stays, so
    // the next reads are hits (read_twice counts them).
    let before = mark(&store).await;
    app.send_logs(&logs(vec![
        observed("h1", STAGE, "r1", "succeeded", t0 + 30 * S),
        observed("h2", STAGE, "r1", "succeeded", t0 + 30 * S),
        observed("p1", PROD, "r1", "succeeded", t0 + 30 * S),
    ]))
    .await;
    assert_eq!(mark(&store).await, before, "a heartbeat moved the mark");
    let hits = cache_count(&app, "hit").await;
    let (code, _) = app.get(STATE, None).await;
    assert_eq!(code, 200);
    assert_eq!(cache_count(&app, "hit").await, hits + 1);

    // A new desired version.
    app.send_logs(&logs(vec![desired(STAGE, "1.1", "r2", t0 + 40 * S)]))
        .await;
    let (target, row) = read_twice(&app).await;
    assert_eq!(target["desired"]["version"], "1.1");
    assert_eq!(target["in_sync_hosts"], 0);
    assert_eq!(row["differs"], true, "{row}");
    assert_eq!(row["environments"]["stage"]["desired_versions"][0], "1.1");

    // A revision change.
    app.send_logs(&logs(vec![observed(
        "h1",
        STAGE,
        "r2",
        "in_progress",
        t0 + 50 * S,
    )]))
    .await;
    let (target, _) = read_twice(&app).await;
    assert_eq!(
        groups(&target),
        [group("r1", "succeeded", 1), group("r2", "in_progress", 1)]
    );

    // A status change.
    app.send_logs(&logs(vec![observed(
        "h1",
        STAGE,
        "r2",
        "succeeded",
        t0 + 60 * S,
    )]))
    .await;
    let (target, row) = read_twice(&app).await;
    assert_eq!(
        groups(&target),
        [group("r1", "succeeded", 1), group("r2", "succeeded", 1)]
    );
    assert_eq!(target["in_sync_hosts"], 1);
    assert_eq!(
        row["environments"]["stage"]["deployed_versions"],
        serde_json::json!(["1.0", "1.1"])
    );

    // Through a second hub on the same database: a status change, a new
    // host, a new target and a desired version in prod, each read back
    // through the first hub.
    let replica = Replica::start(&app.db.url).await;
    replica
        .send_logs(&logs(vec![observed(
            "h2",
            STAGE,
            "r1",
            "failed",
            t0 + 70 * S,
        )]))
        .await;
    let (target, _) = read_twice(&app).await;
    assert_eq!(
        groups(&target),
        [group("r1", "failed", 1), group("r2", "succeeded", 1)]
    );
    replica
        .send_logs(&logs(vec![observed(
            "h3",
            STAGE,
            "r2",
            "succeeded",
            t0 + 80 * S,
        )]))
        .await;
    let (target, _) = read_twice(&app).await;
    assert_eq!(
        groups(&target),
        [group("r1", "failed", 1), group("r2", "succeeded", 2)]
    );
    replica
        .send_logs(&logs(vec![observed(
            "h4",
            ("shop", "checkout", "stage", "us"),
            "r2",
            "succeeded",
            t0 + 90 * S,
        )]))
        .await;
    let (code, state) = app.get(STATE, None).await;
    assert_eq!(code, 200);
    let targets: Vec<&str> = state
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(targets, ["eu", "us"], "{state}");
    replica
        .send_logs(&logs(vec![desired(PROD, "1.1", "r2", t0 + 100 * S)]))
        .await;
    let (_, row) = read_twice(&app).await;
    assert_eq!(row["environments"]["prod"]["desired_versions"][0], "1.1");
    replica.stop().await;
    app.stop().await;
}

/// On PostgreSQL a mark is settled only when no writer of the tenant holds
/// ids it has not committed (`store/mark.rs`): while one does, reports are
/// served uncached, and once it commits, its rows move the mark.
async fn reports_are_not_cached_under_a_mark_writes_may_land_below(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = store_of(&app).await;
    let t0 = now() - 3600 * S;
    app.send_logs(&logs(vec![
        desired(STAGE, "1.0", "r1", t0),
        desired(PROD, "1.0", "r1", t0),
        observed("h1", STAGE, "r1", "succeeded", t0 + S),
    ]))
    .await;
    assert!(
        store
            .settled_change_mark("default")
            .await
            .expect("mark")
            .is_some()
    );
    assert_eq!(
        store.settled_change_mark("nobody").await.expect("mark"),
        None
    );
    if backend == Backend::Postgres {
        // A writer in flight: it holds the tenant's lock (as ingest does
        // before its history rows) and has taken an id.
        let pool = sqlx::PgPool::connect(&app.db.url).await.expect("db");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT pg_advisory_xact_lock_shared(1398297677, id::int) FROM tenants")
            .execute(&mut *tx)
            .await
            .expect("lock");
        sqlx::query(
            "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, \
               revision, status, message, observed_at, received_at) \
             SELECT tenant_id, host_id, reconciler_id, target_id, 'r9', 'failed', NULL, \
               observed_at + 1, observed_at + 1 FROM observed_deployments",
        )
        .execute(&mut *tx)
        .await
        .expect("insert");
        let settled = store.settled_change_mark("default").await.expect("mark");
        assert_eq!(settled, None, "a mark read with a writer in flight");
        let uncached = cache_count(&app, "uncached").await;
        let (code, _) = app.get(COMPARE, None).await;
        assert_eq!(code, 200);
        assert_eq!(cache_count(&app, "uncached").await, uncached + 1);
        let before = mark(&store).await;
        tx.commit().await.expect("commit");
        assert_ne!(
            mark(&store).await,
            before,
            "the writer's commit moved the mark"
        );
        pool.close().await;
    }
    let (code, _) = app.get(COMPARE, None).await;
    assert_eq!(code, 200);
    let hits = cache_count(&app, "hit").await;
    let (code, _) = app.get(COMPARE, None).await;
    assert_eq!(code, 200);
    assert_eq!(cache_count(&app, "hit").await, hits + 1);
    app.stop().await;
}

on_both_backends!(
    every_change_shows_and_heartbeats_do_not_move_the_mark,
    reports_are_not_cached_under_a_mark_writes_may_land_below,
);
