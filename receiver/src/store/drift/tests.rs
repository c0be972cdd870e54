//! The drift set against the rules it stands for, and the cost of drift
//! reads against what they return.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sextant_e2e::{Backend, TestDb};
use sextant_model::{
    DeploymentEvent, DeploymentStatus, DesiredDeployment, ObservedDeployment, Placement, Progress,
    Reconciler, UnixNanos,
};

use crate::store::{self, CurrentQuery, HubStore, ListQuery, PostgresStore, StateQuery};

const SECOND: i64 = 1_000_000_000;
const ENVIRONMENTS: [&str; 2] = ["stage", "prod"];

fn placement(workload: usize, environment: &str) -> Placement {
    Placement {
        workspace: "default".into(),
        application: format!("app-{}", workload % 2),
        workload: format!("svc-{workload}"),
        environment: environment.into(),
        target: format!("{environment}-eu"),
    }
}

fn desired(workload: usize, environment: &str, revision: &str, at: i64) -> DeploymentEvent {
    DeploymentEvent::Desired(DesiredDeployment {
        placement: placement(workload, environment),
        version: format!("v-{revision}"),
        revision: revision.into(),
        build_commit: None,
        build_id: None,
        repository_url: None,
        origin: Default::default(),
        commit_time: None,
        at: UnixNanos(at),
    })
}

fn observed(
    host: &str,
    kind: &str,
    workload: usize,
    environment: &str,
    revision: &str,
    status: DeploymentStatus,
    at: i64,
) -> DeploymentEvent {
    DeploymentEvent::Observed(ObservedDeployment {
        placement: placement(workload, environment),
        host: host.into(),
        reconciler: Reconciler {
            name: format!("{kind}-1"),
            kind: kind.into(),
        },
        revision: revision.into(),
        status,
        message: None,
        job: None,
        commit_time: None,
        observed_at: UnixNanos(at),
    })
}

fn drift_query(stale_before: i64, limit: u32) -> CurrentQuery {
    CurrentQuery {
        filter: StateQuery::default(),
        host: None,
        drift_only: true,
        stale_before: UnixNanos(stale_before),
        after: None,
        limit,
    }
}

/// Every page of the drift list, `limit` rows at a time, as (host, target
/// id, reconciler) → reasons.
async fn drift_list(
    store: &dyn HubStore,
    query: CurrentQuery,
) -> BTreeMap<(String, String, String, String), Vec<String>> {
    let mut rows = BTreeMap::new();
    let mut query = query;
    loop {
        let page = store.current("default", &query).await.expect("drift page");
        let full = page.len() == query.limit as usize;
        for (d, cursor) in page {
            let reasons = d.drift.iter().map(|r| r.as_str().to_owned()).collect();
            let key = (
                d.host,
                d.at.workload,
                d.at.environment,
                d.reconciler.unwrap_or_default(),
            );
            assert!(rows.insert(key, reasons).is_none(), "a row listed twice");
            query.after = Some(cursor);
        }
        if !full {
            return rows;
        }
    }
}

/// The same rows measured one host at a time from the host view: what the
/// drift list must equal.
async fn drift_by_host(
    store: &dyn HubStore,
    hosts: &BTreeSet<String>,
    stale_before: i64,
) -> BTreeMap<(String, String, String, String), Vec<String>> {
    let mut rows = BTreeMap::new();
    for host in hosts {
        let query = CurrentQuery {
            host: Some(host.clone()),
            drift_only: false,
            limit: 10_000,
            ..drift_query(stale_before, 0)
        };
        for (d, _) in store.current("default", &query).await.expect("host view") {
            if d.drift.is_empty() {
                continue;
            }
            let reasons = d.drift.iter().map(|r| r.as_str().to_owned()).collect();
            rows.insert(
                (
                    d.host,
                    d.at.workload,
                    d.at.environment,
                    d.reconciler.unwrap_or_default(),
                ),
                reasons,
            );
        }
    }
    rows
}

