//! Promotion gates against real parts: a policy webhook served by axum on
//! 127.0.0.1, and the real hub (`sextant up` through the e2e test kit) fed
//! desired and observed events over OTLP/HTTP JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use sextant_e2e::{Backend, Hub};
use sextant_kit::hub::HubClient;
use sextant_orchestrator::domain::{
    ComponentSpec, EnvironmentSpec, FreezeWindow, GateSpec, Release, ReleaseComponent,
    ReleaseStatus, Span,
};
use sextant_orchestrator::promotion::gates::hub::hub_client;
use sextant_orchestrator::promotion::gates::{
    Decision, GateContext, GateResult, ManualGateState, evaluate, evaluate_all, overall,
};
use time::OffsetDateTime;

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// What a promotion's gates look at, owned, for building [`GateContext`]s.
struct Fixture {
    release: Release,
    components: Vec<ComponentSpec>,
    environment: EnvironmentSpec,
    manual: BTreeMap<String, ManualGateState>,
    http: reqwest::Client,
}

impl Fixture {
    /// A release `r1` of `components` (each at [`DIGEST`]), application
    /// `shop`, promoted into `stage`.
    fn new(components: &[&str]) -> Self {
        Self {
            release: Release {
                id: "rel-1".into(),
                name: "r1".into(),
                status: ReleaseStatus::Finalized,
                components: components
                    .iter()
                    .map(|c| ReleaseComponent {
                        component: (*c).into(),
                        image: format!("registry.test/{c}@{DIGEST}"),
                        digest: DIGEST.into(),
                        tag: None,
                    })
                    .collect(),
                created_by: "alice".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                finalized_at: None,
            },
            components: components
                .iter()
                .map(|c| ComponentSpec {
                    name: (*c).into(),
                    image: format!("registry.test/{c}"),
                    application: Some("shop".into()),
                    workspace: None,
                })
                .collect(),
            environment: EnvironmentSpec {
                name: "stage".into(),
                order: Some(2),
                production: false,
                required_approvals: 0,
                approvers: vec![],
                separation_of_duties: true,
                freeze_windows: vec![],
                gates: vec![],
                rollback: Default::default(),
            },
            manual: BTreeMap::new(),
            http: reqwest::Client::new(),
        }
    }

    fn ctx<'a>(&'a self, previous: Option<&'a str>, hub: Option<&'a HubClient>) -> GateContext<'a> {
        GateContext {
            tenant: "acme",
            promotion_id: "prom-42",
            requested_by: "bob",
            release: &self.release,
            components: &self.components,
            environment: &self.environment,
            previous_environment: previous,
            now: OffsetDateTime::now_utc(),
            manual: &self.manual,
            hub,
            http: &self.http,
        }
    }
}

fn healthy_for(secs: u64) -> GateSpec {
    GateSpec::PreviousEnvironmentHealthy {
        for_: Span::secs(secs),
    }
}

fn expect(result: &GateResult, decision: Decision, words: &[&str]) {
    assert_eq!(
        result.decision, decision,
        "{}: {:?} ({})",
        result.gate, result.decision, result.reason
    );
    for w in words {
        assert!(
            result.reason.contains(w),
            "{}: reason {:?} lacks {w:?}",
            result.gate,
            result.reason
        );
    }
}

// ---------------------------------------------------------------------------
// Freeze and overall
// ---------------------------------------------------------------------------

