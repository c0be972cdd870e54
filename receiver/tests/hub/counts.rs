//! The host counters behind environment state, compare and history
//! (migration 0003) and the per-reconciler ones behind environment state's
//! sources (0006/0007) stay equal to a count of current rows through
//! inserts, status changes, heartbeats, replays, stale reports and
//! concurrent batches.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{Backend, TestApp, desired, logs, observed, on_both_backends, spawn_app};
use crate::sources::by;

/// Host `h`'s record as its reconciler sends it: a third name none, a third
/// Flux, a third Argo CD.
fn from_reconciler(h: usize, record: Value) -> Value {
    match h % 3 {
        0 => record,
        1 => by(record, "flux-system", "flux"),
        _ => by(record, "argocd-prod", "argocd"),
    }
}

const S: u64 = 1_000_000_000;
const HOSTS: usize = 48;
const ROUNDS: u64 = 6;
const REVISIONS: [&str; 3] = ["r1", "r2", "r3"];
const STATUSES: [&str; 3] = ["succeeded", "in_progress", "failed"];
const WORKLOADS: [&str; 2] = ["checkout", "cart"];

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

/// A small deterministic generator, so a failure replays the same way.
struct Lcg(u64);

impl Lcg {
    fn pick(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).expect("fits") % n
    }
}

type Expected = BTreeMap<(String, String, String), u64>;