/// Random desired changes, status changes, silences and sweeps: after each
/// round, the drift list (paged) and the drift counts equal what the host
/// view measures row by row, on both backends. The maintained set must
/// follow every way a row enters or leaves drift: a new row, a new desired
/// revision, a status change, the clock passing the threshold (swept or
/// not yet), a report after a silence, and Argo CD's rows that never go
/// stale.
async fn drift_set_follows_the_rules(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.expect("store");
    let mut rng = StdRng::seed_from_u64(18);
    let now = UnixNanos::now().0;
    let revisions = ["r1", "r2", "r3"];
    let statuses = [
        DeploymentStatus::Succeeded,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
        DeploymentStatus::InProgress,
    ];
    let hosts: BTreeSet<String> = (0..8).map(|h| format!("host-{h}")).collect();
    let mut clock = now - 1_000 * SECOND;
    for round in 0..12 {
        clock += 20 * SECOND;
        let mut events = Vec::new();
        for _ in 0..rng.random_range(0..4) {
            let env = ENVIRONMENTS[rng.random_range(0..2)];
            let revision = revisions[rng.random_range(0..3)];
            events.push(desired(rng.random_range(0..4), env, revision, clock));
        }
        for host in &hosts {
            // Some hosts fall silent for a round; one reports through Argo CD.
            if rng.random_bool(0.3) {
                continue;
            }
            let kind = if host == "host-7" { "argocd" } else { "agent" };
            for workload in 0..4 {
                let env = ENVIRONMENTS[(workload + host.len()) % 2];
                events.push(observed(
                    host,
                    kind,
                    workload,
                    env,
                    revisions[rng.random_range(0..3)],
                    statuses[rng.random_range(0..4)],
                    clock - rng.random_range(0..3) * SECOND,
                ));
            }
        }
        store.ingest("default", &events).await.expect("ingest");
        // The threshold: rows silent for more than a round or two are stale.
        let stale_before = clock - 30 * SECOND;
        if rng.random_bool(0.5) {
            store.sweep_stale(stale_before).await.expect("sweep");
        }
        let want = drift_by_host(&*store, &hosts, stale_before).await;
        for limit in [3, 100] {
            let got = drift_list(&*store, drift_query(stale_before, limit)).await;
            assert_eq!(got, want, "{backend:?} round {round}, pages of {limit}");
        }
        let summary = store
            .drift_summary("default", &StateQuery::default(), UnixNanos(stale_before))
            .await
            .expect("drift summary");
        let mut counted: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
        for ((_, workload, env, _), reasons) in &want {
            let c = counted.entry((workload.clone(), env.clone())).or_default();
            c.0 += 1;
            c.1 += u64::from(reasons.iter().any(|r| r == "failed"));
            c.2 += u64::from(reasons.iter().any(|r| r == "stale"));
        }
        let summed: BTreeMap<(String, String), (u64, u64, u64)> = summary
            .into_iter()
            .map(|s| ((s.workload, s.environment), (s.rows, s.failed, s.stale)))
            .collect();
        assert_eq!(summed, counted, "{backend:?} round {round}: drift counts");
        for workload in 0..4 {
            for env in ENVIRONMENTS {
                let query = StateQuery {
                    workload: Some(format!("svc-{workload}")),
                    environment: Some(env.into()),
                    ..StateQuery::default()
                };
                let want = attention_by_state(&*store, &query).await;
                for limit in [3, 100] {
                    let got: Vec<(String, String, String, String)> = store
                        .attention_hosts("default", &query, limit)
                        .await
                        .expect("attention")
                        .into_iter()
                        .map(|(target, desired, h)| {
                            let progress = match desired {
                                Some(d) if d == h.revision => h.status.as_str(),
                                _ => "pending",
                            };
                            (
                                progress.to_owned(),
                                h.host,
                                h.reconciler.unwrap_or_default(),
                                target,
                            )
                        })
                        .collect();
                    let n = want.len().min(limit as usize);
                    assert_eq!(
                        got,
                        want[..n],
                        "{backend:?} round {round}: rollout of svc-{workload} in {env}, limit {limit}"
                    );
                }
            }
        }
    }
}

