//! The hub client against a real hub (`sextant-receiver` on port 0 with a
//! database of its own), on both backends: every endpoint decodes into the
//! `sextant-model` types, and those serialize back to exactly the JSON the
//! hub sent.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use sextant_e2e::{Backend, TestDb};
use sextant_kit::Secret;
use sextant_kit::hub::{
    CompareQuery, DriftQuery, Found, HistoryQuery, HostsQuery, HubClient, HubError, PageRequest,
    RolloutQuery, RowFilter, StateFilter,
};
use sextant_model::{DeploymentStatus, HistoryEntry, HostsListed, Progress};
use sextant_receiver::auth::TokenConfig;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

const S: u64 = 1_000_000_000;

/// A running hub; stopped when dropped.
struct Hub {
    api: SocketAddr,
    http: SocketAddr,
    _db: TestDb,
    shutdown: CancellationToken,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Hub {
    async fn start(backend: Backend, tokens: Vec<TokenConfig>) -> Self {
        let db = TestDb::new(backend).await;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = HubConfig {
            otlp_grpc_addr: any,
            otlp_http_addr: any,
            api_addr: any,
            database_url: Some(db.url.clone()),
            tokens,
            ..HubConfig::default()
        };
        let app = Application::build(&config).await.expect("hub builds");
        let (api, http) = (app.api_addr(), app.otlp_http_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            api,
            http,
            _db: db,
            shutdown,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Sends OTLP/JSON log records and expects every one accepted.
    async fn send(&self, records: Vec<Value>, token: Option<&str>) {
        let body = json!({"resourceLogs": [{"resource": {"attributes": []},
            "scopeLogs": [{"logRecords": records}]}]});
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/v1/logs", self.http))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("OTLP/HTTP");
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.expect("JSON");
        assert!(answer["partialSuccess"].is_null(), "rejected: {answer}");
    }

    /// The hub's own JSON for `path_and_query`.
    async fn raw(&self, path_and_query: &str) -> Value {
        let res = reqwest::get(format!("{}{path_and_query}", self.url()))
            .await
            .expect("API");
        assert_eq!(res.status(), 200, "{path_and_query}");
        res.json().await.expect("JSON")
    }
}

fn now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_nanos()).expect("fits")
}

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn record(event: &str, env: &str, attrs: &[(&str, &str)], time: u64) -> Value {
    let mut all = vec![
        kv("sextant.application", "shop"),
        kv("sextant.workload", "checkout"),
        kv("deployment.environment.name", env),
        kv("sextant.target", "eu"),
    ];
    all.extend(attrs.iter().map(|(k, v)| kv(k, v)));
    json!({"eventName": event, "timeUnixNano": time.to_string(), "attributes": all})
}

fn desired(env: &str, version: &str, revision: &str, time: u64) -> Value {
    record(
        "sextant.deployment.desired",
        env,
        &[("service.version", version), ("sextant.revision", revision)],
        time,
    )
}

fn observed(env: &str, host: &str, revision: &str, status: &str, time: u64) -> Value {
    record(
        "sextant.deployment.observed",
        env,
        &[
            ("host.name", host),
            ("sextant.revision", revision),
            ("deployment.status", status),
            ("sextant.reconciler.name", "prod-flux"),
            ("sextant.reconciler.type", "flux"),
        ],
        time,
    )
}

/// stage runs checkout 1.2 mid-rollout (s1 done, s2 failed, s3 still on
/// 1.1); prod runs 1.1 on p1.
async fn estate(hub: &Hub, token: Option<&str>) {
    let t = now();
    hub.send(
        vec![
            desired("stage", "1.1", "r1", t - 1000 * S),
            desired("stage", "1.2", "r2", t - 100 * S),
            desired("prod", "1.1", "r1", t - 2000 * S),
            observed("stage", "s1", "r2", "succeeded", t - 50 * S),
            observed("stage", "s2", "r2", "failed", t - 40 * S),
            observed("stage", "s3", "r1", "succeeded", t - 30 * S),
            observed("prod", "p1", "r1", "succeeded", t - 10 * S),
        ],
        token,
    )
    .await;
}

/// `typed`, serialized, is the hub's JSON for the same request.
fn same_json(typed: &impl Serialize, raw: &Value, what: &str) {
    assert_eq!(
        &serde_json::to_value(typed).expect("serializes"),
        raw,
        "{what}"
    );
}

async fn every_endpoint_decodes_into_the_model(backend: Backend) {
    let hub = Hub::start(backend, Vec::new()).await;
    estate(&hub, None).await;
    let client = HubClient::new(hub.url(), None).expect("client");

    let environments = client.all_environments().await.expect("environments");
    let names: Vec<&str> = environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["prod", "stage"]);
    let page = client
        .environments(&PageRequest::default())
        .await
        .expect("a page");
    same_json(
        &page,
        &hub.raw("/api/v1/environments").await,
        "environments",
    );

    let state = client
        .environment_state("stage", &StateFilter::default())
        .await
        .expect("state");
    assert_eq!(state.len(), 1);
    assert_eq!((state[0].total_hosts, state[0].in_sync_hosts), (3, 1));
    assert_eq!(
        state[0].desired.as_ref().map(|d| d.version.as_str()),
        Some("1.2")
    );
    same_json(
        &state,
        &hub.raw("/api/v1/environments/stage/state").await,
        "state",
    );

    let query = CompareQuery {
        environments: vec!["stage".into(), "prod".into()],
        ..CompareQuery::default()
    };
    let compare = client.compare_all(&query).await.expect("compare");
    assert!(compare.workloads[0].differs);
    assert_eq!(compare.next_cursor, None);
    same_json(
        &compare,
        &hub.raw("/api/v1/compare?environments=stage,prod&limit=1000")
            .await,
        "compare",
    );