#[tokio::test]
async fn freeze_gate_denies_inside_a_window_and_on_a_malformed_one() {
    let mut f = Fixture::new(&["web"]);
    let now = OffsetDateTime::now_utc();
    let hhmm = |t: OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let window = |name: &str, start: String, end: String| FreezeWindow {
        name: name.into(),
        days: vec![],
        start,
        end,
    };
    // Open from a minute ago to two hours from now (over midnight is fine).
    f.environment.freeze_windows = vec![window(
        "hotfix-only",
        hhmm(now - time::Duration::minutes(1)),
        hhmm(now + time::Duration::hours(2)),
    )];
    let r = evaluate(&GateSpec::Freeze, &f.ctx(None, None)).await;
    expect(&r, Decision::Deny, &["\"hotfix-only\"", "open until"]);
    assert_eq!(r.gate, "freeze");

    // Closed: from two hours from now to three hours from now.
    f.environment.freeze_windows = vec![window(
        "later",
        hhmm(now + time::Duration::hours(2)),
        hhmm(now + time::Duration::hours(3)),
    )];
    let r = evaluate(&GateSpec::Freeze, &f.ctx(None, None)).await;
    expect(&r, Decision::Allow, &[]);

    f.environment
        .freeze_windows
        .push(window("broken", "25:00".into(), "26:00".into()));
    let r = evaluate(&GateSpec::Freeze, &f.ctx(None, None)).await;
    expect(&r, Decision::Deny, &["\"broken\"", "25:00"]);
}