/// The hosts of a rollout that need attention, measured from the state
/// view (every row of the targets) in the documented order: failed on the
/// desired revision, in progress on it, then on another revision; by host
/// and reconciler. As (progress, host, reconciler, target).
async fn attention_by_state(
    store: &dyn HubStore,
    query: &StateQuery,
) -> Vec<(String, String, String, String)> {
    let states = store.state("default", query).await.expect("state");
    let rollout = sextant_model::Rollout::from_states(&states);
    let mut rows: Vec<(u8, String, String, String, String)> = rollout
        .hosts
        .into_iter()
        .filter(|h| h.progress != Progress::Succeeded)
        .map(|h| {
            let class = match h.progress {
                Progress::Failed => 0,
                Progress::InProgress => 1,
                _ => 2,
            };
            (
                class,
                h.host.host,
                h.host.reconciler.unwrap_or_default(),
                h.progress.as_str().to_owned(),
                h.target,
            )
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .map(|(_, host, reconciler, progress, target)| (progress, host, reconciler, target))
        .collect()
}

#[tokio::test]
async fn drift_set_follows_the_rules_on_sqlite() {
    drift_set_follows_the_rules(Backend::Sqlite).await;
}

#[tokio::test]
async fn drift_set_follows_the_rules_on_postgres() {
    drift_set_follows_the_rules(Backend::Postgres).await;
}

/// Rows of `observed_deployments` PostgreSQL has read (sequential scans and
/// index entries) as of now. Flushes this connection's pending statistics
/// first: the store's reads ran on it (the pool holds one connection,
/// checked by the caller).
async fn rows_read(pool: &sqlx::PgPool) -> i64 {
    table_rows_read(pool, "observed_deployments").await
}

/// Rows of `table` PostgreSQL has read as of now; see [`rows_read`].
async fn table_rows_read(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .expect("flush");
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(s.seq_tup_read, 0) + COALESCE(SUM(i.idx_tup_read), 0) AS BIGINT) \
         FROM pg_stat_user_tables s \
         LEFT JOIN pg_stat_user_indexes i ON i.relid = s.relid \
         WHERE s.relname = $1 GROUP BY s.seq_tup_read",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .expect("statistics")
}

async fn backend_pid(pool: &sqlx::PgPool) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pid")
}

/// What autovacuum does a minute after a bulk change: plans follow
/// statistics, and a table the planner thinks tiny is sorted whole.
async fn analyze(store: &PostgresStore) {
    sqlx::query("ANALYZE")
        .execute(store.pool())
        .await
        .expect("analyze");
}

/// How many current rows a read reads, on a store with one connection.
async fn cost(store: &PostgresStore, query: &CurrentQuery) -> (usize, i64) {
    let pid = backend_pid(store.pool()).await;
    let before = rows_read(store.pool()).await;
    let rows = store.current("default", query).await.expect("read").len();
    let after = rows_read(store.pool()).await;
    assert_eq!(backend_pid(store.pool()).await, pid, "one connection");
    (rows, after - before)
}

