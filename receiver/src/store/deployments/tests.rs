//! The replay rules of `deployments` on hand-built histories, and an
//! upgraded hub's rebuild.

use super::*;

fn row(at: i64, host: i64, revision: &str, status: &str) -> HistoryRow {
    HistoryRow {
        key: (at, host, 1, at * 10 + host),
        revision: revision.into(),
        status: status.into(),
    }
}

/// Start, revision, baseline, rollback, rework and failed_at.
type Summary<'a> = (i64, &'a str, bool, bool, bool, Option<i64>);

fn summary(out: &[Deployment]) -> Vec<Summary<'_>> {
    out.iter()
        .map(|d| {
            (
                d.key.0,
                d.revision.as_str(),
                d.baseline,
                d.rollback,
                d.rework,
                d.failed_at,
            )
        })
        .collect()
}

/// r1 on two hosts (baseline), r2 rolls out (host 2 fails it), r1
/// comes back from r2 on host 1: a rollback, which fails r2 at its
/// start and is rework.
#[test]
fn a_rollback_fails_the_deployment_it_undoes() {
    let rows = [
        row(1, 1, "r1", "succeeded"),
        row(2, 2, "r1", "succeeded"),
        row(10, 1, "r2", "in_progress"),
        row(11, 1, "r2", "succeeded"),
        row(12, 2, "r2", "failed"),
        row(20, 1, "r1", "succeeded"),
        row(21, 2, "r1", "succeeded"),
    ];
    let out = replay(None, HashMap::new(), &HashSet::new(), &rows, false);
    assert_eq!(
        summary(&out),
        [
            (1, "r1", true, false, false, None),
            (10, "r2", false, false, false, Some(12)),
            (20, "r1", false, true, true, None),
        ]
    );
    assert_eq!(out[1].first_succeeded_at, Some(11));
    assert_eq!(out[1].ended_at, Some(20));
}

/// A host still on r1 reporting while r2 rolls out, and a host's first
/// report of an old revision, start nothing; a laggard moving r1 → r2
/// after r3 started starts nothing either.
#[test]
fn laggards_and_first_reports_start_no_deployment() {
    let rows = [
        row(1, 1, "r1", "succeeded"),
        row(2, 2, "r1", "succeeded"),
        row(10, 1, "r2", "succeeded"),
        row(11, 2, "r1", "failed"),
        row(12, 3, "r0", "succeeded"),
        row(20, 1, "r3", "succeeded"),
        row(21, 2, "r2", "succeeded"),
    ];
    let out = replay(None, HashMap::new(), &HashSet::new(), &rows, false);
    assert_eq!(
        summary(&out),
        [
            (1, "r1", true, false, false, None),
            (10, "r2", false, false, false, None),
            (20, "r3", false, false, false, None),
        ]
    );
}

/// Replaying from the second deployment with the state before it gives
/// what a whole replay gives.
#[test]
fn a_replay_from_a_deployment_equals_the_whole_replay() {
    let rows = [
        row(1, 1, "r1", "succeeded"),
        row(10, 1, "r2", "failed"),
        row(20, 1, "r3", "succeeded"),
        row(30, 1, "r2", "succeeded"),
    ];
    let whole = replay(None, HashMap::new(), &HashSet::new(), &rows, false);
    let from = whole[1].clone();
    let hosts = HashMap::from([((1, 1), "r1".to_owned())]);
    let deployed = HashSet::from(["r1".to_owned(), "r2".to_owned()]);
    let part = replay(Some(from), hosts, &deployed, &rows[1..], false);
    assert_eq!(part, whole[1..]);
    assert_eq!(
        summary(&whole),
        [
            (1, "r1", true, false, false, None),
            (10, "r2", false, false, false, Some(10)),
            (20, "r3", false, false, true, Some(30)),
            (30, "r2", false, true, true, None),
        ]
    );
}