    let drift = client
        .all_drift(&DriftQuery::default())
        .await
        .expect("drift");
    let hosts: Vec<&str> = drift.iter().map(|d| d.host.as_str()).collect();
    assert_eq!(hosts, ["s2", "s3"]);
    let page = client
        .drift(&DriftQuery::default(), &PageRequest::default())
        .await
        .expect("drift page");
    // Ages in the drift rows are not compared: nothing in them moves.
    same_json(&page, &hub.raw("/api/v1/drift").await, "drift");

    let history = client
        .history(
            &HistoryQuery {
                filter: RowFilter {
                    workload: Some("checkout".into()),
                    environment: Some("stage".into()),
                    ..RowFilter::default()
                },
                ..HistoryQuery::default()
            },
            &PageRequest::first(50),
        )
        .await
        .expect("history");
    // Newest first: s3's report (30 s ago) before the promotion of 1.2.
    assert!(matches!(&history.items[0], HistoryEntry::Observed { host, .. } if host == "s3"));
    assert!(
        history
            .items
            .iter()
            .any(|e| matches!(e, HistoryEntry::Desired { version, .. } if version == "1.2"))
    );
    assert!(history.items.iter().any(|e| matches!(
        e,
        HistoryEntry::Observed {
            status: DeploymentStatus::Failed,
            ..
        }
    )));
    same_json(
        &history,
        &hub.raw("/api/v1/history?workload=checkout&environment=stage&limit=50")
            .await,
        "history",
    );

    let hosts = client
        .all_hosts(&HostsQuery::default())
        .await
        .expect("hosts");
    assert_eq!(hosts.len(), 4);
    // One host a page: the cursor walks the same list.
    let mut walked = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let answer = client
            .hosts(&HostsQuery::default(), &page)
            .await
            .expect("hosts page");
        walked.extend(answer.items.into_iter().map(|h| h.host));
        match answer.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let names: Vec<String> = hosts.iter().map(|h| h.host.clone()).collect();
    assert_eq!(walked, names);

    let rollout = client
        .rollout(&RolloutQuery::new("checkout", "stage"))
        .await
        .expect("rollout");
    assert_eq!(rollout.hosts_listed, HostsListed::Attention);
    assert_eq!((rollout.total_hosts, rollout.succeeded), (3, 1));
    assert_eq!(rollout.hosts[0].progress, Progress::Failed);
    same_json(
        &rollout,
        &hub.raw("/api/v1/rollout?workload=checkout&environment=stage")
            .await,
        "rollout",
    );
    let mut all = RolloutQuery::new("checkout", "stage");
    all.hosts = Some(HostsListed::All);
    let rollout = client.rollout(&all).await.expect("rollout of all");
    assert_eq!(rollout.hosts.len(), 3);
    same_json(
        &rollout,
        &hub.raw("/api/v1/rollout?workload=checkout&environment=stage&hosts=all")
            .await,
        "rollout of all",
    );
}

async fn errors_say_what_went_wrong(backend: Backend) {
    let token = TokenConfig {
        token: sextant_kit::Secret::new("reader"),
        tenant: "shop".into(),
        subject: None,
        scopes: vec![
            sextant_receiver::auth::Scope::Read,
            sextant_receiver::auth::Scope::Ingest,
        ],
    };
    let hub = Hub::start(backend, vec![token]).await;
    estate(&hub, Some("reader")).await;

    let anonymous = HubClient::new(hub.url(), None).expect("client");
    let err = anonymous
        .rollout(&RolloutQuery::new("checkout", "stage"))
        .await
        .expect_err("no token");
    match &err {
        HubError::Status { status, error, .. } => {
            assert_eq!(status.as_u16(), 401);
            assert_eq!(
                error.as_ref().map(|e| e.code.as_str()),
                Some("unauthenticated")
            );
        }
        other => panic!("not a status error: {other:?}"),
    }
    assert!(!err.is_not_found());

    let reader = HubClient::new(hub.url(), Some(Secret::new("reader"))).expect("client");
    let rollout = reader
        .rollout(&RolloutQuery::new("checkout", "stage"))
        .await
        .found()
        .expect("answered");
    assert_eq!(rollout.map(|r| r.total_hosts), Some(3));
    let missing = reader.rollout(&RolloutQuery::new("nothing", "stage")).await;
    assert!(
        missing.as_ref().is_err_and(HubError::is_not_found),
        "{missing:?}"
    );
    assert!(matches!(missing.found(), Ok(None)));

    // A bad parameter: the hub's 400 with its code and message.
    let err = reader
        .history(
            &HistoryQuery {
                since: Some("soon".into()),
                ..HistoryQuery::default()
            },
            &PageRequest::default(),
        )
        .await
        .expect_err("not a time");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert!(
        err.to_string().contains("invalid_query: since=\"soon\""),
        "{err}"
    );

    // Nothing listens there any more.
    let gone = hub.url();
    drop(hub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = HubClient::builder(gone)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let err = closed.all_environments().await.expect_err("nobody answers");
    assert!(matches!(err, HubError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot reach the hub at http://127.0.0.1:")
    );
}

async fn a_larger_answer_than_allowed_is_refused(backend: Backend) {
    let hub = Hub::start(backend, Vec::new()).await;
    estate(&hub, None).await;
    let small = HubClient::builder(hub.url())
        .max_body_bytes(64)
        .build()
        .expect("client");
    let err = small
        .environment_state("stage", &StateFilter::default())
        .await
        .expect_err("too large");
    assert!(
        matches!(err, HubError::TooLarge { limit: 64, .. }),
        "{err:?}"
    );
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_both_backends!(
    every_endpoint_decodes_into_the_model,
    errors_say_what_went_wrong,
    a_larger_answer_than_allowed_is_refused,
);