/// Issue 18: on a healthy estate the first drift page read every current
/// row to return none (0.92 s at 200,000 rows). The drift list, the host
/// view and a drift page of a broken estate read about as many current rows
/// as they return, whatever the estate holds.
#[tokio::test]
async fn drift_reads_cost_what_they_return() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = PostgresStore::open(&db.url).await.expect("store");
    let now = UnixNanos::now().0;
    let (hosts, workloads) = (200, 25);
    let mut events = Vec::new();
    for w in 0..workloads {
        for env in ENVIRONMENTS {
            events.push(desired(w, env, "good", now - 60 * SECOND));
        }
    }
    store.ingest("default", &events).await.expect("desired");
    let report = |revision: &'static str, at: i64| {
        let mut batches = Vec::new();
        for h in 0..hosts {
            let host = format!("host-{h:03}");
            let env = ENVIRONMENTS[h % 2];
            batches.push(
                (0..workloads)
                    .map(|w| {
                        observed(
                            &host,
                            "agent",
                            w,
                            env,
                            revision,
                            DeploymentStatus::Succeeded,
                            at,
                        )
                    })
                    .collect::<Vec<_>>(),
            );
        }
        batches
    };
    for batch in report("good", now) {
        store.ingest("default", &batch).await.expect("observed");
    }
    let estate = i64::from(hosts as u16) * workloads as i64;
    let reader = PostgresStore::open_with(&db.url, 1).await.expect("reader");
    analyze(&reader).await;
    let stale_before = now - 3600 * SECOND;

    // Healthy: nothing drifts, and nearly nothing is read to say so.
    let (rows, read) = cost(&reader, &drift_query(stale_before, 100)).await;
    assert_eq!(rows, 0);
    assert!(
        read < 50,
        "healthy drift page read {read} of {estate} current rows"
    );

    // A rollout reads the rows of its workload's targets in the
    // environment (100 here), not the estate's.
    let rollout = StateQuery {
        workload: Some("svc-3".into()),
        environment: Some("prod".into()),
        ..StateQuery::default()
    };
    let before = rows_read(reader.pool()).await;
    let listed = reader
        .attention_hosts("default", &rollout, 100)
        .await
        .expect("rollout");
    let read = rows_read(reader.pool()).await - before;
    assert!(listed.is_empty());
    assert!(read <= hosts as i64, "rollout read {read} rows");

    // A page of the host list reads its hosts' rows, and not each row's
    // target: a row carries its workload (at 1M rows the per-row target
    // lookups were two thirds of the first page's 23 ms).
    let before = rows_read(reader.pool()).await;
    let targets_before = table_rows_read(reader.pool(), "deployment_targets").await;
    let listed = reader
        .hosts(
            "default",
            &ListQuery {
                limit: 20,
                ..ListQuery::default()
            },
        )
        .await
        .expect("hosts");
    let read = rows_read(reader.pool()).await - before;
    assert_eq!(listed.len(), 20);
    assert!(
        read < 1_000,
        "a page of 20 hosts read {read} of {estate} rows"
    );
    let targets = table_rows_read(reader.pool(), "deployment_targets").await - targets_before;
    assert!(
        targets <= 25,
        "a page of 20 hosts ({} rows) read {targets} targets",
        20 * workloads
    );
    assert!(listed.iter().all(|h| h.workloads == workloads as i64));

    // The host view reads the host's rows.
    let host_view = CurrentQuery {
        host: Some("host-007".into()),
        drift_only: false,
        limit: 1_000,
        ..drift_query(stale_before, 0)
    };
    let (rows, read) = cost(&reader, &host_view).await;
    assert_eq!(rows, workloads);
    assert!(
        read < 3 * workloads as i64,
        "host view read {read} rows for {rows}"
    );

    // Ten hosts of the healthy workload roll out again (in progress on the
    // desired revision): the rollout reads those, not the other 90 rows.
    let restarted: Vec<DeploymentEvent> = (0..10)
        .map(|i| {
            observed(
                &format!("host-{:03}", 2 * i + 1),
                "agent",
                3,
                "prod",
                "good",
                DeploymentStatus::InProgress,
                now + SECOND / 2,
            )
        })
        .collect();
    store
        .ingest("default", &restarted)
        .await
        .expect("in progress");
    let before = rows_read(reader.pool()).await;
    let listed = reader
        .attention_hosts("default", &rollout, 100)
        .await
        .expect("rollout");
    let read = rows_read(reader.pool()).await - before;
    assert_eq!(listed.len(), 10);
    assert!(
        read < 40,
        "a rollout with 10 hosts in progress read {read} rows"
    );

    // Everything drifting: a page reads about a page.
    for batch in report("bad", now + SECOND) {
        store.ingest("default", &batch).await.expect("observed");
    }
    analyze(&store).await;
    let (rows, read) = cost(&reader, &drift_query(stale_before, 100)).await;
    assert_eq!(rows, 100);
    assert!(
        read < 400,
        "broken drift page read {read} of {estate} rows for {rows}"
    );
    let one_env = CurrentQuery {
        filter: StateQuery {
            environment: Some("prod".into()),
            ..StateQuery::default()
        },
        ..drift_query(stale_before, 100)
    };
    let (rows, read) = cost(&reader, &one_env).await;
    assert_eq!(rows, 100);
    assert!(
        read < 400,
        "one environment's page read {read} of {estate} rows"
    );

    // A rollout whose every host needs attention lists a page of them and
    // reads about the page, not the workload's 100 rows in the environment
    // (before: every row, joined to its names, then sorted).
    let before = rows_read(reader.pool()).await;
    let listed = reader
        .attention_hosts("default", &rollout, 10)
        .await
        .expect("rollout");
    let read = rows_read(reader.pool()).await - before;
    assert_eq!(listed.len(), 10);
    assert!(read < 40, "a rollout page of 10 read {read} rows");

    // Everything stale, swept: a page reads about a page. Before the sweep
    // reaches them, the rows are found on the stale index instead.
    let later = now + 7200 * SECOND;
    let stale_query = drift_query(later - 3600 * SECOND, 100);
    let (rows, _) = cost(&reader, &stale_query).await;
    assert_eq!(rows, 100);
    store
        .sweep_stale(later - 3600 * SECOND)
        .await
        .expect("sweep");
    analyze(&store).await;
    let (rows, read) = cost(&reader, &stale_query).await;
    assert_eq!(rows, 100);
    assert!(read < 400, "stale drift page read {read} of {estate} rows");
}

