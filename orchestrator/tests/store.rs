//! The orchestrator store on both backends: idempotent configuration,
//! immutable releases, decision records and artifacts, compare-and-set
//! state changes with their events, and exclusive job leases.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sextant_e2e::{Backend, TestDb};
use sextant_orchestrator::domain::task::{Artifact, TaskKind};
use sextant_orchestrator::domain::{
    ComponentSpec, EnvironmentSpec, JobKind, JobState, PromotionState, Release, ReleaseComponent,
    ReleaseStatus, Strategy, TargetSpec, TaskState,
};
use sextant_orchestrator::store::{
    Change, DeployedOn, NewJob, NewPromotion, NewTask, Store, TaskMove,
};

fn env(name: &str) -> EnvironmentSpec {
    serde_norway::from_str(&format!("name: {name}")).expect("environment")
}

fn target(name: &str, environment: &str) -> TargetSpec {
    serde_norway::from_str(&format!(
        "name: {name}\nenvironment: {environment}\nssh: {{host: 127.0.0.1, user: u, credential: 'file:/k'}}\n"
    ))
    .expect("target")
}

fn component() -> ComponentSpec {
    ComponentSpec {
        name: "web".into(),
        image: "127.0.0.1:5000/web".into(),
        application: Some("shop".into()),
        workspace: None,
    }
}

fn pinned(n: char) -> ReleaseComponent {
    let digest = format!("sha256:{}", n.to_string().repeat(64));
    ReleaseComponent {
        component: "web".into(),
        image: format!("127.0.0.1:5000/web@{digest}"),
        digest,
        tag: None,
    }
}