/// Resuming from the last deployment as stored, after any row, with
/// only the next rows' hosts, gives what a whole replay gives: for
/// every split of a history with a laggard, a failure, a rollback and
/// a host's first report.
#[test]
fn a_resumed_replay_equals_the_whole_replay() {
    let rows = [
        row(1, 1, "r1", "succeeded"),
        row(2, 2, "r1", "in_progress"),
        row(10, 1, "r2", "in_progress"),
        row(11, 2, "r2", "failed"),
        row(12, 3, "r2", "succeeded"),
        row(13, 1, "r2", "succeeded"),
        row(20, 1, "r1", "succeeded"),
        row(21, 2, "r1", "succeeded"),
        row(22, 3, "r2", "succeeded"),
        row(30, 3, "r3", "succeeded"),
        row(31, 1, "r3", "failed"),
    ];
    let whole = replay(None, HashMap::new(), &HashSet::new(), &rows, false);
    for split in 1..rows.len() {
        let before = replay(None, HashMap::new(), &HashSet::new(), &rows[..split], false);
        let last = before.last().expect("a baseline at least").clone();
        let deployed: HashSet<String> = before.iter().map(|d| d.revision.clone()).collect();
        // The next rows' hosts, as of the last row replayed.
        let hosts: HashMap<(i64, i64), String> = rows[split..]
            .iter()
            .filter_map(|next| {
                rows[..split]
                    .iter()
                    .rev()
                    .find(|r| (r.key.1, r.key.2) == (next.key.1, next.key.2))
                    .map(|r| ((r.key.1, r.key.2), r.revision.clone()))
            })
            .collect();
        let resumed = replay(Some(last), hosts, &deployed, &rows[split..], true);
        let mut joined = before[..before.len() - 1].to_vec();
        joined.extend(resumed);
        assert_eq!(joined, whole, "split after row {split}");
    }
}

/// A hub upgraded with history already stored: migration 0010 fills
/// `revision_times` and lists the targets, and the rebuild steps the
/// hub runs from its start rebuild their deployments (here: baseline r1, r2, then a rollback
/// to r1 that fails r2 and is rework).
#[tokio::test]
async fn an_upgraded_hub_rebuilds_its_deployments_at_first_start() {
    use sqlx::migrate::Migrator;
    use sqlx::sqlite::SqlitePoolOptions;

    use crate::store::HubStore as _;

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let options = sextant_kit::database::sqlite_options(&url).expect("url");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("SQLite");
    let all = crate::store::migrate::sqlite();
    Migrator::with_migrations(all.iter().take(8).cloned().collect())
        .run(&pool)
        .await
        .expect("migrations before 0010");
    sqlx::raw_sql(
        "INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', 0);
         INSERT INTO workspaces (id, tenant_id, name) VALUES (1, 1, 'w');
         INSERT INTO applications (id, tenant_id, workspace_id, name) VALUES (1, 1, 1, 'a');
         INSERT INTO workloads (id, tenant_id, application_id, name) VALUES (1, 1, 1, 'k');
         INSERT INTO environments (id, tenant_id, name) VALUES (1, 1, 'prod');
         INSERT INTO deployment_targets (id, tenant_id, workload_id, environment_id, name)
             VALUES (1, 1, 1, 1, 'eu');
         INSERT INTO reconcilers (id, tenant_id, name, type) VALUES (1, 1, '', '');
         INSERT INTO hosts (id, tenant_id, name) VALUES (1, 1, 'h1');
         INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id,
             revision, status, observed_at, changed_at, workload_id)
         VALUES (1, 1, 1, 1, 'r1', 'succeeded', 30, 30, 1);
         INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id,
             revision, status, observed_at, received_at)
         VALUES (1, 1, 1, 1, 'r1', 'succeeded', 10, 0),
                (1, 1, 1, 1, 'r2', 'failed', 20, 0),
                (1, 1, 1, 1, 'r1', 'succeeded', 30, 0);",
    )
    .execute(&pool)
    .await
    .expect("a hub's history before 0010");
    pool.close().await;
    let store = crate::store::SqliteStore::open(&url)
        .await
        .expect("upgrade");
    // The hub rebuilds in the background from its start; here, by hand.
    assert_eq!(store.rebuild_pending(None).await.expect("pending"), 1);
    assert_eq!(store.derive_step().await.expect("a step"), 1);
    assert_eq!(store.derive_step().await.expect("the last step"), 0);
    assert_eq!(
        store
            .rebuild_pending(Some("default"))
            .await
            .expect("pending"),
        0
    );
    let crate::store::StorePool::Sqlite(reader) = store.reader() else {
        unreachable!("a SQLite store reads SQLite");
    };
    let rows: Vec<(i64, String, i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT started_at, revision, baseline, rollback, rework, failed_at \
         FROM deployments ORDER BY started_at",
    )
    .fetch_all(reader)
    .await
    .expect("deployments");
    assert_eq!(
        rows,
        [
            (10, "r1".into(), 1, 0, 0, None),
            (20, "r2".into(), 0, 0, 0, Some(20)),
            (30, "r1".into(), 0, 1, 1, None),
        ]
    );
    let first_seen: Vec<(String, i64)> =
        sqlx::query_as("SELECT revision, first_seen_at FROM revision_times ORDER BY revision")
            .fetch_all(reader)
            .await
            .expect("revision times");
    assert_eq!(first_seen, [("r1".into(), 10), ("r2".into(), 20)]);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments_backfill")
        .fetch_one(reader)
        .await
        .expect("backfill list");
    assert_eq!(left, 0);
    store.close().await;
}