async fn counters_follow_every_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = now() - 3600 * S;
    let mut rng = Lcg(7);
    // (workload, host) → (revision, status) as last sent.
    let mut last: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
    for round in 0..ROUNDS {
        let t = start + round * 60 * S;
        let mut records = Vec::new();
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for h in 0..HOSTS {
                let at = ("shop", *workload, "stage", "eu");
                let host = format!("h{h:02}");
                let (rev, status) = match last.get(&(w, h)) {
                    // Some hosts only send a heartbeat: same state, later time.
                    Some(&prev) if rng.pick(3) == 0 => prev,
                    _ => (rng.pick(REVISIONS.len()), rng.pick(STATUSES.len())),
                };
                // Round 0 leaves some hosts out, so later rounds insert too.
                if round == 0 && h % 5 == 0 {
                    continue;
                }
                last.insert((w, h), (rev, status));
                records.push(from_reconciler(
                    h,
                    observed(&host, at, REVISIONS[rev], STATUSES[status], t),
                ));
                // A report older than what the hub holds changes nothing.
                if round > 0 && h % 7 == 0 {
                    let stale = (rng.pick(REVISIONS.len()), rng.pick(STATUSES.len()));
                    records.push(from_reconciler(
                        h,
                        observed(&host, at, REVISIONS[stale.0], STATUSES[stale.1], t - 30 * S),
                    ));
                }
            }
        }
        // Shuffled into four batches sent at once: on PostgreSQL their
        // transactions update the same counters concurrently.
        let mut batches: Vec<Vec<Value>> = vec![Vec::new(); 4];
        for record in records {
            batches[rng.pick(4)].push(record);
        }
        let sends = batches.iter().map(|b| logs(b.clone())).collect::<Vec<_>>();
        futures::future::join_all(sends.iter().map(|body| app.send_logs(body))).await;
        // A replay of a whole batch is idempotent.
        if round == 2 {
            app.send_logs(&sends[0]).await;
        }
    }
    app.send_logs(&logs(vec![desired(
        ("shop", "checkout", "stage", "eu"),
        "1.2",
        "r2",
        start + ROUNDS * 60 * S,
    )]))
    .await;

    let mut expected: BTreeMap<&str, Expected> = BTreeMap::new();
    for (&(w, _), &(rev, status)) in &last {
        *expected
            .entry(WORKLOADS[w])
            .or_default()
            .entry((
                WORKLOADS[w].to_owned(),
                REVISIONS[rev].to_owned(),
                STATUSES[status].to_owned(),
            ))
            .or_default() += 1;
    }

    let (code, state) = app.get("/api/v1/environments/stage/state", None).await;
    assert_eq!(code, 200, "{state}");
    let mut reported: BTreeMap<&str, Expected> = BTreeMap::new();
    for row in state.as_array().expect("rows") {
        let workload = row["workload"].as_str().expect("workload");
        let workload = WORKLOADS
            .iter()
            .find(|w| **w == workload)
            .expect("known workload");
        for g in row["deployed"].as_array().expect("groups") {
            reported.entry(workload).or_default().insert(
                (
                    (*workload).to_owned(),
                    g["revision"].as_str().expect("revision").to_owned(),
                    g["status"].as_str().expect("status").to_owned(),
                ),
                g["hosts"].as_u64().expect("hosts"),
            );
        }
    }
    assert_eq!(reported, expected);

    // Who reports each target: every host once, by its reconciler.
    for row in state.as_array().expect("rows") {
        let workload = row["workload"].as_str().expect("workload");
        let w = WORKLOADS
            .iter()
            .position(|x| *x == workload)
            .expect("known");
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for &(lw, h) in last.keys() {
            if lw == w {
                let source = ["otlp", "flux", "argocd"][h % 3];
                *want.entry(source.to_owned()).or_default() += 1;
            }
        }
        let got: BTreeMap<String, u64> = row["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .map(|s| {
                (
                    s["source"].as_str().expect("source").to_owned(),
                    s["hosts"].as_u64().expect("hosts"),
                )
            })
            .collect();
        assert_eq!(got, want, "{workload}: {row}");
    }

    // The desired row of history counts r2's hosts of checkout by status.
    let (code, history) = app
        .get("/api/v1/history?workload=checkout&limit=1", None)
        .await;
    assert_eq!(code, 200, "{history}");
    let hosts = |status: &str| {
        expected["checkout"]
            .get(&("checkout".into(), "r2".into(), status.into()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        history["items"][0]["hosts"],
        json!({"succeeded": hosts("succeeded"), "failed": hosts("failed"), "in_progress": hosts("in_progress")}),
        "{history}"
    );

    assert_counters_match_rows(&app).await;
    app.stop().await;
}

/// Reads the database directly: every counter equals a count of current
/// rows, and none went negative (the API hides counters at zero or below).
async fn assert_counters_match_rows(app: &TestApp) {
    const COUNTED: &str = "SELECT target_id, revision, status, COUNT(*) AS n \
        FROM observed_deployments GROUP BY target_id, revision, status \
        ORDER BY target_id, revision, status";
    const COUNTERS: &str = "SELECT target_id, revision, status, hosts AS n \
        FROM deployed_counts WHERE hosts <> 0 ORDER BY target_id, revision, status";
    // The same rows read through either driver.
    macro_rules! read_both {
        ($pool:expr) => {{
            let pool = $pool.await.expect("db");
            let mut out = Vec::new();
            for sql in [COUNTED, COUNTERS] {
                let rows: Vec<(i64, String, String, i64)> = sqlx::query(sql)
                    .fetch_all(&pool)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| (r.get::<i64, _>(0), r.get(1), r.get(2), r.get::<i64, _>(3)))
                    .collect();
                out.push(rows);
            }
            let counters = out.pop().expect("counters");
            (out.pop().expect("counted"), counters)
        }};
    }
    let (counted, counters) = if app.db.url.starts_with("sqlite") {
        read_both!(sqlx::SqlitePool::connect(&app.db.url))
    } else {
        read_both!(sqlx::PgPool::connect(&app.db.url))
    };
    assert!(!counted.is_empty());
    assert_eq!(counters, counted);

    const REPORTERS_COUNTED: &str = "SELECT target_id, reconciler_id, COUNT(*) AS n \
        FROM observed_deployments GROUP BY target_id, reconciler_id \
        ORDER BY target_id, reconciler_id";
    const REPORTERS: &str = "SELECT target_id, reconciler_id, hosts AS n \
        FROM reporter_counts WHERE hosts <> 0 ORDER BY target_id, reconciler_id";
    macro_rules! read_reporters {
        ($pool:expr) => {{
            let pool = $pool.await.expect("db");
            let mut out = Vec::new();
            for sql in [REPORTERS_COUNTED, REPORTERS] {
                let rows: Vec<(i64, i64, i64)> = sqlx::query(sql)
                    .fetch_all(&pool)
                    .await
                    .expect("query")
                    .iter()
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
                    .collect();
                out.push(rows);
            }
            out
        }};
    }
    let reporters = if app.db.url.starts_with("sqlite") {
        read_reporters!(sqlx::SqlitePool::connect(&app.db.url))
    } else {
        read_reporters!(sqlx::PgPool::connect(&app.db.url))
    };
    assert!(reporters[0].len() > 2, "several reconcilers: {reporters:?}");
    assert_eq!(reporters[1], reporters[0]);
}

on_both_backends!(counters_follow_every_change);