async fn scenario(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.expect("open store");
    // Opening again applies no migration twice.
    let store2 = Store::open(&db.url).await.expect("reopen store");

    // Configuration: created, unchanged, updated; tenants apart.
    assert_eq!(
        store.put_environment("t1", &env("dev"), 1).await.unwrap(),
        Change::Created
    );
    assert_eq!(
        store.put_environment("t1", &env("dev"), 1).await.unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        store.put_environment("t1", &env("dev"), 2).await.unwrap(),
        Change::Updated
    );
    assert_eq!(
        store.put_environment("t2", &env("dev"), 1).await.unwrap(),
        Change::Created
    );
    assert_eq!(
        store.put_target("t1", &target("a", "dev")).await.unwrap(),
        Change::Created
    );
    assert_eq!(
        store.put_target("t1", &target("a", "dev")).await.unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        store.put_component("t1", &component()).await.unwrap(),
        Change::Created
    );
    assert_eq!(store.targets("t1", Some("dev")).await.unwrap().len(), 1);
    assert!(
        store.targets("t2", None).await.unwrap().is_empty(),
        "tenants are apart"
    );

    // Releases: unique names, finalized ones are immutable.
    let r1 = store
        .create_release("t1", "r1", &[pinned('a')], "alice", true)
        .await
        .unwrap()
        .expect("created");
    assert_eq!(r1.status, ReleaseStatus::Finalized);
    assert!(
        store
            .create_release("t1", "r1", &[pinned('b')], "alice", true)
            .await
            .unwrap()
            .is_none(),
        "a release name is taken once"
    );
    assert!(store.release("t2", "r1").await.unwrap().is_none());
    let tamper = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE release_components SET digest = 'sha256:evil'")
                .execute(&pool)
                .await
                .map(|_| ())
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE release_components SET digest = 'sha256:evil'")
                .execute(&pool)
                .await
                .map(|_| ())
        }
    };
    let err = tamper.expect_err("a finalized release cannot change");
    assert!(err.to_string().contains("release is finalized"), "{err}");
    let draft = store
        .create_release("t1", "r2", &[pinned('b')], "alice", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(draft.status, ReleaseStatus::Draft);
    assert!(store.finalize_release("t1", &draft.id).await.unwrap());
    assert!(!store.finalize_release("t1", &draft.id).await.unwrap());

    // Promotions: compare-and-set moves with events; decision record once.
    let p = store
        .create_promotion(&NewPromotion {
            tenant: "t1",
            release_id: &r1.id,
            environment: "dev",
            requested_by: "alice",
            strategy: &Strategy::default(),
            reason: Some("why"),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        })
        .await
        .unwrap();
    assert_eq!(p.state, PromotionState::Requested);
    assert_eq!(
        p.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "the promotion keeps its trace"
    );
    assert!(
        store
            .move_promotion(
                &p.id,
                PromotionState::Requested,
                PromotionState::AwaitingApproval,
                "sextant",
                None,
                None
            )
            .await
            .unwrap()
    );
    assert!(
        !store2
            .move_promotion(
                &p.id,
                PromotionState::Requested,
                PromotionState::Approved,
                "sextant",
                None,
                None
            )
            .await
            .unwrap(),
        "a stale move loses"
    );
    let events = store.promotion_events(&p.id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.to.as_str()).collect::<Vec<_>>(),
        ["requested", "awaiting_approval"]
    );
    assert!(store.add_approval(&p.id, "bob", true, None).await.unwrap());
    assert!(
        !store.add_approval(&p.id, "bob", false, None).await.unwrap(),
        "one decision per approver"
    );
    store
        .write_decision(&p.id, "approved", &serde_json::json!({"gates": []}))
        .await
        .unwrap();
    store
        .write_decision(&p.id, "rejected", &serde_json::json!({"gates": ["other"]}))
        .await
        .unwrap();
    assert_eq!(
        store.decision(&p.id).await.unwrap().unwrap().outcome,
        "approved"
    );

    // Jobs: creation moves the approved promotion in the same transaction,
    // once.
    assert!(
        store
            .move_promotion(
                &p.id,
                PromotionState::AwaitingApproval,
                PromotionState::Approved,
                "sextant",
                None,
                None
            )
            .await
            .unwrap()
    );
    let job = NewJob {
        tenant: "t1".into(),
        kind: JobKind::Deploy,
        promotion_id: Some(p.id.clone()),
        parent_job_id: None,
        release_id: r1.id.clone(),
        environment: "dev".into(),
        strategy: Strategy::default(),
        max_attempts: 3,
        created_by: "alice".into(),
        tasks: vec![NewTask {
            batch: 0,
            kind: TaskKind::Deploy,
            release_id: r1.id.clone(),
            target: "a".into(),
            component: "web".into(),
            image: r1.components[0].image.clone(),
            digest: r1.components[0].digest.clone(),
            previous_digest: None,
            slot: None,
            max_attempts: 2,
            timeout_ms: 1000,
        }],
    };
    let job_id = store.create_job(&job).await.unwrap().expect("job created");
    assert!(
        store.create_job(&job).await.unwrap().is_none(),
        "a promotion starts one job"
    );
    let promotion = store.promotion("t1", &p.id).await.unwrap().unwrap();
    assert_eq!(promotion.state, PromotionState::Deploying);
    assert_eq!(promotion.job_id.as_deref(), Some(job_id.as_str()));

    // Leases: one owner at a time; an expired lease can be taken over.
    let lease = Duration::from_millis(400);
    assert_eq!(
        store.claim_job("r-a", lease, &[]).await.unwrap().as_deref(),
        Some(job_id.as_str())
    );
    assert_eq!(
        store2.claim_job("r-b", lease, &[]).await.unwrap(),
        None,
        "leased to r-a"
    );
    assert!(store.renew_job_lease(&job_id, "r-a", lease).await.unwrap());
    // Real time: leases are stored as wall-clock timestamps in the database.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(
        store2
            .claim_job("r-b", lease, &[])
            .await
            .unwrap()
            .as_deref(),
        Some(job_id.as_str())
    );
    assert!(
        !store.renew_job_lease(&job_id, "r-a", lease).await.unwrap(),
        "r-a lost it"
    );
    // Each claim counted one attempt, in the claiming statement.
    let job = store.job(None, &job_id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 2);
    // A job the replica drives already is skipped (bound, not spliced).
    // Real time: leases are stored as wall-clock timestamps in the database.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(
        store
            .claim_job("r-a", lease, &[job_id.clone(), "x' OR '1'='1".into()])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.claim_job("r-a", lease, &[]).await.unwrap().as_deref(),
        Some(job_id.as_str())
    );

    // Job and task moves.
    assert!(
        store
            .move_job(
                &job_id,
                JobState::Pending,
                JobState::Preparing,
                "sextant",
                None,
                None
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .move_job(
                &job_id,
                JobState::Pending,
                JobState::Preparing,
                "sextant",
                None,
                None
            )
            .await
            .unwrap()
    );
    let task = &store.tasks(&job_id).await.unwrap()[0];
    let queued = store
        .move_task(
            &task.id,
            TaskMove::new(TaskState::Pending, TaskState::Queued, "r-b", lease),
        )
        .await
        .unwrap()
        .expect("pending → queued moves");
    assert_eq!((queued.state, queued.attempts), (TaskState::Queued, 0));
    // A compare-and-set from a state the task is no longer in does nothing.
    assert_eq!(
        store
            .move_task(
                &task.id,
                TaskMove::new(TaskState::Pending, TaskState::Queued, "r-b", lease)
            )
            .await
            .unwrap(),
        None
    );
    let moved = store
        .move_task(
            &task.id,
            TaskMove::new(TaskState::Queued, TaskState::Dispatched, "r-b", lease).new_attempt(),
        )
        .await
        .unwrap()
        .expect("queued → dispatched moves");
    let task = store.task(&task.id).await.unwrap().unwrap();
    // The move returns the row as it left it.
    assert_eq!(moved, task);
    assert_eq!((task.state, task.attempts), (TaskState::Dispatched, 1));
    assert!(task.started_at.is_some());

    // Artifacts are stored once and cannot change.
    let a = Artifact {
        name: "release.json".into(),
        content: b"{}".to_vec(),
        sha256: "x".into(),
    };
    store
        .put_job_artifacts(&job_id, &[("a", std::slice::from_ref(&a))])
        .await
        .unwrap();
    let b = Artifact {
        content: b"{\"changed\":true}".to_vec(),
        ..a.clone()
    };
    store
        .put_job_artifacts(&job_id, &[("a", &[b])])
        .await
        .unwrap();
    assert_eq!(store.artifacts(&job_id, "a").await.unwrap(), vec![a]);

    // Deployed rows keep what ran before.
    deploy_on_a(&store, &job_id, &r1).await;
    let r2 = store.release("t1", "r2").await.unwrap().unwrap();
    deploy_on_a(&store, &job_id, &r2).await;
    // The same digest again does not forget the previous one.
    deploy_on_a(&store, &job_id, &r2).await;
    let d = &store.deployed("t1", Some("a")).await.unwrap()[0];
    assert_eq!(d.digest, r2.components[0].digest);
    assert_eq!(d.previous.as_ref().unwrap().digest, r1.components[0].digest);
}

/// Records that `release`'s web component runs on target `a`.
async fn deploy_on_a(store: &Store, job_id: &str, release: &Release) {
    store
        .set_deployed_all(
            "t1",
            job_id,
            &[DeployedOn {
                target: "a",
                component: "web",
                release_id: &release.id,
                image: &release.components[0].image,
                digest: &release.components[0].digest,
                slot: None,
            }],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn store_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn store_on_postgres() {
    scenario(Backend::Postgres).await;
}