#[tokio::test]
async fn manual_gates_and_overall() {
    let mut f = Fixture::new(&["web"]);
    let gates = [
        GateSpec::Manual { name: "qa".into() },
        GateSpec::Manual {
            name: "security".into(),
        },
        GateSpec::PreviousEnvironmentHealthy {
            for_: Span::secs(60),
        },
    ];
    // dev is first: the previous-environment gate allows.
    let results = evaluate_all(&gates, &f.ctx(None, None)).await;
    assert_eq!(
        results.iter().map(|r| r.gate.as_str()).collect::<Vec<_>>(),
        [
            "manual:qa",
            "manual:security",
            "previous-environment-healthy"
        ]
    );
    expect(&results[0], Decision::Pending, &["qa"]);
    expect(&results[2], Decision::Allow, &["first environment"]);
    assert_eq!(overall(&results), Decision::Pending);

    let state = |open: bool, by: &str| ManualGateState {
        open,
        by: by.into(),
        at: "2026-01-01T00:00:00Z".into(),
        comment: None,
    };
    f.manual.insert("qa".into(), state(true, "carol"));
    f.manual.insert("security".into(), state(true, "dave"));
    let results = evaluate_all(&gates, &f.ctx(None, None)).await;
    expect(&results[0], Decision::Allow, &["carol"]);
    assert_eq!(overall(&results), Decision::Allow);
    assert!(
        OffsetDateTime::parse(
            &results[0].evaluated_at,
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );

    f.manual.insert("security".into(), state(false, "dave"));
    let results = evaluate_all(&gates, &f.ctx(None, None)).await;
    expect(&results[1], Decision::Deny, &["closed by dave"]);
    assert_eq!(overall(&results), Decision::Deny);
}

// ---------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------

type Seen = Arc<Mutex<Vec<Value>>>;

/// A policy endpoint with one path per behaviour; records every body.
async fn policy_server() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let answer = |body: Value| {
        move |State(seen): State<Seen>, axum::Json(req): axum::Json<Value>| {
            let body = body.clone();
            async move {
                seen.lock().expect("lock").push(req);
                axum::Json(body)
            }
        }
    };
    let app = Router::new()
        .route(
            "/allow",
            post(answer(
                json!({"decision": "allow", "reason": "policy P-7 passed"}),
            )),
        )
        .route(
            "/deny",
            post(answer(
                json!({"decision": "deny", "reason": "CVE-2026-0001 open"}),
            )),
        )
        .route(
            "/pending",
            post(answer(
                json!({"decision": "pending", "reason": "scan running"}),
            )),
        )
        .route("/maybe", post(answer(json!({"decision": "maybe"}))))
        .route(
            "/error",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "policy engine down") }),
        )
        .route("/garbage", post(|| async { "<html>not json</html>" }))
        .route(
            "/slow",
            post(|| async {
                // Slower than the gate's timeout; the orchestrator's HTTP client waits on real time.
                tokio::time::sleep(Duration::from_secs(10)).await;
                axum::Json(json!({"decision": "allow"}))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn webhook(addr: SocketAddr, path: &str, timeout: Option<&str>) -> GateSpec {
    GateSpec::Webhook {
        name: "policy".into(),
        url: format!("http://{addr}{path}"),
        timeout: timeout.map(|t| Span::parse(t).expect("span")),
    }
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

#[tokio::test]
async fn webhook_answers_become_decisions() {
    let (addr, seen) = policy_server().await;
    let f = Fixture::new(&["web", "api"]);
    let ctx = f.ctx(Some("dev"), None);

    let r = evaluate(&webhook(addr, "/allow", None), &ctx).await;
    expect(&r, Decision::Allow, &["policy P-7 passed"]);
    assert_eq!(r.gate, "webhook:policy");
    let body = seen.lock().expect("lock").first().cloned().expect("a POST");
    assert_eq!(
        body,
        json!({
            "promotion_id": "prom-42",
            "tenant": "acme",
            "release": {"name": "r1", "components": [
                {"component": "web", "image": format!("registry.test/web@{DIGEST}"), "digest": DIGEST},
                {"component": "api", "image": format!("registry.test/api@{DIGEST}"), "digest": DIGEST},
            ]},
            "environment": "stage",
            "previous_environment": "dev",
            "requested_by": "bob",
        })
    );

    let r = evaluate(&webhook(addr, "/deny", None), &ctx).await;
    expect(&r, Decision::Deny, &["CVE-2026-0001 open"]);
    let r = evaluate(&webhook(addr, "/pending", None), &ctx).await;
    expect(&r, Decision::Pending, &["scan running"]);
    let r = evaluate(&webhook(addr, "/maybe", None), &ctx).await;
    expect(&r, Decision::Deny, &["unknown decision \"maybe\""]);
    let r = evaluate(&webhook(addr, "/error", None), &ctx).await;
    expect(&r, Decision::Deny, &["500", "policy engine down"]);
    let r = evaluate(&webhook(addr, "/garbage", None), &ctx).await;
    expect(&r, Decision::Deny, &["not json"]);
    let r = evaluate(&webhook(addr, "/nowhere", None), &ctx).await;
    expect(&r, Decision::Deny, &["404"]);

    let started = Instant::now();
    let r = evaluate(&webhook(addr, "/slow", Some("300ms")), &ctx).await;
    expect(&r, Decision::Deny, &["no answer within 300ms"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout not applied"
    );

    let down = closed_port().await;
    let r = evaluate(&webhook(down, "/allow", None), &ctx).await;
    expect(&r, Decision::Deny, &["cannot connect"]);

    let bad = GateSpec::Webhook {
        name: "policy".into(),
        url: "not a url".into(),
        timeout: None,
    };
    expect(
        &evaluate(&bad, &ctx).await,
        Decision::Deny,
        &["invalid URL"],
    );
}

// ---------------------------------------------------------------------------
// Previous environment healthy, against the real hub
// ---------------------------------------------------------------------------

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// Unix nanoseconds `ago` before now.
fn ago(ago: Duration) -> u128 {
    (OffsetDateTime::now_utc() - ago).unix_timestamp_nanos() as u128
}

fn mins(m: u64) -> u128 {
    ago(Duration::from_secs(m * 60))
}

fn placement(workload: &str, target: &str) -> Vec<Value> {
    vec![
        kv("sextant.application", "shop"),
        kv("sextant.workload", workload),
        kv("deployment.environment.name", "dev"),
        kv("sextant.target", target),
    ]
}

fn desired(workload: &str, target: &str, version: &str, revision: &str, at: u128) -> Value {
    let mut attrs = placement(workload, target);
    attrs.push(kv("service.version", version));
    attrs.push(kv("sextant.revision", revision));
    json!({"eventName": "sextant.deployment.desired", "timeUnixNano": at.to_string(), "attributes": attrs})
}

fn observed(workload: &str, host: &str, revision: &str, status: &str, at: u128) -> Value {
    let mut attrs = placement(workload, "t1");
    attrs.push(kv("host.name", host));
    attrs.push(kv("sextant.revision", revision));
    attrs.push(kv("deployment.status", status));
    json!({"eventName": "sextant.deployment.observed", "timeUnixNano": at.to_string(), "attributes": attrs})
}

/// POSTs the records to the hub's OTLP/HTTP logs endpoint and expects every
/// one accepted.
async fn send(hub: &Hub, token: Option<&str>, records: Vec<Value>) {
    let body = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": records}]}]});
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", hub.http))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("OTLP/HTTP request");
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json answer");
    assert!(answer["partialSuccess"].is_null(), "rejected: {answer}");
}

#[tokio::test]
async fn previous_environment_healthy_asks_the_real_hub() {
    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let client = hub_client(&format!("http://{}", hub.api), None).unwrap();
    send(
        &hub,
        None,
        vec![
            // web: r1 desired 20m ago (and sent again 2m ago, which must not
            // restart the clock); h1 succeeded 15m ago with a heartbeat 1m
            // ago, h2 succeeded 10m ago: healthy for 10m.
            desired("web", "t1", "r1", DIGEST, mins(20)),
            desired("web", "t1", "r1", DIGEST, mins(2)),
            observed("web", "h1", DIGEST, "in_progress", mins(16)),
            observed("web", "h1", DIGEST, "succeeded", mins(15)),
            observed("web", "h1", DIGEST, "succeeded", mins(1)),
            observed("web", "h2", DIGEST, "succeeded", mins(10)),
            // api: h2 failed.
            desired("api", "t1", "r1", DIGEST, mins(20)),
            observed("api", "h1", DIGEST, "succeeded", mins(10)),
            observed("api", "h2", DIGEST, "failed", mins(10)),
            // worker: h2 still in progress.
            desired("worker", "t1", "r1", DIGEST, mins(20)),
            observed("worker", "h1", DIGEST, "succeeded", mins(10)),
            observed("worker", "h2", DIGEST, "in_progress", mins(10)),
            // db: dev desires another revision (and runs it).
            desired("db", "t1", "r0", OTHER, mins(20)),
            observed("db", "h1", OTHER, "succeeded", mins(10)),
            // flaky: h1 failed 6m ago and recovered 4m ago: healthy for 4m.
            desired("flaky", "t1", "r1", DIGEST, mins(30)),
            observed("flaky", "h1", DIGEST, "succeeded", mins(25)),
            observed("flaky", "h1", DIGEST, "failed", mins(6)),
            observed("flaky", "h1", DIGEST, "succeeded", mins(4)),
            // moved: dev desired r1, then r0, and r1 again 3m ago.
            desired("moved", "t1", "r1", DIGEST, mins(30)),
            desired("moved", "t1", "r0", OTHER, mins(20)),
            desired("moved", "t1", "r1", DIGEST, mins(3)),
            observed("moved", "h1", DIGEST, "succeeded", mins(25)),
            // empty: desired, but no host reports.
            desired("empty", "t1", "r1", DIGEST, mins(20)),
        ],
    )
    .await;

    let check = async |components: &[&str], secs: u64| -> GateResult {
        let f = Fixture::new(components);
        evaluate(&healthy_for(secs), &f.ctx(Some("dev"), Some(&client))).await
    };

    expect(
        &check(&["web"], 0).await,
        Decision::Allow,
        &["web 2/2 hosts"],
    );
    expect(&check(&["web"], 5 * 60).await, Decision::Allow, &["10m"]);
    expect(
        &check(&["web"], 3600).await,
        Decision::Pending,
        &["healthy in \"dev\" for 10m", "of 1h"],
    );
    expect(
        &check(&["api"], 0).await,
        Decision::Pending,
        &["1/2 hosts succeeded", "failed: t1/h2"],
    );
    expect(
        &check(&["worker"], 0).await,
        Decision::Pending,
        &["1/2 hosts succeeded", "in progress: t1/h2"],
    );
    expect(
        &check(&["db"], 0).await,
        Decision::Pending,
        &[OTHER, "(r0)", "not this release's"],
    );
    expect(&check(&["flaky"], 3 * 60).await, Decision::Allow, &[]);
    expect(
        &check(&["flaky"], 5 * 60).await,
        Decision::Pending,
        &["for 4m", "of 5m"],
    );
    expect(&check(&["moved"], 2 * 60).await, Decision::Allow, &[]);
    expect(
        &check(&["moved"], 5 * 60).await,
        Decision::Pending,
        &["for 3m", "of 5m"],
    );
    expect(
        &check(&["empty"], 0).await,
        Decision::Pending,
        &["no host reports"],
    );
    expect(
        &check(&["ghost"], 0).await,
        Decision::Pending,
        &["knows no workload \"ghost\""],
    );
    // A release is as healthy as its least healthy component.
    expect(
        &check(&["web", "flaky"], 5 * 60).await,
        Decision::Pending,
        &["for 4m", "of 5m"],
    );
    expect(
        &check(&["web", "api"], 0).await,
        Decision::Pending,
        &["api: 1/2 hosts"],
    );

    // A component the orchestrator has no spec for: missing input.
    let mut f = Fixture::new(&["web"]);
    f.components.clear();
    let r = evaluate(&healthy_for(0), &f.ctx(Some("dev"), Some(&client))).await;
    expect(&r, Decision::Deny, &["no spec"]);

    // No hub configured, or the hub is down: deny.
    let f = Fixture::new(&["web"]);
    let r = evaluate(&healthy_for(0), &f.ctx(Some("dev"), None)).await;
    expect(&r, Decision::Deny, &["no hub"]);
    let down = hub_client(&format!("http://{}", closed_port().await), None).unwrap();
    let r = evaluate(&healthy_for(0), &f.ctx(Some("dev"), Some(&down))).await;
    expect(&r, Decision::Deny, &["cannot reach the hub"]);
    // Something that is not the hub answers: deny.
    let (policy, _) = policy_server().await;
    let wrong = hub_client(&format!("http://{policy}"), None).unwrap();
    let r = evaluate(&healthy_for(0), &f.ctx(Some("dev"), Some(&wrong))).await;
    expect(&r, Decision::Deny, &["404"]);
}

#[tokio::test]
async fn the_hub_gate_reads_with_a_token() {
    let tokens = r#"
[[tokens]]
token = "ingest-token"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "read-token"
tenant = "acme"
scopes = ["read"]
"#;
    let hub = Hub::start(Backend::Sqlite, tokens).await;
    hub.wait_ready().await;
    send(
        &hub,
        Some("ingest-token"),
        vec![
            desired("web", "t1", "r1", DIGEST, mins(20)),
            observed("web", "h1", DIGEST, "succeeded", mins(10)),
        ],
    )
    .await;
    let f = Fixture::new(&["web"]);
    let base = format!("http://{}", hub.api);

    let reader = hub_client(&base, Some("read-token".into())).unwrap();
    let r = evaluate(&healthy_for(60), &f.ctx(Some("dev"), Some(&reader))).await;
    expect(&r, Decision::Allow, &["web 1/1 hosts"]);

    for (token, status) in [(None, "401"), (Some("ingest-token"), "403")] {
        let client = hub_client(&base, token.map(str::to_owned)).unwrap();
        let r = evaluate(&healthy_for(60), &f.ctx(Some("dev"), Some(&client))).await;
        expect(&r, Decision::Deny, &[status]);
    }
}