/// A backlog replayed after an outage (each report newer than the last, all
/// older than the stale threshold) keeps its rows marked stale: before, every
/// write cleared the mark and the next sweep set it again, a write of the
/// drift set per row and report (the ingest benchmark, whose reports are
/// weeks old, fell from 98,000 to 9,000 records/s). A fresh report clears it.
async fn a_replayed_backlog_stays_marked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.expect("store");
    store.set_stale_after(std::time::Duration::from_secs(60));
    let now = UnixNanos::now().0;
    let report = |at: i64| {
        vec![
            desired(0, "prod", "r1", now - 7200 * SECOND),
            observed(
                "host-0",
                "agent",
                0,
                "prod",
                "r1",
                DeploymentStatus::Succeeded,
                at,
            ),
        ]
    };
    store
        .ingest("default", &report(now - 7200 * SECOND))
        .await
        .expect("old");
    let threshold = now - 60 * SECOND;
    assert_eq!(store.sweep_stale(threshold).await.expect("sweep"), 1);
    store
        .ingest("default", &report(now - 3600 * SECOND))
        .await
        .expect("older");
    assert_eq!(
        store.sweep_stale(threshold).await.expect("sweep"),
        0,
        "{backend:?}: the replayed report cleared the stale mark"
    );
    let listed = drift_list(&*store, drift_query(threshold, 10)).await;
    assert_eq!(
        listed.values().collect::<Vec<_>>(),
        [&vec!["stale".to_owned()]],
        "{backend:?}"
    );
    store.ingest("default", &report(now)).await.expect("fresh");
    assert!(
        drift_list(&*store, drift_query(threshold, 10))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_replayed_backlog_stays_marked_on_sqlite() {
    a_replayed_backlog_stays_marked(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_replayed_backlog_stays_marked_on_postgres() {
    a_replayed_backlog_stays_marked(Backend::Postgres).await;
}

/// Compare and the UI matrix read a page of workloads at a time (issue 18:
/// compare of three environments read 30,000 targets into a 24–28 MB
/// answer at 1M rows). Pages hold whole workloads, at most `limit` and at
/// most the target budget (one workload alone may exceed it); together they
/// hold every workload once, and each page's summaries and drift counts are
/// those of its workloads and equal the unpaged read's.
async fn workload_pages_cover_the_estate(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.expect("store");
    let now = UnixNanos::now().0;
    let mut events = Vec::new();
    // svc-0..svc-5; svc-w has w + 1 targets per environment.
    for w in 0..6usize {
        for env in ENVIRONMENTS {
            for t in 0..=w {
                let mut p = placement(w, env);
                p.target = format!("{env}-{t}");
                let revision = if t % 2 == 0 { "good" } else { "bad" };
                events.push(DeploymentEvent::Desired(DesiredDeployment {
                    placement: p.clone(),
                    version: "v-good".into(),
                    revision: "good".into(),
                    build_commit: None,
                    build_id: None,
                    repository_url: None,
                    origin: Default::default(),
                    commit_time: None,
                    at: UnixNanos(now - 60 * SECOND),
                }));
                events.push(DeploymentEvent::Observed(ObservedDeployment {
                    placement: p,
                    host: format!("host-{t}"),
                    reconciler: Reconciler {
                        name: "agent-1".into(),
                        kind: "agent".into(),
                    },
                    revision: revision.into(),
                    status: DeploymentStatus::Succeeded,
                    message: None,
                    job: None,
                    commit_time: None,
                    observed_at: UnixNanos(now),
                }));
            }
        }
    }
    store.ingest("default", &events).await.expect("ingest");
    let stale_before = UnixNanos(now - 3600 * SECOND);
    let all = StateQuery::default();
    let summaries = store.summaries("default", &all).await.expect("summaries");
    let drift = store
        .drift_summary("default", &all, stale_before)
        .await
        .expect("drift");
    let key = |ws: &str, a: &str, w: &str| (ws.to_owned(), a.to_owned(), w.to_owned());

    for (limit, budget) in [(2, 1_000), (100, 7), (100, 1), (1, 1)] {
        let (mut after, mut pages) = (None, Vec::new());
        let (mut paged, mut paged_drift) = (Vec::new(), Vec::new());
        loop {
            let (range, next) =
                store::plan_workload_page(&*store, "default", &all, after.clone(), limit, budget)
                    .await
                    .expect("page");
            let Some(range) = range else { break };
            let q = StateQuery {
                workloads: Some(range.clone()),
                ..StateQuery::default()
            };
            let page = store.summaries("default", &q).await.expect("page");
            let workloads: BTreeSet<_> = page
                .iter()
                .map(|s| key(&s.at.workspace, &s.at.application, &s.at.workload))
                .collect();
            assert!(
                workloads.len() <= limit as usize,
                "{backend:?}: {workloads:?}"
            );
            assert!(
                page.len() as u64 <= budget || workloads.len() == 1,
                "{backend:?} budget {budget}: {} targets in {workloads:?}",
                page.len()
            );
            assert!(workloads.contains(&range.last), "{backend:?}");
            pages.push(workloads);
            paged.extend(page);
            paged_drift.extend(
                store
                    .drift_summary("default", &q, stale_before)
                    .await
                    .expect("page drift"),
            );
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let seen: Vec<_> = pages.iter().flatten().collect();
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!(seen.len(), 6, "{backend:?} ({limit}, {budget}): {pages:?}");
        assert_eq!(unique.len(), 6, "{backend:?}: a workload on two pages");
        assert_eq!(paged, summaries, "{backend:?} ({limit}, {budget})");
        let sorted = |mut d: Vec<store::DriftSummary>| {
            d.sort_by(|a, b| {
                (&a.workload, &a.environment, a.rows).cmp(&(&b.workload, &b.environment, b.rows))
            });
            d
        };
        assert_eq!(sorted(paged_drift), sorted(drift.clone()), "{backend:?}");
    }
    // Past the last workload: nothing.
    let (range, next) = store::plan_workload_page(
        &*store,
        "default",
        &all,
        Some(key("default", "app-1", "svc-5")),
        10,
        100,
    )
    .await
    .expect("past the end");
    assert_eq!((range, next), (None, None));
}

#[tokio::test]
async fn workload_pages_cover_the_estate_on_sqlite() {
    workload_pages_cover_the_estate(Backend::Sqlite).await;
}

#[tokio::test]
async fn workload_pages_cover_the_estate_on_postgres() {
    workload_pages_cover_the_estate(Backend::Postgres).await;
}