mod derived {
    //! Ingest lists, the deriver derives: against a whole replay.

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use sextant_e2e::{Backend, TestDb};
    use sextant_model::{
        DeploymentEvent, DeploymentStatus, ObservedDeployment, Placement, Reconciler, UnixNanos,
    };

    use super::super::*;
    use crate::store::pool::Statement;
    use crate::store::{self, HubStore};

    const SECOND: i64 = 1_000_000_000;

    fn observed(
        host: usize,
        workload: usize,
        revision: &str,
        failed: bool,
        at: i64,
    ) -> DeploymentEvent {
        DeploymentEvent::Observed(ObservedDeployment {
            placement: Placement {
                workspace: "default".into(),
                application: "shop".into(),
                workload: format!("svc-{workload}"),
                environment: "prod".into(),
                target: "eu".into(),
            },
            host: format!("host-{host}"),
            reconciler: Reconciler {
                name: "agent-1".into(),
                kind: "agent".into(),
            },
            revision: revision.into(),
            status: if failed {
                DeploymentStatus::Failed
            } else {
                DeploymentStatus::Succeeded
            },
            message: None,
            job: None,
            commit_time: None,
            observed_at: UnixNanos(at),
        })
    }

    /// The listed targets: (target, observed_at of the key, or none).
    async fn listed(store: &dyn HubStore) -> Vec<(i64, Option<i64>)> {
        store
            .reader()
            .fetch_all(Statement::new(
                "SELECT target_id, observed_at FROM deployments_backfill ORDER BY target_id",
            ))
            .await
            .expect("listed")
    }

    /// Every target's deployments as stored, and as a whole replay of its
    /// history gives them.
    async fn stored_and_replayed(
        store: &dyn HubStore,
    ) -> Vec<(i64, Vec<Deployment>, Vec<Deployment>)> {
        let targets: Vec<(i64,)> = store
            .reader()
            .fetch_all(Statement::new(
                "SELECT id FROM deployment_targets ORDER BY id",
            ))
            .await
            .expect("targets");
        let mut out = Vec::new();
        for (target,) in targets {
            let rows: Vec<(i64, i64, i64, i64, String, String)> = store
                .reader()
                .fetch_all(
                    Statement::new(
                        "SELECT observed_at, host_id, reconciler_id, id, revision, status \
                         FROM observed_history WHERE target_id = $1 \
                         ORDER BY observed_at, host_id, reconciler_id, id",
                    )
                    .int(target),
                )
                .await
                .expect("history");
            let want = replay(
                None,
                HashMap::new(),
                &HashSet::new(),
                &history_rows(rows),
                false,
            );
            let got: Vec<StoredWithFacts> = store
                .reader()
                .fetch_all(
                    Statement::new(
                        "SELECT started_at, start_host_id, start_reconciler_id, start_history_id, \
                           revision, baseline, rollback, rework, first_succeeded_at, \
                           first_failed_at, failed_at, ended_at FROM deployments \
                         WHERE target_id = $1 ORDER BY started_at, start_host_id, \
                           start_reconciler_id, start_history_id",
                    )
                    .int(target),
                )
                .await
                .expect("deployments");
            let got = got.into_iter().map(from_stored_with_facts).collect();
            out.push((target, got, want));
        }
        out
    }

    /// Ingest writes no deployment: it lists each touched target with the
    /// earliest key of its new rows, and keeps the earliest when later
    /// batches touch it again. Derived, with batches arriving out of order,
    /// derivations between them, and (PostgreSQL) batches and derivers
    /// running at once, every target's deployments equal a whole replay of
    /// its history, and nothing stays listed.
    async fn derived_deployments_equal_the_whole_replay(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = store::open(&db.url).await.expect("store");
        let mut rng = StdRng::seed_from_u64(20);
        let base = 1_790_000_000 * SECOND;
        let revisions = ["r1", "r2", "r3", "r4"];
        // Round 0: every host reports r1 of every workload. Six hosts: a
        // resumed replay reads few movers one by one, more all at once.
        let mut batches: Vec<Vec<DeploymentEvent>> = (0..40)
            .map(|round| {
                if round == 0 {
                    return (0..6)
                        .flat_map(|h| {
                            (0..3)
                                .map(move |w| observed(h, w, "r1", false, base + h as i64 * SECOND))
                        })
                        .collect();
                }
                let mut events = Vec::new();
                for host in 0..6 {
                    for workload in 0..3 {
                        if rng.random_bool(0.6) {
                            events.push(observed(
                                host,
                                workload,
                                revisions[rng.random_range(0..4)],
                                rng.random_bool(0.2),
                                base + (round * 10 + host as i64) * SECOND,
                            ));
                        }
                    }
                }
                events
            })
            .collect();
        // Out of order: some batches swap with their neighbour.
        for i in 1..batches.len() - 1 {
            if rng.random_bool(0.7) {
                batches.swap(i, i + 1);
            }
        }

        // The first batch: listed, not derived.
        store.ingest("default", &batches[0]).await.expect("ingest");
        let first = listed(&*store).await;
        assert_eq!(first.len(), 3, "every target the batch touched: {first:?}");
        assert!(
            first.iter().all(|(_, at)| *at == Some(base)),
            "each from the batch's earliest row: {first:?}"
        );
        let stored = stored_and_replayed(&*store).await;
        assert!(
            stored.iter().all(|(_, got, _)| got.is_empty()),
            "ingest derived deployments itself: {stored:?}"
        );
        // A later batch keeps the earlier key.
        store
            .ingest(
                "default",
                &[observed(0, 0, "r9", false, base + 5000 * SECOND)],
            )
            .await
            .expect("ingest");
        assert_eq!(listed(&*store).await, first);

        for chunk in batches[1..].chunks(4) {
            let ingests =
                futures::future::join_all(chunk.iter().map(|b| store.ingest("default", b)));
            let (ingested, derived) = tokio::join!(ingests, store.derive_step());
            for r in ingested {
                r.expect("ingest");
            }
            derived.expect("derive");
        }
        while store.derive_step().await.expect("derive") > 0 {}
        assert_eq!(listed(&*store).await, []);
        for (target, got, want) in stored_and_replayed(&*store).await {
            assert!(want.len() > 2, "target {target}: a history worth deriving");
            assert_eq!(got, want, "target {target}");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn derived_deployments_equal_the_whole_replay_on_sqlite() {
        derived_deployments_equal_the_whole_replay(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn derived_deployments_equal_the_whole_replay_on_postgres() {
        derived_deployments_equal_the_whole_replay(Backend::Postgres).await;
    }
}
